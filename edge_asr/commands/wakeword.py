"""`edge-asr wakeword eval`: recall, false accepts per hour and detection latency over a threshold sweep."""

from __future__ import annotations

import argparse
import json


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="wakeword_command", metavar="COMMAND", required=True)
    ev = sub.add_parser("eval", help="measure a wake-word model on labelled clips",
                        description="Measure recall on clips that say the wake word, false accepts per hour "
                                    "on audio that does not, and detection latency, for several thresholds.")
    ev.add_argument("--positives", nargs="+", required=True, metavar="PATH",
                    help="audio files or folders whose clips each say the wake word once")
    ev.add_argument("--negatives", nargs="+", required=True, metavar="PATH",
                    help="audio files or folders that never say it (their length sets the hours)")
    ev.add_argument("--wakeword", default="alexa", help="bundled model name or .onnx path (default: alexa)")
    ev.add_argument("--thresholds", default="0.1,0.2,0.3,0.5,0.7,0.9",
                    help="comma-separated first-stage thresholds to sweep")
    ev.add_argument("--patience", type=int, default=1, help="frames at or above threshold before a detection")
    ev.add_argument("--refractory", type=float, default=2.0, help="seconds between two detections")
    ev.add_argument("--verify", action="store_true",
                    help="second stage: the local transcriber must hear the wake phrase in the pre-roll")
    ev.add_argument("--accept-threshold", type=float, default=0.9,
                    help="with --verify: candidates scoring at least this skip the second stage")
    ev.add_argument("--phrase", action="append",
                    help="with --verify: what to listen for (default: the model name)")
    ev.add_argument("--model", default=None, help="with --verify: transcriber model directory")
    ev.add_argument("--threads", type=int, default=2, help="with --verify: transcriber threads")
    ev.add_argument("--no-vad-gate", action="store_true",
                    help="score every frame, as openWakeWord does (listen's default gates on Silero VAD)")
    ev.add_argument("--format", choices=("text", "json"), default="text")
    ev.set_defaults(func=run_eval)


def _thresholds(text: str) -> list[float]:
    from edge_asr.errors import ConfigError

    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--thresholds must be comma-separated numbers, got {text!r}") from None
    if not values or not all(0.0 <= v <= 1.0 for v in values):
        raise ConfigError(f"--thresholds must be numbers between 0 and 1, got {text!r}")
    return values


def run_eval(args: argparse.Namespace) -> int:
    from edge_asr.errors import AudioError
    from wakeword.commands import wake_phrases
    from wakeword.detector import WakeWordSpec
    from wakeword.evaluate import Evaluation, collect_audio_files, score_files
    from wakeword.models import wakeword_model_path

    thresholds = _thresholds(args.thresholds)
    wakeword_model_path(args.wakeword)  # fail fast on an unknown name
    positives, negatives = collect_audio_files(args.positives), collect_audio_files(args.negatives)
    if not positives or not negatives:
        raise AudioError("no audio files found in " + ("--positives" if not positives else "--negatives"))
    verify = None
    if args.verify:
        from edge_asr import Transcriber
        from wakeword.verify import TranscriptVerifier, local_transcriber

        transcribe = local_transcriber(Transcriber(model=args.model, threads=args.threads))
        verify = TranscriptVerifier(transcribe, wake_phrases(args.wakeword, args.phrase or [])).verify
    spec = WakeWordSpec(args.wakeword, patience=args.patience, refractory_s=args.refractory,
                        accept_threshold=args.accept_threshold)
    gate = None if args.no_vad_gate else 0.1
    positive_traces = score_files(positives, args.wakeword, with_word_end=True, progress="positives",
                                  vad_gate=gate)
    negative_traces = score_files(negatives, args.wakeword, progress="negatives", vad_gate=gate)
    evaluation = Evaluation(spec, positive_traces, negative_traces, verify=verify)
    results = [evaluation.at(t) for t in thresholds]
    if args.format == "json":
        print(json.dumps({"wakeword": spec.name, "verify": args.verify,
                          "results": [r.to_dict() for r in results]}, indent=2))
        return 0
    hours = results[0].negative_hours
    print(f"{spec.name}: {len(positives)} positive clips, {len(negatives)} negative clips "
          f"({hours * 60:.1f} min){', second stage on' if args.verify else ''}")
    header = ("threshold", "recall", "missed", "FA", "FA/hour", "latency p50", "p90")
    print("{:>9} {:>7} {:>6} {:>4} {:>8} {:>11} {:>6}".format(*header))
    for r in results:
        p50 = f"{r.latency_median_s:.2f}s" if r.latency_median_s is not None else "-"
        p90 = f"{r.latency_p90_s:.2f}s" if r.latency_p90_s is not None else "-"
        print(f"{r.threshold:>9.2f} {r.recall * 100:>6.1f}% {r.positives - r.detected:>6} "
              f"{r.false_accepts:>4} {r.false_accepts_per_hour:>8.2f} {p50:>11} {p90:>6}")
    return 0

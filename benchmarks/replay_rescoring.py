"""Replay acoustic rescoring on the transcripts a matching run saved (`bench_wakeword.py --dump DIR`, best with
`--rescore off`): what listen would have answered with rescoring at other settings, on the very same
transcripts, so settings are compared without run-to-run noise (a borderline wake word or word that flips).

    python benchmarks/replay_rescoring.py DIR [--max-drop 1.5] [--limit 8] [--skip-at 0.9]

The dump holds, for every command transcription (fast path, then full window if the fast path heard no
command), the text match and the token log-probabilities of the transcript and of up to 200 grammar sentences,
nearest first; a replay keeps the first `limit`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from bench_wakeword import same_slots  # noqa: E402

from wakeword.listener import COMPLETE_MIN_SCORE  # noqa: E402


def answer(call: dict, max_drop: float | None, limit: int, skip_at: float):
    """(command, slots) listen answers from one transcription, or None (no command)."""
    match = call["match"] and call["match"][:2]
    if max_drop is None or not call["command_text"].strip() or (call["match"] and call["match"][2] >= skip_at):
        return match
    means = [float(np.mean(s)) for s in call["scores"][:limit + 1]]
    if len(means) < 2:
        return match
    best = int(np.argmax(means[1:]))
    if means[0] - means[1 + best] > max_drop:
        return match
    return call["candidates"][best][:2]


def replay(dump: Path, max_drop: float | None, limit: int, skip_at: float) -> dict:
    out: dict = {}
    for path in sorted(dump.glob("*.npz")):
        meta = json.loads(str(np.load(path)["meta"]))
        if not meta["row"]["woken"]:
            continue
        got = None
        for _, _, call in meta["calls"]:
            got = answer(call, max_drop, limit, skip_at)
            if got is not None:
                break
        want = meta["command"]
        if want is None:
            right = got is None
        else:
            right = got is not None and got[0] == want and same_slots(got[1], meta["slots"])
        key = (meta.get("set", path.stem.rstrip("0123456789_").rstrip("0123456789")),
               path.stem.rsplit("_", 1)[1], "unrelated" if want is None else "commands")
        out.setdefault(key, []).append((path.stem, right, got, meta["row"]["text"], meta["row"]["heard"]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dump", type=Path)
    parser.add_argument("--max-drop", type=float, default=1.5)
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--skip-at", type=float, default=COMPLETE_MIN_SCORE)
    args = parser.parse_args()
    before = replay(args.dump, None, args.limit, args.skip_at)
    after = replay(args.dump, args.max_drop, args.limit, args.skip_at)
    for key in sorted(after):
        right = [sum(r[1] for r in rows[key]) for rows in (before, after)]
        print(f"{key[0]} @{key[1]} dB {key[2]}: {right[0]}/{len(after[key])} without rescoring, "
              f"{right[1]}/{len(after[key])} with")
        for b, a in zip(before[key], after[key]):
            if b[2] != a[2]:
                print(f"  {a[0]}: said {a[3]!r}, heard {a[4]!r}: {b[2]} -> {a[2]} ({'right' if a[1] else 'wrong'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

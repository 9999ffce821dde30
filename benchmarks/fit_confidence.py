"""Fit the utterance-confidence calibration that ships as edge_asr/confidence.json.

Data: every speech-dev utterance clean and mixed with sox noise at 0/5/10/20 dB SNR, plus non-speech clips
(silence, noise, hum, tones, chords, melodies). The local model transcribes each (cached, resumable); an
utterance is "right" when its WER is at most --label-max-wer (non-speech: when no words came out). A
logistic regression over edge_asr.confidence.FEATURES is fitted with L2 (numpy IRLS), evaluated by 5-fold
cross-validation grouped by utterance (all noise versions of one utterance sit in the same fold), then
refitted on everything and written out.

    python benchmarks/fit_confidence.py          # the default local model; writes edge_asr/confidence.json
    python benchmarks/fit_confidence.py --model models/x --out /tmp/conf.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
from pathlib import Path

import numpy as np

# Run from a checkout: this repo's edge_asr and the sibling benchmark helpers come first.
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
import escalation_data as data  # noqa: E402

from edge_asr.confidence import (  # noqa: E402
    FEATURES,
    ConfidenceModel,
    expected_calibration_error,
    has_words,
    reliability_table,
    utterance_features,
)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iterations: int = 50
                 ) -> tuple[np.ndarray, float]:
    """Weights and bias minimizing log-loss + l2/2 |w|^2 (bias unpenalized), by Newton's method."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    penalty = np.diag([l2] * d + [0.0])
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(xb @ w, -40, 40)))
        grad = xb.T @ (p - y) + penalty @ w
        hess = xb.T @ (xb * (p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def build_table(clips: list[data.Clip], local: dict, label_max_wer: float):
    """Feature matrix, labels and groups for clips where the local model produced any text."""
    rows, labels, groups, skipped = [], [], [], 0
    for clip in clips:
        segments = local[clip.id]["segments"]
        hypothesis = "".join(s["text"] for s in segments)
        if not has_words(hypothesis):
            skipped += 1  # nothing to route: windows without a word stay local (EscalationPolicy)
            continue
        errors, ref_words = data.word_errors(clip.reference, hypothesis)
        right = errors == 0 if clip.kind == "nonspeech" else errors / ref_words <= label_max_wer
        feats = utterance_features(segments, clip.duration)
        rows.append([feats[f] for f in FEATURES])
        labels.append(1.0 if right else 0.0)
        groups.append(clip.id.split("@")[0])
    return np.array(rows), np.array(labels), groups, skipped


def standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    return mean, np.where(scale > 1e-9, scale, 1.0)


def model_from(x: np.ndarray, y: np.ndarray, l2: float, meta: dict | None = None) -> ConfidenceModel:
    mean, scale = standardize(x)
    w, b = fit_logistic((x - mean) / scale, y, l2)
    return ConfidenceModel(FEATURES, tuple(mean), tuple(scale), tuple(w), b, 0.5, meta)


def cross_validate(x, y, groups, l2: float, folds: int = 5) -> np.ndarray:
    unique = sorted(set(groups))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(unique))
    fold_of = {unique[i]: k % folds for k, i in enumerate(order)}
    fold = np.array([fold_of[g] for g in groups])
    out = np.zeros(len(y))
    for k in range(folds):
        train, test = fold != k, fold == k
        model = model_from(x[train], y[train], l2)
        out[test] = [model.probability(dict(zip(FEATURES, row, strict=True))) for row in x[test]]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="local model dir or built-in name (default: the default)")
    ap.add_argument("--snrs", type=float, nargs="+", default=[0, 5, 10, 20])
    ap.add_argument("--nonspeech", type=int, default=60, help="number of non-speech clips")
    ap.add_argument("--limit", type=int, default=None,
                    help="only N speech-dev utterances (a fixed random sample) and a proportional share of "
                         "the non-speech clips")
    ap.add_argument("--label-max-wer", type=float, default=0.1)
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument("--escalate", type=float, default=0.2,
                    help="the shipped default threshold escalates this share of the fitting utterances "
                         "(out of fold; the mix is mostly noisy, so real use sends fewer)")
    ap.add_argument("--cache", type=Path, default=data.REPO / "out" / "escalation" / "local.jsonl")
    ap.add_argument("--out", type=Path, default=data.REPO / "edge_asr" / "confidence.json")
    args = ap.parse_args()

    clips = data.benchmark_clips([None, *args.snrs], args.limit, args.nonspeech)
    local = data.run_local(clips, args.model, args.cache)
    x, y, groups, skipped = build_table(clips, local, args.label_max_wer)
    print(f"{len(y)} utterances with words ({int(y.sum())} right), {skipped} without; "
          f"right = WER <= {args.label_max_wer:g} (non-speech: no words)")

    oof = cross_validate(x, y, groups, args.l2)
    brier = float(np.mean((oof - y) ** 2))
    ece = expected_calibration_error(oof, y)
    baseline = model_from(x[:, :1], y, args.l2)  # avg_logprob alone, the usual heuristic
    print(f"5-fold CV: AUROC {auroc(oof, y):.3f}  Brier {brier:.3f}  ECE {ece:.3f}  "
          f"(avg_logprob alone, in-sample AUROC {auroc(x[:, 0] * baseline.weights[0], y):.3f})")
    print("reliability (out-of-fold): bin   n   confidence  accuracy")
    for r in reliability_table(oof, y):
        print(f"  {r['lo']:.1f}-{r['hi']:.1f} {r['count']:4d}   {r['confidence']:.3f}"
              f"      {r['accuracy']:.3f}")

    model_name = next(iter(local.values()))["model"]
    meta = {
        "local_model": model_name,
        "label": f"utterance WER <= {args.label_max_wer:g} after Whisper English normalization; "
                 "non-speech: no words",
        "label_max_wer": args.label_max_wer,
        "data": f"speech-dev x (clean + {'/'.join(f'{s:g}' for s in args.snrs)} dB SNR "
                "white/pink/brown noise) "
                f"+ {args.nonspeech} synthesized non-speech clips",
        "n": len(y), "n_right": int(y.sum()),
        "cv": {"folds": 5, "auroc": round(auroc(oof, y), 4), "brier": round(brier, 4), "ece": round(ece, 4)},
        "fitted": datetime.date.today().isoformat(),
        "script": "benchmarks/fit_confidence.py",
    }
    model = model_from(x, y, args.l2, meta)
    # The default threshold: the (out-of-fold) confidence below which --escalate of these utterances fall,
    # rounded down to two decimals.
    threshold = max(0.01, np.floor(np.quantile(oof, args.escalate) * 100) / 100)
    meta["default_threshold_escalates"] = round(float(np.mean(oof < threshold)), 4)
    model = dataclasses.replace(model, default_threshold=float(threshold))
    print(f"default threshold {threshold:.2f}: escalates {np.mean(oof < threshold):.1%} of these utterances "
          f"(out of fold); {np.mean(y[oof < threshold] == 0):.1%} of those were wrong")
    args.out.write_text(json.dumps(model.to_dict(), indent=2) + "\n", encoding="utf-8")
    weights = {f: round(float(w), 3) for f, w in zip(FEATURES, model.weights, strict=True)}
    print("weights (per standard deviation):", weights)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

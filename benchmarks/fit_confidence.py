"""Fit the two models that ship as edge_asr/confidence.json: the utterance confidence and the cloud benefit.

Data: the "fit" half of the speech-dev recordings (escalation_data.split_of: by recording, so the other half
stays held out for bench_escalation.py), clean and mixed with sox noise at 0/5/10/20 dB SNR, plus the fit
half of the non-speech clips (silence, noise, hum, tones, chords, melodies). The local model transcribes
each (cached, resumable).

Confidence: an utterance is "right" when its WER is at most --label-max-wer (non-speech: when no words came
out). A logistic regression over edge_asr.confidence.FEATURES is fitted with L2 (numpy IRLS), evaluated by
5-fold cross-validation grouped by recording (all noise versions of one recording sit in the same fold), then
refitted on the whole half.

Benefit: the word errors per second that the cloud's transcript removes (local errors minus cloud errors,
over the clip's duration), regressed (ridge) on a few of the values the device has for a window
(--benefit-features; default: the local confidence, out of fold, and the doubtful words per second, the sum
of 1 - word probability over the window's seconds; the speech rate and the blind SNR estimate of
edge_asr.confidence.audio_features can be added), on the noisy and non-speech clips where the
local model wrote words. Its default threshold makes the policy escalate --escalate of the noisy fit utterances.
The cloud's transcripts come from bench_escalation.py's cache (--cloud-cache), so run that first.

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
    AUDIO_FEATURES,
    DOUBTFUL_WORDS,
    FEATURES,
    LOCAL_CONFIDENCE,
    BenefitModel,
    ConfidenceModel,
    benefit_inputs,
    expected_calibration_error,
    has_words,
    reliability_table,
    utterance_features,
)
from edge_asr.model_dir import ModelCard  # noqa: E402
from edge_asr.models import resolve_model  # noqa: E402


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


def fit_ridge(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Weights and bias minimizing squared error + l2 |w|^2 (bias unpenalized), in closed form."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.linalg.solve(xb.T @ xb + np.diag([l2] * d + [0.0]), xb.T @ y)
    return w[:-1], float(w[-1])


def local_text(row: dict) -> str:
    return "".join(s["text"] for s in row["segments"])


def build_table(clips: list[data.Clip], local: dict, label_max_wer: float):
    """Feature matrix, labels, groups and clip ids for clips where the local model produced any text."""
    rows, labels, groups, ids, skipped = [], [], [], [], 0
    for clip in clips:
        segments = local[clip.id]["segments"]
        hypothesis = local_text(local[clip.id])
        if not has_words(hypothesis):
            skipped += 1  # nothing to route: windows without a word stay local (EscalationPolicy)
            continue
        errors, ref_words = data.word_errors(clip.reference, hypothesis)
        right = errors == 0 if clip.kind == "nonspeech" else errors / ref_words <= label_max_wer
        feats = utterance_features(segments, clip.duration)
        rows.append([feats[f] for f in FEATURES])
        labels.append(1.0 if right else 0.0)
        groups.append(clip.id.split("@")[0])
        ids.append(clip.id)
    return np.array(rows), np.array(labels), groups, ids, skipped


# Few inputs on purpose: a benefit is a noisy target (one utterance's errors). The errors the cloud can remove
# are errors the device made, and the words it doubts (1 - word probability, summed) count those: with the
# confidence they replaced the speech rate (README). The audio's SNR estimate got a weight of nothing beside
# the confidence and the speech rate on the fit half, and leaving it out spares the policy reading the audio
# of windows it does not send.
BENEFIT_FEATURES = (LOCAL_CONFIDENCE, DOUBTFUL_WORDS)


def benefit_table(clips: list[data.Clip], local: dict, cloud: dict, confidence: dict[str, float],
                  features: tuple[str, ...]):
    """Features, word errors the cloud removes per second, groups and clip ids: every clip with a cached cloud
    transcript (noisy speech, non-speech) where the local model wrote words, as the policy only asks there.
    `confidence`: the local confidence per clip id, out of fold (as the policy will see it on new audio)."""
    rows, gains, groups, ids = [], [], [], []
    for clip in clips:
        hypothesis = local_text(local[clip.id])
        if clip.id not in cloud or not has_words(hypothesis):
            continue
        removed = data.word_errors(clip.reference, hypothesis)[0] - data.word_errors(
            clip.reference, cloud[clip.id]["text"])[0]
        values = benefit_inputs(local[clip.id]["segments"], clip.duration, confidence[clip.id], clip.audio)
        rows.append([values[f] for f in features])
        gains.append(removed / clip.duration)
        groups.append(clip.id.split("@")[0])
        ids.append(clip.id)
    return np.array(rows), np.array(gains), groups, ids


def standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    return mean, np.where(scale > 1e-9, scale, 1.0)


def model_from(x: np.ndarray, y: np.ndarray, l2: float, meta: dict | None = None) -> ConfidenceModel:
    mean, scale = standardize(x)
    w, b = fit_logistic((x - mean) / scale, y, l2)
    return ConfidenceModel(FEATURES, tuple(mean), tuple(scale), tuple(w), b, 0.5, meta)


def benefit_from(x: np.ndarray, y: np.ndarray, features: tuple[str, ...], l2: float, meta: dict | None = None
                 ) -> BenefitModel:
    mean, scale = standardize(x)
    w, b = fit_ridge((x - mean) / scale, y, l2)
    return BenefitModel(features, tuple(mean), tuple(scale), tuple(w), b, 0.0, meta)


def cross_validate(x, y, groups, fit, predict, folds: int = 5) -> np.ndarray:
    """Out-of-fold predictions, folds grouped by recording. `fit(x, y)` -> model; `predict(model, row)`."""
    unique = sorted(set(groups))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(unique))
    fold_of = {unique[i]: k % folds for k, i in enumerate(order)}
    fold = np.array([fold_of[g] for g in groups])
    out = np.zeros(len(y))
    for k in range(folds):
        train, test = fold != k, fold == k
        model = fit(x[train], y[train])
        out[test] = [predict(model, row) for row in x[test]]
    return out


def load_jsonl(path: Path) -> dict:
    if not path.exists():
        raise SystemExit(f"fit_confidence: no cloud transcripts at {path}; run benchmarks/bench_escalation.py "
                         "(parts routing,nonspeech) first, or pass --cloud-cache")
    return data.read_cache(path)


def fit_confidence(clips, local, args) -> tuple[ConfidenceModel, dict[str, float]]:
    """The confidence model, and its out-of-fold confidence per clip id (for choosing the thresholds)."""
    x, y, groups, ids, skipped = build_table(clips, local, args.label_max_wer)
    print(f"confidence: {len(y)} utterances with words ({int(y.sum())} right), {skipped} without; "
          f"right = WER <= {args.label_max_wer:g} (non-speech: no words)")
    oof = cross_validate(x, y, groups, lambda a, b: model_from(a, b, args.l2),
                         lambda m, row: m.probability(dict(zip(FEATURES, row, strict=True))))
    brier = float(np.mean((oof - y) ** 2))
    ece = expected_calibration_error(oof, y)
    baseline = model_from(x[:, :1], y, args.l2)  # avg_logprob alone, the usual heuristic
    print(f"5-fold CV: AUROC {auroc(oof, y):.3f}  Brier {brier:.3f}  ECE {ece:.3f}  "
          f"(avg_logprob alone, in-sample AUROC {auroc(x[:, 0] * baseline.weights[0], y):.3f})")
    print("reliability (out-of-fold): bin   n   confidence  accuracy")
    for r in reliability_table(oof, y):
        print(f"  {r['lo']:.1f}-{r['hi']:.1f} {r['count']:4d}   {r['confidence']:.3f}"
              f"      {r['accuracy']:.3f}")
    meta = {
        "local_model": next(iter(local.values()))["model"],
        "local_recipe": ModelCard.load(resolve_model(args.model)).recipe.get("name"),
        "label": f"utterance WER <= {args.label_max_wer:g} after Whisper English normalization; "
                 "non-speech: no words",
        "label_max_wer": args.label_max_wer,
        "data": f"the fit half of speech-dev (by recording) x (clean + {'/'.join(f'{s:g}' for s in args.snrs)}"
                f" dB SNR white/pink/brown noise) + the fit half of {args.nonspeech} synthesized non-speech clips",
        "n": len(y), "n_right": int(y.sum()),
        "cv": {"folds": 5, "auroc": round(auroc(oof, y), 4), "brier": round(brier, 4), "ece": round(ece, 4)},
        "fitted": datetime.date.today().isoformat(),
        "script": "benchmarks/fit_confidence.py",
    }
    model = dataclasses.replace(model_from(x, y, args.l2, meta), default_threshold=args.unsure)
    return model, dict(zip(ids, oof, strict=True))


def gap_recovered(clips, local, cloud, escalated: set[str]) -> float:
    """Share of the noisy utterances' local/cloud word-error gap that escalating `escalated` recovers."""
    gap = removed = 0
    for c in clips:
        if c.kind == "speech" and c.snr_db is not None and c.id in cloud:
            gain = (data.word_errors(c.reference, local_text(local[c.id]))[0]
                    - data.word_errors(c.reference, cloud[c.id]["text"])[0])
            gap += gain
            removed += gain if c.id in escalated else 0
    return removed / gap if gap > 0 else float("nan")


def fit_benefit(clips, local, cloud, confidence: dict[str, float], args) -> BenefitModel:
    """The benefit model; its default threshold makes the policy's rule (confidence below `args.unsure`,
    benefit at least the threshold) escalate `args.escalate` of the noisy fit utterances, out of fold."""
    features = tuple(args.benefit_features)
    x, y, groups, ids = benefit_table(clips, local, cloud, confidence, features)
    rates = cross_validate(x, y, groups, lambda a, b: benefit_from(a, b, features, args.benefit_l2),
                           lambda m, row: m.rate(dict(zip(features, row, strict=True))))
    seconds = {c.id: c.duration for c in clips}
    oof = rates * np.array([seconds[i] for i in ids])  # expected errors removed per window, as the policy ranks
    speech = np.array(["@" in i for i in ids])
    unsure = np.array([confidence[i] < args.unsure for i in ids])
    n_noisy = sum(1 for c in clips if c.kind == "speech" and c.snr_db is not None and c.id in cloud)
    # The threshold is the benefit of the k-th most promising unsure noisy utterance, k = the share wanted.
    candidates = np.sort(oof[speech & unsure])[::-1]
    k = min(int(args.escalate * n_noisy), len(candidates))
    threshold = float(candidates[k - 1]) if k else float("inf")
    chosen = speech & unsure & (oof >= threshold)
    recovered = gap_recovered(clips, local, cloud, {i for i, c in zip(ids, chosen, strict=True) if c})
    print(f"benefit: {len(y)} clips with words and a cloud transcript; out-of-fold correlation with the errors "
          f"removed per second {np.corrcoef(rates, y)[0, 1]:.3f}; default threshold {threshold:.3f} escalates "
          f"{chosen.sum()} of {n_noisy} noisy fit utterances, recovering {recovered:.1%} of their local/cloud "
          "WER gap (out of fold)")
    meta = {
        "target": "word errors per second of audio that the cloud's transcript removes from the local one "
                  "(Whisper English normalization); the policy's benefit is this rate times the window's seconds",
        "cloud": args.cloud_cache.name,
        "n": len(y),
        "cv": {"folds": 5, "rate_correlation": round(float(np.corrcoef(rates, y)[0, 1]), 4)},
        "min_confidence": args.unsure,
        "default_threshold_escalates": round(float(chosen.sum() / max(n_noisy, 1)), 4),
        "default_threshold_recovers": round(recovered, 4),
    }
    model = benefit_from(x, y, features, args.benefit_l2, meta)
    # Rounded down, so the utterance that set the threshold still passes it.
    return dataclasses.replace(model, default_threshold=float(np.floor(threshold * 1e4) / 1e4))


def build_parser() -> argparse.ArgumentParser:
    """The options, and so the shipped fitting recipe (crossfit_escalation.py refits with these defaults)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="local model dir or built-in name (default: the default)")
    ap.add_argument("--snrs", type=float, nargs="+", default=[0, 5, 10, 20])
    ap.add_argument("--nonspeech", type=int, default=60, help="number of non-speech clips")
    ap.add_argument("--limit", type=int, default=None,
                    help="only N speech-dev utterances (a fixed random sample) and a proportional share of "
                         "the non-speech clips")
    ap.add_argument("--label-max-wer", type=float, default=0.1)
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument("--benefit-l2", type=float, default=10.0)
    ap.add_argument("--benefit-features", nargs="+", default=list(BENEFIT_FEATURES),
                    choices=[*FEATURES, DOUBTFUL_WORDS, *AUDIO_FEATURES, LOCAL_CONFIDENCE])
    ap.add_argument("--unsure", type=float, default=0.5,
                    help="the shipped min_confidence: below it the device is unsure of a transcript")
    ap.add_argument("--escalate", type=float, default=0.24,
                    help="the shipped min_benefit makes the policy escalate this share of the noisy fit "
                         "utterances (out of fold)")
    ap.add_argument("--cache", type=Path, default=data.REPO / "out" / "escalation" / "local.jsonl")
    ap.add_argument("--cloud-cache", type=Path,
                    default=data.REPO / "out" / "escalation" / "cloud-base-beam5.jsonl")
    ap.add_argument("--out", type=Path, default=data.REPO / "edge_asr" / "confidence.json")
    return ap


def main() -> int:
    args = build_parser().parse_args()

    clips = data.benchmark_clips([None, *args.snrs], args.limit, args.nonspeech)
    local = data.run_local(clips, args.model, args.cache)
    cloud = load_jsonl(args.cloud_cache)
    fit = [c for c in clips if data.split_of(c.id) == "fit"]
    confidence, oof_confidence = fit_confidence(fit, local, args)
    benefit = fit_benefit(fit, local, cloud, oof_confidence, args)
    args.out.write_text(json.dumps({**confidence.to_dict(), "benefit": benefit.to_dict()}, indent=2) + "\n",
                        encoding="utf-8")
    for name, model in (("confidence", confidence), ("benefit", benefit)):
        weights = {f: round(float(w), 3) for f, w in zip(model.features, model.weights, strict=True)}
        print(f"{name} weights (per standard deviation):", weights)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cross-fitted routing numbers: every speech-dev recording scored by a policy whose models never saw it.

The shipped confidence and benefit models are fitted on the "fit" half of the recordings (38 of 82) and
bench_escalation.py scores them on the "held-out" half (44). Here the same recipe, frozen as shipped
(fit_confidence.py's defaults: the same features and fitting code, min_confidence 0.5, min_benefit set to send
24 % of the training side's noisy utterances out of fold), is fitted on each half and scored on the other, so
all 82 recordings x 0/5/10/20 dB SNR = 328 noisy utterances are routed out of sample. Fold "fit -> held-out"
is the shipped model (checked: the refit reproduces edge_asr/confidence.json).

Reported per fold and pooled, for each --max-shares cap on the audio sent (1 = no cap; the policy's own rules
replayed on cached transcripts, as bench_escalation.py does, each fold one stream in clip order, the pooled
stream all 328 utterances in clip order): share of utterances and of audio escalated, share of the local/cloud
WER gap recovered, and 90 % bootstrap intervals resampling recordings (all noisy copies together) within each
fold, with the routing decisions held fixed. Also: the most any ordering of the unsure windows (by benefit,
by benefit per second, by confidence, by the true gain) could recover within a share of audio, sorted with
hindsight over the whole set: a ceiling for any cap accounting built on these scores. The same for a share of
the utterances: in the order of the benefit, of the device's own errors and of the true gain, each with the
shipped arbiter and a perfect one (what better routing could still reach). And one alternative
tried for a binding cap: the benefit discounted by the audio it costs (benefit - lambda * seconds, lambda
chosen on each training side for the cap, the two folds' replays summed).

Uses only bench_escalation.py's caches (OUT/local.jsonl, OUT/cloud-base-beam5.jsonl); nothing is transcribed.

    python benchmarks/crossfit_escalation.py            # writes OUT/crossfit.json
    python benchmarks/crossfit_escalation.py --escalate 0.25   # the recipe with another utterance share
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
import bench_escalation as bench  # noqa: E402
import escalation_data as data  # noqa: E402
import fit_confidence as fitting  # noqa: E402

from edge_asr.confidence import DEFAULT_COEFFICIENTS  # noqa: E402
from edge_asr.escalation import takes_cloud  # noqa: E402

SIDES = ("fit", "heldout")
NAMES = {"fit": "held-out -> fit", "heldout": "fit -> held-out"}  # keyed by the side scored


def fit_side(clips, local, cloud, side: str, recipe: argparse.Namespace):
    """The confidence and benefit models fitted by fit_confidence.py's recipe on one side's clips."""
    train = [c for c in clips if data.split_of(c.id) == side]
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        confidence, oof = fitting.fit_confidence(train, local, recipe)
        benefit = fitting.fit_benefit(train, local, cloud, oof, recipe)
    line = next(line for line in log.getvalue().splitlines() if line.startswith("benefit:"))
    return confidence, benefit, line, oof_benefits(train, local, cloud, oof, recipe)


def oof_benefits(train, local, cloud, confidence: dict[str, float], recipe) -> dict[str, tuple[float, float]]:
    """Out-of-fold (local confidence, benefit) per training clip, as fit_benefit computes them."""
    features = tuple(recipe.benefit_features)
    x, y, groups, ids = fitting.benefit_table(train, local, cloud, confidence, features)
    rates = fitting.cross_validate(x, y, groups,
                                   lambda a, b: fitting.benefit_from(a, b, features, recipe.benefit_l2),
                                   lambda m, row: m.rate(dict(zip(features, row))))
    seconds = {c.id: c.duration for c in train}
    return {i: (confidence[i], r * seconds[i]) for i, r in zip(ids, rates)}


def same_as_shipped(confidence, benefit) -> bool:
    shipped = json.loads(Path(DEFAULT_COEFFICIENTS).read_text())
    mine = {**confidence.to_dict(), "benefit": benefit.to_dict()}
    keys = ("mean", "scale", "weights", "bias", "default_threshold")
    pairs = [(mine[k], shipped[k]) for k in keys] + [(mine["benefit"][k], shipped["benefit"][k]) for k in keys]
    return all(np.shape(a) == np.shape(b) and np.allclose(np.array(a, float), np.array(b, float)) for a, b in pairs)


class Errors:
    """Word errors per clip id (local, cloud), computed once."""

    def __init__(self, clips, local, cloud):
        self.clips = list(clips)
        self.local, self.cloud, self.words = {}, {}, {}
        for c in clips:
            self.local[c.id], self.words[c.id] = data.word_errors(c.reference, bench.local_text(local[c.id]))
            self.cloud[c.id] = data.word_errors(c.reference, cloud[c.id]["text"])[0]


def recording_table(clips, errors: Errors, routed_errors: dict[str, int], escalated: set[str]) -> dict:
    """Per recording: local, cloud and routed word errors, utterances, escalated, seconds, seconds sent."""
    table: dict[str, np.ndarray] = {}
    for c in clips:
        row = np.array([errors.local[c.id], errors.cloud[c.id], routed_errors[c.id], 1, c.id in escalated,
                        c.duration, c.duration * (c.id in escalated)], dtype=float)
        key = c.id.split("@")[0]
        table[key] = table.get(key, np.zeros(7)) + row
    return table


def shares(total: np.ndarray) -> dict:
    local, cloud, routed, n, sent, seconds, sent_s = total
    return {"escalated": sent / n, "audio_share": sent_s / seconds,
            "gap_recovered": (local - routed) / (local - cloud) if local > cloud else float("nan")}


def bootstrap(strata: list[np.ndarray], resamples: int = 2000, seed: int = 0) -> dict:
    """90 % intervals of the shares, resampling recordings with replacement within each stratum (fold)."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        total = sum(t[rng.integers(0, len(t), len(t))].sum(axis=0) for t in strata)
        if total[0] > total[1]:
            draws.append(shares(total))
    return {f"{k}_90": [float(v) for v in np.percentile([d[k] for d in draws], [5, 95])] for k in draws[0]}


def route(clips, local, cloud, errors: Errors, scores, rules, max_share: float, burst_s: float):
    """bench_escalation's replay of the policy (one stream, in clip order), tabled per recording."""
    escalated, routed, _ = bench.replay(clips, local, cloud, scores, rules, max_share, burst_s)
    routed_errors = {c.id: errors.cloud[c.id] if routed[c.id] == cloud[c.id]["text"] else errors.local[c.id]
                     for c in clips}
    return recording_table(clips, errors, routed_errors, escalated)


def by_side(table: dict) -> list[np.ndarray]:
    """A per-recording table split into the two halves: the bootstrap's strata."""
    return [np.array([v for k, v in table.items() if data.split_of(k) == s]) for s in SIDES]


def arbitrated_gain(c, cloud, errors: Errors, scores) -> int:
    """The word errors that sending clip c removes, the arbiter (takes_cloud) deciding which text stands."""
    taken = takes_cloud(scores.local[c.id], cloud[c.id]["text"], scores.cloud[c.id])
    return errors.local[c.id] - errors.cloud[c.id] if taken else 0


def unsure_with_words(clips, scores, min_confidence: float) -> list:
    return [c for c in clips if scores.local[c.id] < min_confidence and scores.benefit[c.id] is not None]


def ceilings(clips, cloud, errors: Errors, scores, min_confidence: float,
             audio_shares=(0.2, 0.25, 0.3, 0.35, 0.4)):
    """The gap recovered by taking the unsure windows with words in the order of a score, with hindsight over
    the whole set, until a share of the audio is spent (the arbiter, takes_cloud, still applies)."""
    def gain(c):
        return arbitrated_gain(c, cloud, errors, scores)

    seconds = sum(c.duration for c in clips)
    gap = sum(errors.local[c.id] - errors.cloud[c.id] for c in clips)
    unsure = unsure_with_words(clips, scores, min_confidence)
    orders = {
        "benefit (errors per window)": lambda c: scores.benefit[c.id],
        "benefit per second": lambda c: scores.benefit[c.id] / c.duration,
        "confidence (lowest first)": lambda c: -scores.local[c.id],
        "true gain per second (oracle)": lambda c: gain(c) / c.duration,
    }
    out = {}
    for name, key in orders.items():
        ranked = sorted(unsure, key=key, reverse=True)
        audio = np.cumsum([c.duration for c in ranked]) / seconds
        recovered = np.cumsum([gain(c) for c in ranked]) / gap
        rows = []
        for share in audio_shares:
            k = int(np.searchsorted(audio, share, side="right"))
            rows.append({"audio_share": share, "escalated": k / len(clips),
                         "gap_recovered": float(recovered[k - 1]) if k else 0.0})
        out[name] = rows
    return out


def utterance_ceilings(clips, cloud, errors: Errors, scores, min_confidence: float, share: float) -> dict:
    """The gap recovered by sending `share` of the utterances, no cap: the unsure windows with words in the
    order of the cross-fitted benefit, of the device's own word errors (hindsight: the best a perfect
    predictor of the device's errors could do) and of the true gain (oracle); each with the shipped arbiter
    (takes_cloud) and with a perfect one (per window the better of the two transcripts)."""
    gap = sum(errors.local[c.id] - errors.cloud[c.id] for c in clips)
    unsure = unsure_with_words(clips, scores, min_confidence)

    def gain(c, perfect: bool) -> int:
        if perfect:
            return max(0, errors.local[c.id] - errors.cloud[c.id])
        return arbitrated_gain(c, cloud, errors, scores)

    orders = {"benefit (cross-fitted)": lambda c: scores.benefit[c.id],
              "device's own errors (hindsight)": lambda c: errors.local[c.id],
              "true gain (oracle)": lambda c: gain(c, True)}
    k = int(round(share * len(clips)))
    out = {}
    for name, key in orders.items():
        top = sorted(unsure, key=key, reverse=True)[:k]
        out[name] = {"escalated": len(top) / len(clips),
                     "gap_recovered": sum(gain(c, False) for c in top) / gap,
                     "gap_recovered_perfect_arbiter": sum(gain(c, True) for c in top) / gap}
    return out


DISCOUNT_GRID = tuple(float(v) for v in np.arange(0.0, 0.401, 0.025))  # word errors per second of audio


def choose_discount(train_noisy, errors: Errors, oof: dict, recipe, max_share: float,
                    grid=DISCOUNT_GRID) -> tuple[float, float]:
    """Per-second audio price lambda and threshold for the rule "benefit - lambda * seconds >= threshold", chosen
    on the training side out of fold: the threshold keeps the recipe's share of utterances (recipe.escalate),
    lambda maximizes the gap recovered among the lambdas whose audio share is within max_share (else the
    cheapest in audio)."""
    seconds = {c.id: c.duration for c in train_noisy}
    total_s, gap = sum(seconds.values()), sum(errors.local[i] - errors.cloud[i] for i in seconds)
    unsure = [i for i in seconds if i in oof and oof[i][0] < recipe.unsure]
    k = int(recipe.escalate * len(seconds))
    options = []
    for lam in grid:
        ranked = sorted(unsure, key=lambda i: oof[i][1] - lam * seconds[i], reverse=True)[:k]
        audio = sum(seconds[i] for i in ranked) / total_s
        recovered = sum(errors.local[i] - errors.cloud[i] for i in ranked) / gap
        options.append((audio <= max_share, recovered if audio <= max_share else -audio, -lam, float(lam),
                        oof[ranked[-1]][1] - lam * seconds[ranked[-1]]))
    best = max(options)
    return best[3], best[4]


def discount_check(folds, fold_fits, local, cloud, errors: Errors, recipe, caps, burst_s: float) -> dict:
    """The shipped rule with the benefit discounted by the audio it costs (lambda chosen per fold on its
    training side, for the cap), replayed under that cap on the scored side."""
    out = {}
    for cap in caps:
        tables, picked = {}, {}
        for scored, f in folds.items():
            train = "heldout" if scored == "fit" else "fit"
            train_noisy = [c for c in errors.clips if data.split_of(c.id) == train]
            lam, threshold = choose_discount(train_noisy, errors, fold_fits[scored], recipe, cap)
            sc = f["scores"]
            discounted = {c.id: None if sc.benefit[c.id] is None else sc.benefit[c.id] - lam * c.duration
                          for c in f["clips"]}
            scores = bench.Scores(sc.local, sc.cloud, discounted)
            tables[scored] = route(f["clips"], local, cloud, errors, scores,
                                   bench.Rule(f["rule"].min_confidence, threshold), cap, burst_s)
            picked[NAMES[scored]] = {"lambda": lam, "threshold": threshold,
                                     **shares(np.array(list(tables[scored].values())).sum(axis=0))}
        pooled = np.array([v for t in tables.values() for v in t.values()]).sum(axis=0)
        out[f"{cap:g}"] = {**picked, "pooled": shares(pooled)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=data.REPO / "out" / "escalation")
    ap.add_argument("--max-shares", type=float, nargs="+", default=[0.25, 0.3, 0.35, 0.4, 1.0])
    ap.add_argument("--burst-s", type=float, default=30.0)
    ap.add_argument("--escalate", type=float, default=None,
                    help="fit_confidence.py's --escalate for both folds (default: its default, as shipped)")
    ap.add_argument("--noise-draw", type=int, default=0,
                    help="another noise draw for the noisy clips (bench_escalation.py --noise-draw first)")
    ap.add_argument("--benefit-features", nargs="+", default=None,
                    help="fit_confidence.py's --benefit-features for both folds (default: its default)")
    args = ap.parse_args()
    recipe = fitting.build_parser().parse_args([])
    if args.escalate is not None:
        recipe.escalate = args.escalate
    if args.benefit_features is not None:
        recipe.benefit_features = args.benefit_features

    snrs = [0, 5, 10, 20]
    clips = data.benchmark_clips([None, *snrs], None, recipe.nonspeech, args.noise_draw)
    local = data.run_local(clips, None, args.out / "local.jsonl")  # cached: transcribes only what is missing
    cloud = fitting.load_jsonl(args.out / "cloud-base-beam5.jsonl")
    recipe.cloud_cache = args.out / "cloud-base-beam5.jsonl"
    noisy = [c for c in clips if c.kind == "speech" and c.snr_db is not None]
    missing = [c.id for c in noisy if c.id not in cloud]
    if missing:
        raise SystemExit(f"crossfit: {len(missing)} noisy utterances have no cached cloud transcript; run "
                         "bench_escalation.py --parts routing first")
    errors = Errors(noisy, local, cloud)

    folds, scores, rules, fold_fits = {}, {}, {}, {}
    for scored in SIDES:
        train = "heldout" if scored == "fit" else "fit"
        confidence, benefit, line, fold_fits[scored] = fit_side(clips, local, cloud, train, recipe)
        test = [c for c in noisy if data.split_of(c.id) == scored]
        fold_scores = bench.score_clips(test, local, cloud, confidence, benefit)
        rule = bench.Rule(confidence.default_threshold, benefit.default_threshold)
        folds[scored] = {"clips": test, "scores": fold_scores, "rule": rule}
        for c in test:
            rules[c.id] = rule
        for part in ("local", "cloud", "benefit"):
            scores.setdefault(part, {}).update(getattr(fold_scores, part))
        shipped = same_as_shipped(confidence, benefit) if train == "fit" else None
        folds[scored]["fitted"] = {"trained_on": train, "recordings_scored": len({c.id.split("@")[0] for c in test}),
                                   "min_benefit": rule.min_benefit, "training_side": line,
                                   **({"equals_shipped": shipped} if shipped is not None else {})}
        print(f"{NAMES[scored]}: {line}" + ("" if shipped is None else f"; refit equals shipped: {shipped}"))
    pooled_scores = bench.Scores(scores["local"], scores["cloud"], scores["benefit"])

    results: dict = {"machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg()},
                     "escalate": recipe.escalate, "burst_s": args.burst_s, "folds": {}, "pooled": {}}
    for scored in SIDES:
        results["folds"][NAMES[scored]] = {"fitted": folds[scored]["fitted"], "by_max_share": {}}
    print(f"\n{'':18} {'max_share':>9}  {'utterances':>10}  {'audio':>6}  {'gap recovered':>13}   90 % intervals "
          "over recordings (utterances / audio / gap)")
    for cap in args.max_shares:
        burst = args.burst_s if cap < 1 else 0.0
        tables = {}
        for scored in SIDES:
            f = folds[scored]
            tables[scored] = route(f["clips"], local, cloud, errors, f["scores"], f["rule"], cap, burst)
        pooled = route(noisy, local, cloud, errors, pooled_scores, rules, cap, burst)
        for name, table in (*((NAMES[s], tables[s]) for s in SIDES), ("pooled (328)", pooled)):
            strata = [s for s in by_side(table) if len(s)]
            row = {**shares(np.array(list(table.values())).sum(axis=0)), **bootstrap(strata)}
            target = results["pooled"] if name.startswith("pooled") else results["folds"][name]["by_max_share"]
            target[f"{cap:g}"] = row
            print(f"{name:18} {cap:9g}  {row['escalated']:10.1%}  {row['audio_share']:6.1%}  "
                  f"{row['gap_recovered']:13.1%}   {row['escalated_90'][0]:.0%}-{row['escalated_90'][1]:.0%} / "
                  f"{row['audio_share_90'][0]:.0%}-{row['audio_share_90'][1]:.0%} / "
                  f"{row['gap_recovered_90'][0]:.0%}-{row['gap_recovered_90'][1]:.0%}")
    results["ceilings_pooled"] = ceilings(noisy, cloud, errors, pooled_scores, recipe.unsure)
    print("\nwith hindsight, pooled: the most an ordering of the unsure windows recovers within a share of audio")
    for name, rows in results["ceilings_pooled"].items():
        print(f"  {name:30} " + "  ".join(f"{r['audio_share']:.0%}: {r['gap_recovered']:5.1%} "
                                          f"({r['escalated']:.0%} utt.)" for r in rows))
    results["utterance_ceilings"] = utterance_ceilings(noisy, cloud, errors, pooled_scores, recipe.unsure,
                                                       recipe.escalate)
    print(f"\nsending the first {recipe.escalate:.0%} of the utterances (no cap), pooled, in the order of:")
    for name, row in results["utterance_ceilings"].items():
        print(f"  {name:32} {row['gap_recovered']:6.1%} of the gap; with a perfect arbiter "
              f"{row['gap_recovered_perfect_arbiter']:6.1%}")
    caps = [c for c in args.max_shares if c < 1]
    results["discounted"] = discount_check(folds, fold_fits, local, cloud, errors, recipe, caps, args.burst_s)
    print("\nbenefit discounted by the audio it costs (benefit - lambda * seconds; lambda chosen on each training "
          "side for the cap), replayed under the cap:")
    for cap, row in results["discounted"].items():
        print(f"  max_share {cap}: " + "  ".join(
            f"{name} " + (f"(lambda {v['lambda']:.3f}) " if "lambda" in v else "")
            + f"{v['escalated']:.1%} utt. {v['audio_share']:.1%} audio {v['gap_recovered']:.1%}"
            for name, v in row.items()))
    path = args.out / "crossfit.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

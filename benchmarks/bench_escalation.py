"""Benchmark confidence-gated escalation against `edge-asr serve` on 127.0.0.1.

    python benchmarks/bench_escalation.py --cloud-model models/base --out out/escalation

Parts (choose with --parts; everything also lands in OUT/results.json, OUT/summary.md and PNGs):
  routing    speech-dev x noise at 0/5/10/20 dB SNR, scored on the held-out half of the recordings (the
             shipped confidence and benefit models are fitted on the other half, escalation_data.split_of):
             WER local-only, cloud-only and routed; escalation rates; share of the local/cloud WER gap
             recovered; sweeps of min_benefit and of min_confidence alone; latency. The routed transcript of
             a clip is the local one, or the cloud's transcript of that same clip where the policy escalates
             it (the cloud answers are computed once and cached); a live pass through the real
             EscalationPolicy on a sample measures latency end to end and checks agreement.
  nonspeech  synthesized non-speech clips: share yielding no words, local-only and routed.
  down       the cloud refusing connections, a black hole that never answers, a server answering 500: every
             utterance keeps its local transcript; cost of the first failure and of the later ones.
  load       N concurrent clients for S seconds: status counts (only 200, and 503 with Retry-After, allowed),
             latency, and the server's RSS over time.
Local and cloud transcripts are cached as JSONL under OUT, so a rerun only computes what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
import escalation_data as data  # noqa: E402

from edge_asr.cloud import CloudClient, CloudError  # noqa: E402
from edge_asr.confidence import (  # noqa: E402
    BenefitModel,
    ConfidenceModel,
    benefit_inputs,
    expected_calibration_error,
    has_words,
    reliability_table,
)
from edge_asr.escalation import (  # noqa: E402
    EscalationPolicy,
    EscalationSection,
    takes_cloud,
    wants_cloud,
    within_share,
)
from edge_asr.types import Segment, Word  # noqa: E402

TOKEN = "bench-" + os.urandom(8).hex()


# --- the cloud: a real server on loopback ----


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cloud:
    def __init__(self, model: str, beam: int, threads: int, max_queue: int = 4):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.endpoint = self.url + "/v1/audio/transcriptions"
        cmd = [
            sys.executable,
            "-m",
            "edge_asr.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--model",
            model,
            "--beam-size",
            str(beam),
            "--threads",
            str(threads),
            "--max-queue",
            str(max_queue),
            "--log-level",
            "warning",
        ]
        self.process = subprocess.Popen(cmd, cwd=data.REPO, env={**os.environ, "EDGE_ASR_API_KEY": TOKEN})
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited with {self.process.returncode}")
            try:
                self.health = httpx.get(self.url + "/health", timeout=1).json()
                return
            except httpx.TransportError:
                time.sleep(0.2)
        raise SystemExit("server did not start")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def run_cloud(clips: list[data.Clip], cloud: Cloud, cache: Path) -> dict:
    """Cloud-only transcripts of every clip (verbose_json, language en), cached per clip id."""
    from tqdm import tqdm

    done = data.read_cache(cache)
    todo = [c for c in clips if c.id not in done]
    if todo:
        client = CloudClient(cloud.endpoint, TOKEN, timeout_s=600, retries=0)
        with open(cache, "a", encoding="utf-8") as out:
            for clip in tqdm(todo, desc=f"cloud {cloud.health['model']}", unit="clip"):
                result = client.transcribe(clip.audio, language="en")
                row = {
                    "id": clip.id,
                    "text": result.text,
                    "latency_s": result.latency_s,
                    "segments": result.segments,
                }
                out.write(json.dumps(row) + "\n")
                out.flush()
                done[clip.id] = row
    return done


# --- reusing an earlier run's transcripts ----


def decided_at_zero(row: dict, no_speech_threshold: float = 0.6, loop_ratio: float = 2.4) -> bool:
    """Was every window of this transcript settled by its first, temperature-0 decode, with a no-speech
    probability at or under the threshold and no loop? Such windows never reach the silence test's doubt, the
    fallback or the sampler, so a decoder change confined to those gives the same transcript. A clip with no
    segment qualifies too: a window is only dropped at temperature 0 (no-speech high and text unlikely)."""
    return all(s["temperature"] == 0 and s["no_speech_prob"] <= no_speech_threshold
               and s["compression_ratio"] <= loop_ratio for s in row["segments"])


def seed_cache(old: Path, new: Path, clip_ids: set[str], check: int, seed: int = 0) -> dict:
    """Copy into `new` the rows of `old` (for these clips) that `decided_at_zero`, except `check` of them
    picked at random: those are recomputed and compared with the old text (see reuse_agreement)."""
    if new.exists() or not old.exists():
        return {}
    rows = [json.loads(line) for line in old.read_text().splitlines()]
    rows = [r for r in rows if r["id"] in clip_ids]
    reusable = [r for r in rows if decided_at_zero(r)]
    checked = {r["id"]: r for r in random.Random(seed).sample(reusable, min(check, len(reusable)))}
    new.parent.mkdir(parents=True, exist_ok=True)
    new.write_text("".join(json.dumps(r) + "\n" for r in reusable if r["id"] not in checked))
    print(f"{new.name}: reused {len(reusable) - len(checked)} of {len(rows)} transcripts from {old}; "
          f"{len(checked)} of the reusable ones recomputed as a check")
    return checked


def reuse_agreement(checked: dict, fresh: dict) -> dict:
    same = [data.normalize(local_text(fresh[i])) == data.normalize(local_text(r)) for i, r in checked.items()]
    return {"checked": len(same), "identical": sum(same)}


# --- routing ----


def local_text(row: dict) -> str:
    return "".join(s["text"] for s in row["segments"])


def to_segments(row: dict) -> list[Segment]:
    return [
        Segment(
            id=i,
            seek=s["seek"],
            start=s["start"],
            end=s["end"],
            text=s["text"],
            tokens=s["tokens"],
            temperature=s["temperature"],
            avg_logprob=s["avg_logprob"],
            compression_ratio=s["compression_ratio"],
            no_speech_prob=s["no_speech_prob"],
            words=[Word(**w) for w in s["words"]] if s["words"] is not None else None,
        )
        for i, s in enumerate(row["segments"])
    ]


def corpus_wer(pairs: list[tuple[str, str]]) -> float:
    errors = words = 0
    for ref, hyp in pairs:
        e, n = data.word_errors(ref, hyp)
        errors, words = errors + e, words + n
    return errors / max(words, 1)


@dataclass
class Scores:
    """What the policy computes per clip: local and cloud confidence, and the benefit (None: no words)."""

    local: dict[str, float]
    cloud: dict[str, float]
    benefit: dict[str, float | None]


@dataclass
class Rule:
    """The policy's thresholds (min_benefit None: the confidence alone decides, as before the benefit model)."""

    min_confidence: float
    min_benefit: float | None


def score_clips(clips, local, cloud, model: ConfidenceModel, benefit: BenefitModel | None) -> Scores:
    """Local and cloud confidence (the cloud's from its verbose_json segments) and the benefit per clip."""
    local_conf, cloud_conf, gains = {}, {}, {}
    for c in clips:
        segments = local[c.id]["segments"]
        local_conf[c.id] = model.score(segments, c.duration) if segments else 1.0
        if c.id in cloud:
            cloud_conf[c.id] = model.score(cloud[c.id]["segments"] or [{"text": cloud[c.id]["text"]}], c.duration)
        with_words = benefit is not None and has_words(local_text(local[c.id]))
        gains[c.id] = benefit.expected_gain(benefit_inputs(segments, c.duration, local_conf[c.id], c.audio)
                                            ) if with_words else None
    return Scores(local_conf, cloud_conf, gains)


def replay(clips, local, cloud, scores: Scores, rule: Rule | dict[str, Rule], max_share=1.0, burst_s=0.0):
    """EscalationPolicy's decisions on cached transcripts, in clip order: which clips go up (wants_cloud and
    the share budget), and the routed text (the cloud's where takes_cloud says so). `rule` may be given per
    clip id (crossfit_escalation.py: each clip under the thresholds of the fold that scores it)."""
    seen = sent = 0.0
    escalated, routed = set(), {}
    for clip in clips:
        seen += clip.duration
        text = local_text(local[clip.id])
        r = rule[clip.id] if isinstance(rule, dict) else rule
        wanted = wants_cloud(text, scores.local[clip.id], r.min_confidence, scores.benefit[clip.id],
                             r.min_benefit)
        if wanted and within_share(sent, clip.duration, seen, max_share, burst_s):
            sent += clip.duration
            escalated.add(clip.id)
            if takes_cloud(scores.local[clip.id], cloud[clip.id]["text"], scores.cloud[clip.id]):
                text = cloud[clip.id]["text"]
        routed[clip.id] = text
    return escalated, routed, sent / max(seen, 1e-9)


def summarize(clips, local, cloud, scores: Scores, rule: Rule, max_share=1.0, burst_s=0.0) -> dict:
    """Routed WER, escalation shares and the share of the local/cloud gap recovered, on `clips`."""
    local_wer = corpus_wer([(c.reference, local_text(local[c.id])) for c in clips])
    cloud_wer = corpus_wer([(c.reference, cloud[c.id]["text"]) for c in clips])
    escalated, routed, share = replay(clips, local, cloud, scores, rule, max_share, burst_s)
    wer = corpus_wer([(c.reference, routed[c.id]) for c in clips])
    gap = local_wer - cloud_wer
    return {
        "min_confidence": rule.min_confidence,
        "min_benefit": rule.min_benefit,
        "local_wer": local_wer,
        "cloud_wer": cloud_wer,
        "escalated": len(escalated) / len(clips),
        "audio_share": share,
        "routed_wer": wer,
        "gap_recovered": (local_wer - wer) / gap if gap > 0 else float("nan"),
    }


def recovery_interval(clips, local, cloud, scores: Scores, rule: Rule, resamples: int = 2000) -> dict:
    """90 % bootstrap intervals of the gap recovered and the share escalated (no share cap), resampling whole
    recordings (all noisy copies together): how much of a difference between rules the sample can tell."""
    escalated, routed, _ = replay(clips, local, cloud, scores, rule)
    by_recording: dict[str, np.ndarray] = {}
    for c in clips:  # per recording: local, cloud and routed errors, reference words, utterances, escalated
        row = [data.word_errors(c.reference, local_text(local[c.id]))[0],
               data.word_errors(c.reference, cloud[c.id]["text"])[0],
               data.word_errors(c.reference, routed[c.id])[0], 0, 1, c.id in escalated]
        key = c.id.split("@")[0]
        by_recording[key] = by_recording.get(key, np.zeros(6)) + np.array(row, dtype=float)
    table = np.array(list(by_recording.values()))
    rng = np.random.default_rng(0)
    recovered, shares = [], []
    for _ in range(resamples):
        errs = table[rng.integers(0, len(table), len(table))].sum(axis=0)
        if errs[0] > errs[1]:
            recovered.append((errs[0] - errs[2]) / (errs[0] - errs[1]))
            shares.append(errs[5] / errs[4])
    return {"gap_recovered_90": [float(v) for v in np.percentile(recovered, [5, 95])],
            "escalated_90": [float(v) for v in np.percentile(shares, [5, 95])]}


def oracle_recovery(clips, local, cloud, share: float = 0.25) -> float:
    """Share of the gap recovered by escalating the `share` of utterances where the cloud removes most errors:
    a ceiling for any score."""
    gains = sorted((data.word_errors(c.reference, local_text(local[c.id]))[0]
                    - data.word_errors(c.reference, cloud[c.id]["text"])[0] for c in clips), reverse=True)
    gap = sum(gains)
    return sum(gains[: int(share * len(clips))]) / gap if gap > 0 else float("nan")


def routing_part(clips, local, cloud, model: ConfidenceModel, benefit: BenefitModel | None, args, results,
                 cloud_server):
    speech = [c for c in clips if c.kind == "speech"]
    heldout = [c for c in speech if data.split_of(c.id) == "heldout"]
    scores = score_clips(speech, local, cloud, model, benefit)
    rule = Rule(model.default_threshold, benefit.default_threshold if benefit else None)

    def run(subset, r, capped=False):
        cap = (args.max_share, args.burst_s) if capped else (1.0, 0.0)
        return summarize(subset, local, cloud, scores, r, *cap)

    default = run(heldout, rule, capped=True)
    every = run(speech, rule, capped=True)  # fit half included: in-sample for it, for reference only
    by_snr = {f"{snr:g}": run([c for c in heldout if c.snr_db == snr], rule) for snr in args.snrs}
    gains = sorted(g for c in heldout if (g := scores.benefit[c.id]) is not None)
    benefit_sweep = [run(heldout, Rule(rule.min_confidence, float(t)))
                     for t in np.quantile(gains, np.linspace(0.05, 0.95, 13))] if benefit else []
    confidence_sweep = [run(heldout, Rule(t, None)) for t in (0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2,
                                                               0.3, 0.4, 0.5, 0.7, 0.9)]
    # Reliability of the shipped calibration on the held-out utterances (label as in fit_confidence.py).
    max_wer = (model.meta or {}).get("label_max_wer", 0.1)
    labelled = [c for c in heldout if has_words(local_text(local[c.id]))]
    right = []
    for c in labelled:
        e, n = data.word_errors(c.reference, local_text(local[c.id]))
        right.append(e / n <= max_wer)
    confs = [scores.local[c.id] for c in labelled]
    results["routing"] = {
        "utterances": len(speech),
        "heldout_utterances": len(heldout),
        "default": default,
        "default_uncapped": {**run(heldout, rule), **recovery_interval(heldout, local, cloud, scores, rule)},
        "all_recordings": every,
        "oracle_gap_recovered_at_25pct": oracle_recovery(heldout, local, cloud),
        "by_snr": by_snr,
        "benefit_sweep": benefit_sweep,
        "confidence_sweep": confidence_sweep,
        "local_latency_s_p50": statistics.median(local[c.id]["elapsed_s"] for c in speech),
        "cloud_latency_s_p50": statistics.median(cloud[c.id]["latency_s"] for c in speech),
        "reliability": reliability_table(confs, right),
        "ece": expected_calibration_error(confs, right),
    }
    if args.live > 0:  # 0: the replay alone
        results["routing"]["live"] = live_routing(speech, local, cloud, model, args, cloud_server)
    print_routing(results["routing"], args)


def print_routing(r: dict, args) -> None:
    d = r["default"]
    print(f"\nrouting on {r['heldout_utterances']} held-out noisy utterances (of {r['utterances']}; "
          f"{'/'.join(f'{s:g}' for s in args.snrs)} dB SNR)")
    print(f"  local-only WER {d['local_wer']:.3f}   cloud-only WER {d['cloud_wer']:.3f}")
    for name, row in (("default policy", d), ("all recordings (fit half in-sample)", r["all_recordings"])):
        print(f"  {name} (min_confidence {row['min_confidence']:.2f}, min_benefit {row['min_benefit']}, "
              f"max_share {args.max_share}, burst {args.burst_s:g} s): escalated {row['escalated']:.1%} of "
              f"utterances ({row['audio_share']:.1%} of audio), routed WER {row['routed_wer']:.3f}, "
              f"gap recovered {row['gap_recovered']:.1%}")
    u = r["default_uncapped"]
    print(f"  default rule without the share cap: escalated {u['escalated']:.1%} (90 % interval over recordings "
          f"{u['escalated_90'][0]:.1%}-{u['escalated_90'][1]:.1%}), gap recovered {u['gap_recovered']:.1%} "
          f"({u['gap_recovered_90'][0]:.1%}-{u['gap_recovered_90'][1]:.1%})")
    print(f"  oracle at 25 % of utterances would recover {r['oracle_gap_recovered_at_25pct']:.1%}")
    print("  by SNR (no share cap): " + "  ".join(
        f"{k} dB: local {v['local_wer']:.3f} cloud {v['cloud_wer']:.3f} routed {v['routed_wer']:.3f} "
        f"esc {v['escalated']:.0%} rec {v['gap_recovered']:.0%}" for k, v in r["by_snr"].items()))
    for name, sweep, key in (("benefit sweep at the default min_confidence", r["benefit_sweep"], "min_benefit"),
                             ("confidence alone (no benefit gate)", r["confidence_sweep"], "min_confidence")):
        print(f"  {name}: {key}  escalated  audio  routed WER  gap recovered")
        for row in sweep:
            print(f"        {row[key]:7.3f}   {row['escalated']:6.1%}  {row['audio_share']:6.1%}   "
                  f"{row['routed_wer']:.3f}      {row['gap_recovered']:6.1%}")
    print(f"  calibration on the held-out utterances: ECE {r['ece']:.3f}")
    live = r.get("live")
    if live is None:
        return
    print(
        f"  live pass ({live['utterances']} utterances through EscalationPolicy): p50 latency local "
        f"{live['local_p50_s']:.2f} s, routed {live['routed_p50_s']:.2f} s; escalated utterances p50 "
        f"{live['escalated_p50_s']:.2f} s; routed text equals the replay for {live['agree']:.0%}"
    )


def live_routing(speech, local, cloud, model, args, cloud_server) -> dict:
    """Route a sample through the real policy and client; latency = local decode + routing."""
    rng = random.Random(0)
    sample = rng.sample(speech, min(args.live, len(speech)))
    policy = EscalationPolicy(
        CloudClient(cloud_server.endpoint, TOKEN, timeout_s=600), max_share=1.0, confidence_model=model
    )
    local_s, routed_s, escalated_s, agree = [], [], [], []
    for clip in sample:
        row = local[clip.id]
        t0 = time.perf_counter()
        segments = list(policy.route(to_segments(row), clip.audio, language="en"))
        routing = time.perf_counter() - t0
        local_s.append(row["elapsed_s"])
        routed_s.append(row["elapsed_s"] + routing)
        if any(s.source == "cloud" for s in segments):
            escalated_s.append(row["elapsed_s"] + routing)
            expected = cloud[clip.id]["text"]
        else:
            expected = local_text(row)
        agree.append(data.normalize("".join(s.text for s in segments)) == data.normalize(expected))
    return {
        "utterances": len(sample),
        "local_p50_s": statistics.median(local_s),
        "routed_p50_s": statistics.median(routed_s),
        "escalated_p50_s": statistics.median(escalated_s) if escalated_s else float("nan"),
        "escalated": len(escalated_s),
        "agree": sum(agree) / len(agree),
    }


def nonspeech_part(clips, local, cloud, model: ConfidenceModel, benefit: BenefitModel | None, args, results):
    nonspeech = [c for c in clips if c.kind == "nonspeech"]
    scores = score_clips(nonspeech, local, cloud, model, benefit)
    rule = Rule(model.default_threshold, benefit.default_threshold if benefit else None)
    escalated, routed, _ = replay(nonspeech, local, cloud, scores, rule)
    silent_local = [not data.normalize(local_text(local[c.id])) for c in nonspeech]
    silent_routed = [not data.normalize(routed[c.id]) for c in nonspeech]
    silent_cloud = [not data.normalize(cloud[c.id]["text"]) for c in nonspeech]
    results["nonspeech"] = {
        "clips": len(nonspeech),
        "no_words_local": float(np.mean(silent_local)),
        "no_words_routed": float(np.mean(silent_routed)),
        "no_words_cloud_only": float(np.mean(silent_cloud)),
        "escalated": len(escalated),
    }
    r = results["nonspeech"]
    print(
        f"\nnon-speech: {r['clips']} clips; no words: local {r['no_words_local']:.1%}, routed "
        f"{r['no_words_routed']:.1%} ({r['escalated']} escalated), cloud-only {r['no_words_cloud_only']:.1%}"
    )


# --- cloud down ----


class _BlackHole:
    """Accepts connections and never answers: the cloud that hangs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1/audio/transcriptions"

    def _accept(self):
        while True:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                return


class _Answers500(threading.Thread):
    def __init__(self):
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["content-length"]))
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        super().__init__(target=self.httpd.serve_forever, daemon=True)
        self.start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/audio/transcriptions"


def down_part(clips, local, args, results):
    speech = [c for c in clips if c.kind == "speech" and local[c.id]["segments"]][: args.down_utterances]
    results["down"] = {}
    print(f"\ncloud down: {len(speech)} utterances, every one escalated, timeout {args.timeout:g} s")
    for name, target in (("refused", None), ("black hole", _BlackHole()), ("http 500", _Answers500())):
        endpoint = target.endpoint if target else f"http://127.0.0.1:{free_port()}/v1/audio/transcriptions"
        policy = EscalationPolicy(
            CloudClient(endpoint, TOKEN, timeout_s=args.timeout), min_confidence=1.0,
            min_benefit=-float("inf"), max_share=1.0,
        )
        costs, kept, reasons = [], 0, []
        for clip in speech:
            segments = to_segments(local[clip.id])
            t0 = time.perf_counter()
            routed = list(policy.route(segments, clip.audio, language="en"))
            costs.append(time.perf_counter() - t0)
            kept += [s.text for s in routed] == [s["text"] for s in local[clip.id]["segments"]]
            reasons.append(routed[0].extra["escalation"]["reason"])
        row = {
            "first_s": costs[0],
            "later_max_s": max(costs[1:]),
            "later_p50_s": statistics.median(costs[1:]),
            "kept_local": kept / len(speech),
            "first_reason": reasons[0],
            "later_reasons": sorted(set(reasons[1:])),
        }
        results["down"][name] = row
        print(
            f"  {name:10}: first failure {row['first_s'] * 1000:7.1f} ms ({row['first_reason']}), later max "
            f"{row['later_max_s'] * 1000:.2f} ms ({', '.join(row['later_reasons'])}); local kept "
            f"{row['kept_local']:.0%}"
        )


# --- load ----


def load_part(clips, cloud: Cloud, args, results):
    import httpx

    pool = [c for c in clips if c.kind == "speech" and c.snr_db is not None and c.duration <= 6.0]
    bodies = [data.wav_bytes(c.audio) for c in pool[:40]]
    stop_at = time.monotonic() + args.load_seconds
    lock = threading.Lock()
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    problems: list[str] = []

    def client(seed: int):
        rng = random.Random(seed)
        with httpx.Client(timeout=300, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                try:
                    r = http.post(
                        cloud.endpoint,
                        files={"file": ("a.wav", rng.choice(bodies), "audio/wav")},
                        data={"model": "whisper-1", "response_format": "json"},
                    )
                    key = str(r.status_code)
                except httpx.HTTPError as e:
                    key, r = type(e).__name__, None
                with lock:
                    statuses[key] = statuses.get(key, 0) + 1
                    if r is not None and r.status_code == 200:
                        latencies.append(time.perf_counter() - t0)
                    elif r is not None and r.status_code == 503 and "retry-after" in r.headers:
                        pass
                    else:
                        problems.append(key if r is None else f"{r.status_code}: {r.text[:80]}")
                if r is not None and r.status_code == 503:
                    time.sleep(
                        min(float(r.headers.get("retry-after", 1)), max(stop_at - time.monotonic(), 0))
                    )

    rss = []
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    t_start = time.monotonic()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        rss.append((time.monotonic() - t_start, cloud.rss_mb()))
        time.sleep(1.0)
    wall = time.monotonic() - t_start
    settled = [m for t, m in rss if t >= 10] or [m for _, m in rss]
    results["load"] = {
        "clients": args.clients,
        "seconds": args.load_seconds,
        "wall_s": wall,
        "statuses": statuses,
        "problems": problems[:10],
        "throughput_rps": statuses.get("200", 0) / wall,
        "latency_p50_s": statistics.median(latencies) if latencies else float("nan"),
        "latency_p95_s": float(np.percentile(latencies, 95)) if latencies else float("nan"),
        "rss_mb_start": rss[0][1],
        "rss_mb_after_10s": settled[0],
        "rss_mb_end": rss[-1][1],
        "rss_mb_max": max(m for _, m in rss),
        "rss_series": rss,
    }
    r = results["load"]
    print(
        f"\nload: {args.clients} clients for {args.load_seconds:g} s (all done after {wall:.0f} s): "
        f"statuses {statuses}, other problems {len(problems)}; {r['throughput_rps']:.2f} req/s, p50 "
        f"{r['latency_p50_s']:.2f} s, p95 {r['latency_p95_s']:.2f} s; server RSS {r['rss_mb_start']:.0f} -> "
        f"{r['rss_mb_after_10s']:.0f} (10 s) -> {r['rss_mb_end']:.0f} MB (max {r['rss_mb_max']:.0f})"
    )


# --- report ----


def plots(results, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "routing" not in results:
        return
    r = results["routing"]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4.2))
    rows = r["reliability"]
    centers = [(b["lo"] + b["hi"]) / 2 for b in rows]
    ax[0].bar(centers, [b["accuracy"] for b in rows], width=0.09, alpha=0.7, label="observed share right")
    ax[0].plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax[0].plot([b["confidence"] for b in rows], [b["accuracy"] for b in rows], "o-", color="C3", label="bins")
    for c, b in zip(centers, rows, strict=True):
        ax[0].annotate(str(b["count"]), (c, 0.02), ha="center", fontsize=7)
    ax[0].set(
        xlabel="local confidence",
        ylabel="share of utterances right",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"Reliability (ECE {r['ece']:.3f})",
    )
    ax[0].legend(loc="upper left", fontsize=8)
    for name, sweep in (("by min_benefit", r["benefit_sweep"]), ("by min_confidence alone", r["confidence_sweep"])):
        if sweep:
            ax[1].plot([s["escalated"] for s in sweep], [s["routed_wer"] for s in sweep], "o-", label=name)
    ax[1].axhline(r["default"]["local_wer"], color="C1", ls="--", label=f"local only ({results['local_model']})")
    ax[1].axhline(r["default"]["cloud_wer"], color="C2", ls="--", label=f"cloud only ({results['cloud_model']})")
    ax[1].axvline(0.25, color="gray", ls=":")
    ax[1].plot([r["default"]["escalated"]], [r["default"]["routed_wer"]], "r*", ms=12, label="default policy")
    ax[1].set(xlabel="share of utterances escalated", ylabel="WER", xlim=(0, 1),
              title="Routing, held-out speech-dev + noise (0/5/10/20 dB)")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "escalation.png", dpi=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--local-model", default=None, help="device model dir or built-in name (default: tiny.en)"
    )
    ap.add_argument("--cloud-model", default="base", help="server model dir or built-in name (default: base)")
    ap.add_argument("--cloud-beam", type=int, default=5)
    ap.add_argument("--cloud-threads", type=int, default=2)
    ap.add_argument("--snrs", type=float, nargs="+", default=[0, 5, 10, 20])
    ap.add_argument("--limit", type=int, default=None,
                    help="only N speech-dev utterances (a fixed random sample)")
    ap.add_argument("--nonspeech", type=int, default=60)
    ap.add_argument("--noise-draw", type=int, default=0,
                    help="another noise draw for the noisy clips (0: the benchmark's; see escalation_data)")
    ap.add_argument("--max-share", type=float, default=EscalationSection.max_share)
    ap.add_argument("--burst-s", type=float, default=EscalationSection.burst_s)
    ap.add_argument("--live", type=int, default=24, help="utterances routed live through the policy (0: none)")
    ap.add_argument("--timeout", type=float, default=3.0, help="policy deadline for the cloud-down part")
    ap.add_argument("--down-utterances", type=int, default=20)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--load-seconds", type=float, default=60.0)
    ap.add_argument("--parts", default="routing,nonspeech,down,load")
    ap.add_argument("--out", type=Path, default=data.REPO / "out" / "escalation")
    ap.add_argument("--reuse", type=Path, default=None,
                    help="an earlier run's OUT: reuse its transcripts that were settled at temperature 0 "
                         "without doubt (decided_at_zero); for a decoder change that touches only the rest")
    ap.add_argument("--reuse-check", type=int, default=10,
                    help="recompute this many reusable transcripts (each side) and report agreement")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    args.out.mkdir(parents=True, exist_ok=True)

    # --limit samples the speech; the non-speech set is always whole (it is cheap, and a rate near 100 %
    # needs every clip).
    speech = [c for c in data.benchmark_clips(args.snrs, args.limit, 0, args.noise_draw) if c.kind == "speech"]
    clips = speech + data.nonspeech_clips(args.nonspeech)
    ids = {c.id for c in clips}
    checks: dict[str, dict] = {}
    if args.reuse:
        checks["local"] = seed_cache(args.reuse / "local.jsonl", args.out / "local.jsonl", ids, args.reuse_check)
    local = data.run_local(clips, args.local_model, args.out / "local.jsonl")
    model = ConfidenceModel.load()
    benefit = BenefitModel.load()
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "local_model": next(iter(local.values()))["model"],
        "cloud_model": args.cloud_model,
        "cloud_beam": args.cloud_beam,
        "calibration": (model.meta or {}).get("fitted"),
        "benefit_model": benefit is not None,
    }
    cloud_server = None
    try:
        if parts & {"routing", "nonspeech", "load"}:
            cloud_server = Cloud(args.cloud_model, args.cloud_beam, args.cloud_threads)
            results["cloud_model"] = cloud_server.health["model"]
        if parts & {"routing", "nonspeech"}:
            cache = args.out / f"cloud-{cloud_server.health['model']}-beam{args.cloud_beam}.jsonl"
            if args.reuse:
                checks["cloud"] = seed_cache(args.reuse / cache.name, cache, ids, args.reuse_check)
            cloud = run_cloud(clips, cloud_server, cache)
            if args.reuse:
                results["reuse"] = {
                    "from": str(args.reuse),
                    **{side: reuse_agreement(checks[side], local if side == "local" else cloud)
                       for side in ("local", "cloud") if checks.get(side)},
                }
                print(f"reuse check (recomputed reusable transcripts, same text): {results['reuse']}")
            if "routing" in parts:
                routing_part(clips, local, cloud, model, benefit, args, results, cloud_server)
            if "nonspeech" in parts:
                nonspeech_part(clips, local, cloud, model, benefit, args, results)
        if "down" in parts:
            down_part(clips, local, args, results)
        if "load" in parts:
            load_part(clips, cloud_server, args, results)
    finally:
        if cloud_server:
            cloud_server.stop()
    path = args.out / "results.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**previous, **results}, indent=2, default=str) + "\n")  # parts rerun alone
    results = {**previous, **results}
    plots(results, args.out)
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'escalation.png'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CloudError as e:
        sys.exit(f"bench_escalation: {e}")

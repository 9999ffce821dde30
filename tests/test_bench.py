"""`edge-asr bench` end to end on real speech-dev audio, plus the data loaders and error paths.

One CLI run (module fixture) of our default model and faster-whisper int8 covers: report files, WER
against an independent jiwer computation, bad manifest rows reported by line, an unknown peer, a peer
whose module cannot import, the OpenAI-compatible endpoint slot, and writing metrics into model.yaml.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jiwer
import pytest
from whisper_normalizer.english import EnglishTextNormalizer

from edge_asr.bench.data import load_dataset
from edge_asr.bench.nonspeech import generate_nonspeech
from edge_asr.bench.report import _pareto
from edge_asr.bench.systems import parse_systems
from edge_asr.model_dir import CARD, ModelCard
from edge_asr.models import resolve_model

REPO = Path(__file__).resolve().parents[1]
SPEECH_DEV = REPO / ".." / "shared" / "data" / "speech-dev"
UTTERANCES = ["ls-test-other_1688-142285-0002", "ls-test-other_1688-142285-0003", "ljspeech_LJ001-0001"]
TOKEN = "bench-test-token"
MEASURED = ("edge-asr:tiny-default", "faster-whisper-int8")


def _speech_dev_rows() -> dict[str, list[str]]:
    lines = (SPEECH_DEV / "manifest.tsv").read_text(encoding="utf-8").splitlines()
    return {line.split("\t")[0]: line.split("\t") for line in lines[1:]}


def _link_audio(folder: Path, ids: list[str]) -> None:
    """Symlink speech-dev wavs into `folder` (the data is never copied)."""
    folder.mkdir(parents=True, exist_ok=True)
    for clip_id in ids:
        (folder / f"{clip_id}.wav").symlink_to((SPEECH_DEV / f"{clip_id}.wav").resolve())


def _write_manifest(folder: Path) -> Path:
    """3 good rows, then a row whose audio is missing (line 5) and a row with too few columns (line 6)."""
    rows = _speech_dev_rows()
    _link_audio(folder / "audio", UTTERANCES)
    lines = ["id\twav\tduration_s\treference_text"]
    lines += [f"{i}\taudio/{i}.wav\t{rows[i][2]}\t{rows[i][3]}" for i in UTTERANCES]
    lines += ["missing-1\taudio/not-there.wav\t1.0\thello world", "broken-row\taudio/x.wav"]
    path = folder / "manifest.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class _EndpointHandler(BaseHTTPRequestHandler):
    """Stand-in for an OpenAI-compatible server: checks the request shape, answers fixed text."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        authorized = self.headers.get("Authorization") == f"Bearer {TOKEN}"
        ok = (self.path == "/v1/audio/transcriptions" and authorized and b'name="file"' in body
              and b"RIFF" in body and b'name="model"' in body)
        payload = json.dumps({"text": "hello there"} if ok else {"error": "bad request"}).encode()
        self.send_response(200 if ok else 400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    manifest = _write_manifest(tmp / "data")
    nonspeech = [c.path for c in generate_nonspeech(tmp / "all-nonspeech", seconds=2.0)]
    (tmp / "nonspeech").mkdir()
    for path in nonspeech[::6]:  # silence and tone: enough to exercise the set
        (tmp / "nonspeech" / path.name).symlink_to(path)
    # Our default model (built on first use), seen through a folder of our own so its card can be written.
    default, model = resolve_model(None), tmp / "models" / "tiny-default"
    model.mkdir(parents=True)
    for path in default.iterdir():
        if path.name == CARD:
            (model / CARD).write_bytes(path.read_bytes())
        else:
            (model / path.name).symlink_to(path)
    # A package that cannot import, shadowing the real pocketsphinx for the worker processes.
    shadow = tmp / "shadow" / "pocketsphinx"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('pocketsphinx is broken on purpose')\n")

    server = ThreadingHTTPServer(("127.0.0.1", 0), _EndpointHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"openai:http://127.0.0.1:{server.server_address[1]}/v1/audio/transcriptions"
    out = tmp / "report"
    env = dict(os.environ, PYTHONPATH=str(tmp / "shadow"), BENCH_TEST_KEY=TOKEN)
    proc = subprocess.run(
        [sys.executable, "-m", "edge_asr.cli", "bench", "--data", str(manifest), "--models", str(model),
         "--peers", f"faster-whisper-int8,pocketsphinx,no-such-peer,{endpoint}", "--nonspeech",
         str(tmp / "nonspeech"), "--out", str(out), "--long-min-s", "8", "--repeat", "2",
         "--openai-key-env", "BENCH_TEST_KEY", "--update-cards", "--no-progress"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    server.shutdown()
    return proc, out, manifest, model


def test_bench_writes_report_results_and_plots(bench_run):
    proc, out, _, _ = bench_run
    assert proc.returncode == 0, proc.stderr
    for name in ("report.md", "results.json", "wer_vs_size.png", "wer_vs_rtf.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "wer_vs_size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    assert results["baseline"] == MEASURED[0]
    for name in MEASURED:
        system = next(s for s in results["systems"] if s["name"] == name)
        metrics = system["metrics"]
        assert system["status"] == "ok" and system["threads"] == 2
        for key in ("rtf", "cpu_rtf", "latency_p50_ms", "latency_p95_ms", "cold_start_s", "peak_rss_mb",
                    "size_mb"):
            assert metrics[key] > 0, (name, key)
        assert metrics["hallucination_rate"] is not None and len(system["nonspeech"]) == 2
        assert len(system["per_repeat"]) == 2 and all(r["rtf"] for r in system["per_repeat"])
        assert system["vs_baseline"]["rtf"] > 0 and f"| {name} | 2 |" in report
    assert results["systems"][0]["vs_baseline"]["rtf"] == pytest.approx(1.0)
    assert results["meta"]["machine"]["cores"] and results["meta"]["machine"]["cpu"]


@pytest.mark.parametrize("name", MEASURED)
def test_bench_wer_equals_independent_jiwer(bench_run, name):
    _, out, _, _ = bench_run
    results = json.loads((out / "results.json").read_text())
    system = next(s for s in results["systems"] if s["name"] == name)
    utterances = system["utterances"]
    assert [u["id"] for u in utterances] == UTTERANCES
    normalize = EnglishTextNormalizer()
    refs = [normalize(u["reference"]) for u in utterances]
    hyps = [normalize(u["hypothesis"]) for u in utterances]
    expected = jiwer.wer(refs, hyps)
    assert system["metrics"]["wer"] == pytest.approx(expected, abs=1e-12)
    assert system["metrics"]["cer"] == pytest.approx(jiwer.cer(refs, hyps), abs=1e-12)
    assert f"| {100 * expected:.1f} |" in (out / "report.md").read_text()
    for u, ref, hyp in zip(utterances, refs, hyps, strict=True):
        counts = jiwer.process_words(ref, hyp)
        assert (u["substitutions"], u["deletions"], u["insertions"]) == (
            counts.substitutions, counts.deletions, counts.insertions)
    assert expected < 0.3  # the transcripts are real: tiny.en gets most words of these right


def test_bench_reports_bad_rows_by_line_and_goes_on(bench_run):
    proc, out, manifest, _ = bench_run
    results = json.loads((out / "results.json").read_text())
    problems = "\n".join(results["problems"])
    assert f"{manifest}:5: audio file not found" in problems
    assert f"{manifest}:6: malformed row" in problems
    assert f"{manifest}:5:" in proc.stderr and f"{manifest}:6:" in proc.stderr
    assert results["data"]["speech_clips"] == 3
    assert f"{manifest}:5" in (out / "report.md").read_text()


def test_bench_reports_missing_peers_without_crashing(bench_run):
    proc, out, _, _ = bench_run
    results = json.loads((out / "results.json").read_text())
    by_name = {s["name"]: s for s in results["systems"]}
    assert by_name["pocketsphinx"]["status"] == "failed"
    assert "cannot import" in by_name["pocketsphinx"]["error"]
    assert "broken on purpose" in by_name["pocketsphinx"]["error"]
    assert "no-such-peer" not in by_name
    assert any("unknown peer 'no-such-peer'" in p for p in results["problems"])
    assert "Traceback" not in proc.stdout
    report = (out / "report.md").read_text()
    assert "| pocketsphinx | – | failed |" in report and "unknown peer 'no-such-peer'" in report


def test_bench_writes_metrics_into_the_model_card(bench_run):
    _, out, _, model = bench_run
    results = json.loads((out / "results.json").read_text())
    ours = next(s for s in results["systems"] if s["name"] == MEASURED[0])
    written = ModelCard.load(model).metrics["bench"]["data"]  # keyed by data set (the manifest's folder)
    assert written["wer"] == pytest.approx(ours["metrics"]["wer"], abs=1e-4)
    assert written["utterances"] == 3 and written["threads"] == 2 and "cores" in written["cpu"]


def test_parse_systems():
    specs, problems = parse_systems(None, "faster-whisper-fp32, openai:http://h/v1,whisper-huge")
    assert [(s.name, s.kind, s.target) for s in specs] == [
        ("edge-asr-default", "edge-asr", None), ("faster-whisper-fp32", "faster-whisper", "float32"),
        ("openai:http://h/v1", "openai", "http://h/v1")]
    assert problems == ["unknown peer 'whisper-huge' (known: faster-whisper-int8, faster-whisper-fp32, "
                        "pocketsphinx, openai:URL); skipped"]
    specs, _ = parse_systems(["tiny.en", "a/m", "b/m"], "")
    assert [s.name for s in specs] == ["edge-asr:tiny.en", "edge-asr:m", "edge-asr:m#2"]


def test_bench_openai_endpoint_slot(bench_run):
    _, out, _, _ = bench_run
    results = json.loads((out / "results.json").read_text())
    endpoint = next(s for s in results["systems"] if s["kind"] == "openai")
    assert endpoint["status"] == "ok", endpoint.get("error")
    assert {u["hypothesis"] for u in endpoint["utterances"]} == {"hello there"}
    assert endpoint["metrics"]["size_mb"] is None and endpoint["threads"] is None


def test_jsonl_and_librispeech_layouts(tmp_path):
    rows = _speech_dev_rows()
    _link_audio(tmp_path / "j", UTTERANCES[:2])
    jsonl = tmp_path / "j" / "data.jsonl"
    jsonl.write_text("\n".join([
        json.dumps({"id": "a", "audio_filepath": f"{UTTERANCES[0]}.wav", "text": rows[UTTERANCES[0]][3]}),
        "{not json",
        json.dumps({"audio": f"{UTTERANCES[1]}.wav", "text": ""}),  # empty reference: non-speech
        json.dumps({"id": "c", "text": "no audio key"}),
    ]) + "\n")
    data = load_dataset(jsonl)
    assert [c.id for c in data.speech] == ["a"] and [c.id for c in data.nonspeech] == [UTTERANCES[1]]
    assert [p.split(": ")[0] for p in data.problems] == [f"{jsonl}:2", f"{jsonl}:4"]

    chapter = tmp_path / "ls" / "1688" / "142285"
    _link_audio(chapter, UTTERANCES[:2])
    for clip_id in UTTERANCES[:2]:
        (chapter / f"{clip_id}.wav").rename(chapter / f"1688-142285-{clip_id[-4:]}.wav")
    (chapter / "1688-142285.trans.txt").write_text(
        f"1688-142285-0002 {rows[UTTERANCES[0]][3].upper()}\n1688-142285-0003 I REALLY LIKED\n"
        "1688-142285-0009 NO AUDIO FOR THIS ONE\n")
    data = load_dataset(tmp_path / "ls")
    assert [c.id for c in data.speech] == ["1688-142285-0002", "1688-142285-0003"]
    assert len(data.problems) == 1 and ".trans.txt:3: audio file not found" in data.problems[0]
    assert load_dataset(tmp_path / "ls").limit(1).speech[0].id == "1688-142285-0002"


def test_bench_user_errors_are_one_line(tmp_path):
    def bench(*args):
        return subprocess.run([sys.executable, "-m", "edge_asr.cli", "bench", *args, "--out", str(tmp_path)],
                              capture_output=True, text=True, cwd=REPO, timeout=60)

    missing = bench("--data", str(tmp_path / "nope.tsv"))
    assert missing.returncode == 2 and missing.stderr.startswith("edge-asr: error: ")
    assert "no such data file" in missing.stderr and "Traceback" not in missing.stderr
    baseline = bench("--data", str(SPEECH_DEV), "--models", "--peers", "pocketsphinx", "--baseline", "x")
    assert baseline.returncode == 2 and "--baseline 'x' is not one of" in baseline.stderr


def test_pareto_frontier():
    assert _pareto([(3, 1), (1, 5), (2, 2), (4, 3)]) == [(1, 5), (2, 2), (3, 1)]

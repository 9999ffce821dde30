"""`edge-asr wakeword eval` on real clips: recall, false accepts per hour, latency, threshold sweep."""

import json

from wakeword_helpers import clips, edge_asr


def test_eval_reports_recall_false_accepts_and_latency(tmp_path):
    positives, negatives = tmp_path / "alexa", tmp_path / "other"
    positives.mkdir()
    negatives.mkdir()
    for clip in clips("alexa")[:6]:
        (positives / clip.name).symlink_to(clip.resolve())
    for clip in clips("negative")[:6] + clips("jarvis")[:4]:
        (negatives / clip.name).symlink_to(clip.resolve())
    done = edge_asr("wakeword", "eval", "--positives", positives, "--negatives", negatives,
                    "--wakeword", "alexa", "--thresholds", "0.5,0.99999", "--format", "json")
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    at_half, strict = report["results"]
    assert report["wakeword"] == "alexa"
    assert at_half["positives"] == 6 and at_half["recall"] == 1.0 and at_half["false_accepts"] == 0
    assert 0 < at_half["negative_hours"] < 0.05 and at_half["false_accepts_per_hour"] == 0
    # openWakeWord fires during the word's last syllable: around the end of speech, often just before it.
    assert -0.5 < at_half["latency_median_s"] < 0.5
    assert strict["recall"] < at_half["recall"]

    text = edge_asr("wakeword", "eval", "--positives", clips("alexa")[0], "--negatives", clips("negative")[0])
    assert text.returncode == 0 and "FA/hour" in text.stdout.decode() and "100.0%" in text.stdout.decode()


def test_eval_rejects_bad_input(tmp_path):
    done = edge_asr("wakeword", "eval", "--positives", tmp_path / "missing", "--negatives", tmp_path)
    assert done.returncode == 2 and "no such file or directory" in done.stderr.decode()
    done = edge_asr("wakeword", "eval", "--positives", tmp_path, "--negatives", tmp_path, "--thresholds", "x")
    assert done.returncode == 2 and "--thresholds" in done.stderr.decode()

"""Routing rules (windows, share cap, benefit gate, config), confidence and audio features and the streamed
clip reader."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
from escalation_helpers import TOKEN, read_speech, start_standin

from edge_asr.audio import load_audio
from edge_asr.cloud import CloudClient
from edge_asr.confidence import (
    AUDIO_FEATURES,
    DOUBTFUL_WORDS,
    FEATURES,
    LOCAL_CONFIDENCE,
    BenefitModel,
    ConfidenceModel,
    audio_features,
    benefit_inputs,
    expected_calibration_error,
    reliability_table,
    utterance_features,
)
from edge_asr.config import Config, from_dict
from edge_asr.errors import ConfigError
from edge_asr.escalation import (
    EscalationPolicy,
    EscalationSection,
    StreamedAudio,
    _windows,
    takes_cloud,
    wants_cloud,
    within_share,
)
from edge_asr.types import Segment, Word


def seg(seek, start, end, text=" hello there", logprob=-0.2, words=None):
    return Segment(id=0, seek=seek, start=start, end=end, text=text, tokens=[1, 2, 3], temperature=0.0,
                   avg_logprob=logprob, compression_ratio=1.2, no_speech_prob=0.05, words=words)


def test_windows_group_by_seek_and_tile_the_audio():
    segments = [seg(0, 0.3, 6.5), seg(0, 6.8, 13.6), seg(1360, 13.7, 15.0), seg(4360, 45.0, 47.0)]
    spans = [(start, end, len(group)) for start, end, group in _windows(segments, 48.0)]
    # The window at seek 1360 is followed by one skipped as silence: its span is capped at 30 s.
    assert spans == pytest.approx([(0.0, 13.6, 2), (13.6, 43.6, 1), (43.6, 48.0, 1)])


def test_share_cap_limits_the_audio_sent(tmp_path):
    server = start_standin(tmp_path)
    try:
        audio = np.zeros(16000 * 50, np.float32)
        decisions = []
        policy = EscalationPolicy(CloudClient(server.endpoint, TOKEN), min_confidence=0.99, min_benefit=-math.inf,
                                  max_share=0.25, burst_s=0.0, on_decision=decisions.append)
        for k in range(10):  # ten unsure 5 s utterances, one call each, as dictation would make them
            list(policy.route([seg(0, 0.0, 5.0, logprob=-3.0)], audio[k * 80000: (k + 1) * 80000]))
        statuses = [d.status for d in decisions]
        assert statuses.count("escalated") == 2 and statuses.count("skipped") == 8
        assert policy.stats.sent_s <= 0.25 * policy.stats.seen_s
        assert {d.reason for d in decisions if d.status == "skipped"} == {"share_cap"}
    finally:
        server.stop()


def test_share_budget_runs_on_what_was_heard():
    # 0.25 of the audio heard so far + a 30 s burst: a first long window fits, ...
    assert within_share(0.0, 20.0, 20.0, 0.25, 30.0)
    # ... the next one, once the budget is spent, does not, and is skipped for good ...
    assert not within_share(20.0, 25.0, 45.0, 0.25, 30.0)  # 20 + 25 > 11.25 + 30
    # ... while unspent budget carries on: after 200 s heard, the same 25 s fit (20 + 25 <= 50 + 30).
    assert within_share(20.0, 25.0, 200.0, 0.25, 30.0)
    assert within_share(0.0, 5.0, 5.0, 1.0, 0.0) and not within_share(0.0, 5.0, 5.0, 0.0, 0.0)


def test_escalation_config_is_validated():
    config = from_dict(Config, {"escalation": {"endpoint": "http://asr.local:8000/v1/audio/transcriptions",
                                               "min_confidence": 0.6, "timeout_s": 3}}, "edge.yaml")
    assert config.escalation.timeout_s == 3.0
    assert EscalationPolicy.from_config(EscalationSection()) is None  # no endpoint: escalation off
    with pytest.raises(ConfigError, match="edge.yaml: unknown key 'escalation.endpont'"):
        from_dict(Config, {"escalation": {"endpont": "http://x"}}, "edge.yaml")
    for bad, key in [({"endpoint": "asr.local:8000"}, "endpoint"), ({"max_share": 1.5}, "max_share"),
                     ({"min_confidence": -0.1}, "min_confidence"), ({"timeout_s": 0}, "timeout_s")]:
        with pytest.raises(ConfigError, match=f"edge.yaml: 'escalation.{key}'"):
            EscalationPolicy.from_config(from_dict(EscalationSection, bad, "edge.yaml"), "edge.yaml")


def test_confidence_features_and_shipped_calibration():
    model = ConfidenceModel.load()
    assert model.features == FEATURES and 0 < model.default_threshold < 1
    words = [Word(0.0, 0.5, " hello", 0.9), Word(0.5, 1.0, " there", 0.4)]
    good = utterance_features([seg(0, 0.0, 1.0, words=words)], 1.0)
    assert good["log_min_word_prob"] == pytest.approx(np.log(0.4))
    assert good[DOUBTFUL_WORDS] == pytest.approx((0.1 + 0.6) / 1.0)  # words expected wrong, per second
    assert good["repetition"] == 0.0
    loop = utterance_features([seg(0, 0.0, 4.0, text=" thank you thank you thank you thank you")], 4.0)
    assert loop["repetition"] > 0.5
    sure = model.score([seg(0, 0.0, 3.0, logprob=-0.1, words=[Word(0, 3, " hello", 0.95)])], 3.0)
    unsure = model.score([seg(0, 0.0, 3.0, logprob=-1.5, words=[Word(0, 3, " hello", 0.05)])], 3.0)
    assert 0 <= unsure < sure <= 1
    # verbose_json dicts score like Segments
    as_dict = {"text": " hello there", "tokens": [1, 2, 3], "avg_logprob": -0.2, "no_speech_prob": 0.05,
               "compression_ratio": 1.2}
    assert model.score([as_dict], 1.0) == pytest.approx(model.score([seg(0, 0.0, 1.0)], 1.0))


def test_reliability_table_and_ece():
    conf = [0.05, 0.15, 0.95, 0.95]
    right = [False, False, True, False]
    rows = reliability_table(conf, right)
    assert [r["count"] for r in rows] == [1, 1, 2]
    assert rows[-1]["accuracy"] == 0.5
    assert expected_calibration_error(conf, right) == pytest.approx((0.05 + 0.15 + 2 * 0.45) / 4)


def test_streamed_clips_match_the_whole_file(tmp_path):
    audio = np.concatenate([read_speech("ls-test-other_1688-142285-0000")] * 4)  # 60 s
    path = tmp_path / "long.flac"
    sf.write(path, audio, 16000)
    whole = load_audio(path)
    clips = StreamedAudio(path, len(whole) / 16000)
    for start, end in [(0.0, 13.6), (13.6, 43.6), (50.0, 60.0)]:
        assert np.array_equal(clips.clip(start, end), whole[int(start * 16000): int(end * 16000)])
    assert sum(len(b) for b in clips._kept) <= 20 * 16000  # only the blocks the last clip touched


def test_routing_rules():
    assert wants_cloud(" turn the lights off", 0.01, 0.05)
    assert not wants_cloud(" turn the lights off", 0.5, 0.05)
    assert not wants_cloud(" .", 0.0, 0.05)  # no words: nothing to correct, and nobody spoke
    assert takes_cloud(0.01, " turn the lights off", 0.3)
    assert not takes_cloud(0.3, " and I know and I know and I know", 0.0)  # a less sure cloud loses
    assert takes_cloud(0.3, "", 0.0)  # the cloud heard nobody: the device's words were a hallucination
    # With a benefit gate, an unsure window goes only if the cloud is expected to remove enough errors.
    assert wants_cloud(" turn the lights off", 0.01, 0.05, benefit=0.4, min_benefit=0.2)
    assert not wants_cloud(" turn the lights off", 0.01, 0.05, benefit=0.1, min_benefit=0.2)
    assert not wants_cloud(" turn the lights off", 0.5, 0.05, benefit=9.0, min_benefit=0.2)  # sure: stays


def test_a_repetition_loop_has_no_confidence():
    loop = seg(0, 0.0, 5.0, text=" and cry to the unit" * 12, logprob=-0.05)
    loop.compression_ratio = 10.4
    assert ConfidenceModel.load().score([loop], 5.0) == 0.0


def noisy(speech: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(speech)).astype(np.float32)
    return speech + noise * np.sqrt(speech.var() / 10 ** (snr_db / 10))


def test_audio_quality_estimate_falls_with_the_snr():
    speech = read_speech("ls-test-other_1688-142285-0000")
    estimates = [audio_features(noisy(speech, snr)) for snr in (30, 10, 0)]
    snrs = [e["snr_db"] for e in estimates]
    assert snrs[0] > snrs[1] + 5 > snrs[2] + 10  # about 10 dB per 10 dB of real SNR on this recording
    assert estimates[0]["speech_fraction"] > estimates[2]["speech_fraction"]
    assert audio_features(speech)["snr_db"] > snrs[0]
    assert audio_features(np.zeros(100, np.float32)) == {"snr_db": 0.0, "speech_fraction": 0.0}
    assert set(audio_features(speech)) == set(AUDIO_FEATURES)


def test_shipped_benefit_model_prefers_doubtful_transcripts_of_usable_audio():
    benefit = BenefitModel.load()
    allowed = {*FEATURES, DOUBTFUL_WORDS, *AUDIO_FEATURES, LOCAL_CONFIDENCE}
    assert benefit is not None and set(benefit.features) <= allowed and DOUBTFUL_WORDS in benefit.features
    speech = noisy(read_speech("ls-test-other_1688-142285-0000"), 10)
    duration = len(speech) / 16000
    text = " he hoped there would be stew for dinner"

    def window(probability: float) -> list[Segment]:
        words = [Word(i * 0.4, i * 0.4 + 0.4, f" {w}", probability) for i, w in enumerate(text.split())]
        return [seg(0, 0.0, duration, text=text, words=words)]

    unsure = benefit.expected_gain(benefit_inputs(window(0.5), duration, 0.05, speech))
    sure = benefit.expected_gain(benefit_inputs(window(0.5), duration, 0.95, speech))
    assert unsure > sure
    # The same doubt about the whole window, but more of its words in doubt: more for the cloud to fix.
    doubtful = benefit.expected_gain(benefit_inputs(window(0.2), duration, 0.05, speech))
    assert doubtful > unsure
    with pytest.raises(ValueError, match="unknown features"):
        BenefitModel.from_dict({**benefit.to_dict(), "features": ["snr_db", "mood"]})


def test_benefit_gate_sends_only_the_window_worth_sending(cloud):
    """Two doubtful windows over the same audio, a sentence and two words: a min_benefit between their expected
    gains sends one to the real server and keeps the other local, marked low_benefit."""
    speech = noisy(read_speech("ls-test-other_1688-142285-0000"), 10)
    duration = len(speech) / 16000
    texts = [" he hoped there would be stew for dinner, turnips and carrots", " he hoped"]
    confidence, benefit = ConfidenceModel.load(), BenefitModel.load()
    windows = [[seg(0, 0.0, duration, logprob=-1.2, text=text)] for text in texts]
    confidences = [confidence.score(w, duration) for w in windows]
    gains = [benefit.expected_gain(benefit_inputs(w, duration, c, speech)) for w, c in zip(windows, confidences)]
    assert max(confidences) < 0.99 and gains[0] != gains[1]
    decisions = []
    policy = EscalationPolicy(CloudClient(cloud.endpoint, TOKEN, timeout_s=60), min_confidence=0.99,
                              min_benefit=sum(gains) / 2, max_share=1.0, on_decision=decisions.append)
    for text in texts:
        list(policy.route([seg(0, 0.0, duration, logprob=-1.2, text=text)], speech, language="en"))
    assert [d.benefit for d in decisions] == pytest.approx(gains)
    best = int(np.argmax(gains))
    assert decisions[best].status in ("escalated", "rejected")  # it went up; arbitration may keep the local text
    assert (decisions[1 - best].status, decisions[1 - best].reason) == ("accepted", "low_benefit")
    assert policy.stats.sent_s == pytest.approx(duration)


def test_a_benefit_model_that_reads_the_audio_gets_the_window_audio(tmp_path):
    """A refit may use the SNR estimate (fit_confidence.py --benefit-features ... snr_db): the policy then measures
    the window's own audio, here the second of two windows in a file read block by block."""
    speech = read_speech("ls-test-other_1688-142285-0000")
    quiet, loud = noisy(speech, 30), noisy(speech, 0, seed=1)
    path = tmp_path / "two.flac"
    sf.write(path, np.concatenate([quiet, loud]), 16000)
    half = len(speech) / 16000
    model = BenefitModel(features=("snr_db",), mean=(20.0,), scale=(10.0,), weights=(-1.0,), bias=0.0)
    assert model.needs_audio
    decisions = []
    dead = CloudClient("http://127.0.0.1:9/v1/audio/transcriptions", TOKEN)  # nothing may be sent
    policy = EscalationPolicy(dead, min_confidence=1.0, min_benefit=math.inf, benefit_model=model,
                              on_decision=decisions.append)
    windows = [seg(0, 0.0, half - 0.5), seg(int(half * 100), half, 2 * half - 0.5)]
    list(policy.route(windows, StreamedAudio(path, 2 * half)))
    stored = load_audio(path)
    clips = (stored[: len(speech)], stored[len(speech):])
    for decision, window, clip in zip(decisions, windows, clips, strict=True):
        values = benefit_inputs([window], decision.end - decision.start, decision.local_confidence, clip)
        assert decision.benefit == pytest.approx(model.expected_gain(values), rel=1e-3)
        assert (decision.status, decision.reason) == ("accepted", "low_benefit")
    assert decisions[1].benefit > decisions[0].benefit  # the noisier window's rate is higher under this model

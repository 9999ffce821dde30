"""The wake-word detector on real crowd-sourced clips, against openWakeWord's own Model."""

import numpy as np
import pytest
import soundfile as sf
from wakeword_helpers import clips

from edge_asr.errors import ModelError
from wakeword.detector import RingBuffer, Trigger, WakeWordDetector, WakeWordSpec
from wakeword.models import wakeword_model_path

FRAME = 1280


def load_int16(path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="int16")
    assert rate == 16000
    return audio


def padded(audio: np.ndarray, before_s: float = 2.0, after_s: float = 1.0) -> np.ndarray:
    out = np.concatenate((np.zeros(int(before_s * 16000), audio.dtype), audio,
                          np.zeros(int(after_s * 16000), audio.dtype)))
    return out[: len(out) // FRAME * FRAME]


def frames(audio: np.ndarray):
    if audio.dtype == np.int16:
        audio = audio.astype(np.float32) / 32768
    return [audio[i:i + FRAME] for i in range(0, len(audio), FRAME)]


def test_scores_match_openwakeword_model():
    import openwakeword
    from openwakeword.utils import AudioFeatures

    reference = openwakeword.Model(wakeword_models=["alexa"], inference_framework="onnx")
    reference.preprocessor = AudioFeatures(inference_framework="onnx")  # fresh streaming state
    ours = WakeWordDetector([WakeWordSpec("alexa")], vad_gate=None)  # every frame scored, like openWakeWord
    audio = padded(load_int16(clips("alexa")[0]))
    theirs = np.array([reference.predict(audio[i:i + FRAME])["alexa"] for i in range(0, len(audio), FRAME)])
    mine = np.array([ours.scores(f)["alexa"] for f in frames(audio)])
    assert theirs.max() > 0.9
    # The first ~1.3 s differ only by the synthetic start-up buffers both fill in.
    np.testing.assert_allclose(mine[20:], theirs[20:], atol=1e-3)


def test_vad_gate_keeps_the_scores_of_speech_and_skips_silence():
    gated = WakeWordDetector([WakeWordSpec("alexa")])
    ungated = WakeWordDetector([WakeWordSpec("alexa")], vad_gate=None)
    for clip in clips("alexa")[:4]:
        audio = padded(load_int16(clip), before_s=3.0, after_s=2.5)
        gated.reset()
        ungated.reset()
        a = np.array([gated.scores(f)["alexa"] for f in frames(audio)])
        b = np.array([ungated.scores(f)["alexa"] for f in frames(audio)])
        speech = a > 0
        assert a.max() == pytest.approx(b.max(), abs=1e-6) and a.max() > 0.5
        np.testing.assert_allclose(a[speech], b[speech], atol=1e-6)  # scored frames: the same scores
        assert not a[10:20].any() and not a[-5:].any()  # quiet lead-in and tail: not scored at all


def test_detects_alexa_but_not_other_keywords():
    detector = WakeWordDetector([WakeWordSpec("alexa", threshold=0.5)])
    for clip in clips("alexa")[:3]:
        detector.reset()
        hits = [d for f in frames(padded(load_int16(clip))) for d in detector.process(f)]
        assert len(hits) == 1 and hits[0].wakeword == "alexa" and hits[0].score >= 0.5
        assert 2.0 < hits[0].t < 2.0 + len(load_int16(clip)) / 16000 + 1.0
    for clip in clips("negative")[:5]:
        detector.reset()
        assert not [d for f in frames(padded(load_int16(clip))) for d in detector.process(f)]


def test_patience_and_refractory_period():
    one = padded(load_int16(clips("alexa")[0]), before_s=1.5, after_s=0.2)
    twice = np.concatenate((one, one))  # "alexa" twice, ~2 s apart

    def count(spec):
        detector = WakeWordDetector([spec])
        return len([d for f in frames(twice) for d in detector.process(f)])

    assert count(WakeWordSpec("alexa", threshold=0.5, refractory_s=0.5)) == 2
    assert count(WakeWordSpec("alexa", threshold=0.5, refractory_s=10.0)) == 1
    assert count(WakeWordSpec("alexa", threshold=0.5, patience=40, refractory_s=0.5)) == 0


@pytest.mark.parametrize("scores, expected", [
    ([0, 0.3, 0.6, 0.95, 0.99, 0.4, 0], [(3, 0.95)]),  # reported as soon as the peak passes 0.9
    ([0, 0.3, 0.5, 0.4, 0.3, 0.3, 0], [(4, 0.5)]),  # never reaches 0.9: its peak, 3 frames later
    ([0, 0.3, 0.1, 0, 0, 0, 0], [(2, 0.3)]),  # a blip: reported when it falls
    ([0, 0.1, 0.15, 0.1, 0], []),
])
def test_trigger_waits_for_the_peak_of_a_candidate(scores, expected):
    trigger = Trigger(WakeWordSpec("alexa", threshold=0.2, accept_threshold=0.9))
    fired = [(i, trigger.update(s, (i + 1) * 0.08)) for i, s in enumerate(scores)]
    assert [(i, score) for i, score in fired if score is not None] == expected


def test_two_wake_words_share_one_front_end():
    detector = WakeWordDetector([WakeWordSpec("alexa"), WakeWordSpec("hey_jarvis"), WakeWordSpec("timer")])
    scores = [detector.scores(f) for f in frames(padded(load_int16(clips("alexa")[0])))]
    assert set(scores[0]) == {"alexa", "hey_jarvis", "timer"}
    assert max(s["alexa"] for s in scores) > 0.9 > max(s["hey_jarvis"] for s in scores)


def test_ring_buffer_keeps_the_last_seconds():
    ring = RingBuffer(0.2)
    for i in range(5):
        ring.append(np.full(FRAME, i, dtype=np.float32))
    last = ring.last()
    assert len(last) == 3200 and last[-1] == 4 and last[0] == 2
    assert len(ring.last(0.1)) == 1600


def test_unknown_wake_word_names_the_choices():
    with pytest.raises(ModelError, match="alexa, hey_jarvis"):
        wakeword_model_path("ok_google")

"""The shared streaming source and Silero VAD endpointing, on real speech."""

import io
import time

import numpy as np
import pytest
import soundfile as sf
from wakeword_helpers import SPEECH_DEV, sox

from edge_asr.errors import AudioError
from edge_asr.stream import FRAME_SAMPLES, open_stream
from edge_asr.vad import Endpointer, SileroVad

SPEECH = SPEECH_DEV / "ls-test-other_1688-142285-0000.wav"  # 15 s, pauses between phrases


def test_file_frames_are_fixed_size_and_cover_the_file():
    audio, _ = sf.read(SPEECH, dtype="float32")
    with open_stream(SPEECH) as stream:
        frames = list(stream)
    assert all(len(f) == FRAME_SAMPLES and f.dtype == np.float32 for f in frames)
    assert len(frames) == -(-len(audio) // FRAME_SAMPLES)
    np.testing.assert_allclose(np.concatenate(frames)[: len(audio)], audio, atol=1e-4)
    assert stream.position_s == pytest.approx(len(frames) * 0.08)


def test_any_rate_and_channels_become_16k_mono(tmp_path):
    stereo = tmp_path / "stereo44k.flac"
    sox(SPEECH, "-r", "44100", "-c", "2", stereo)
    frames = list(open_stream(stereo))
    assert abs(len(frames) * FRAME_SAMPLES / 16000 - sf.info(SPEECH).duration) < 0.1


def test_stdin_raw_pcm(monkeypatch):
    pcm = (np.sin(np.arange(4000) / 5) * 10000).astype("<i2")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(pcm.tobytes())))
    frames = list(open_stream("-"))
    assert len(frames) == 4 and np.allclose(frames[0][:10], pcm[:10] / 32768)
    assert np.allclose(np.concatenate(frames)[:4000], pcm / 32768) and not frames[-1][4000 - 3 * 1280:].any()


def test_arrays_are_framed_as_is():
    audio = np.linspace(-1, 1, 3000, dtype=np.float32)
    frames = list(open_stream(audio))
    assert [len(f) for f in frames] == [1280] * 3 and np.array_equal(np.concatenate(frames)[:3000], audio)


def test_realtime_pacing():
    started = time.monotonic()
    list(open_stream(np.zeros(8000, dtype=np.float32), realtime=True))  # 0.5 s of audio
    assert time.monotonic() - started >= 0.4


def test_unreadable_file_is_a_user_error(tmp_path):
    bad = tmp_path / "not-audio.wav"
    bad.write_text("hello")
    with pytest.raises(AudioError, match="not-audio.wav"):
        open_stream(bad)
    with pytest.raises(AudioError, match="no such file"):
        open_stream(tmp_path / "missing.wav")


def test_vad_probability_separates_speech_from_silence():
    vad = SileroVad()
    audio, _ = sf.read(SPEECH, dtype="float32")
    speech = [vad(audio[i:i + FRAME_SAMPLES]) for i in range(16000, 48000, FRAME_SAMPLES)]
    vad.reset()
    quiet = [vad(np.zeros(FRAME_SAMPLES, np.float32)) for _ in range(10)]
    assert np.mean(speech) > 0.5 > 0.1 > max(quiet)


def test_endpointer_splits_utterances_at_trailing_silence():
    audio, _ = sf.read(SPEECH, dtype="float32")
    audio = np.concatenate((np.zeros(16000, np.float32), audio, np.zeros(16000, np.float32)))
    endpointer = Endpointer(trailing_silence_s=0.6, max_speech_s=30)
    events = [e for f in open_stream(audio) for e in endpointer.feed(f)] + endpointer.flush()
    starts = [e for e in events if e.kind == "start"]
    ends = [e for e in events if e.kind == "end"]
    assert len(starts) == len(ends) >= 3
    assert 1.0 <= starts[0].t < 2.0 and all(e.reason == "silence" for e in ends)
    assert ends[-1].t <= len(audio) / 16000 - 0.6
    # A longer silence rule merges the pauses into fewer utterances; a max length cuts them.
    patient = Endpointer(trailing_silence_s=1.5, max_speech_s=30)
    merged = [e for f in open_stream(audio) for e in patient.feed(f) if e.kind == "end"]
    assert len(merged) < len(ends)
    capped = Endpointer(trailing_silence_s=0.6, max_speech_s=1.0)
    cut = [e for f in open_stream(audio) for e in capped.feed(f) if e.kind == "end"]
    assert any(e.reason == "max_length" for e in cut)


def test_endpointer_flushes_speech_cut_off_by_the_end_of_the_stream():
    audio, _ = sf.read(SPEECH, dtype="float32")
    endpointer = Endpointer()
    for f in open_stream(audio[16000:40000]):
        endpointer.feed(f)
    assert [e.reason for e in endpointer.flush()] == ["end_of_stream"]

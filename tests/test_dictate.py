"""Dictation: a WAV played at real-time pace through `edge-asr dictate`, partial and final events in order."""

import time

import numpy as np
import soundfile as sf
from conftest import wer
from dictate_helpers import LONG, SHORT, json_events, run_dictate, two_utterances_wav

from edge_asr.dictation import DictateSection, Dictation, agreed_prefix, extend_committed
from edge_asr.frontend import N_FRAMES
from edge_asr.stream import open_stream


def test_local_agreement():
    assert agreed_prefix("Turn on the".split(), "turn on the kitchen".split()) == 3
    assert agreed_prefix("turn on the kitchen.".split(), "turn on the kitchen lights".split()) == 4
    assert agreed_prefix("go forward".split(), "so forward".split()) == 0
    # The hypothesis continues the committed words...
    assert extend_committed(["turn", "on"], "Turn on the lights.".split()) == (["the", "lights."], False)
    # ...or revises one: what was committed stays, the rest continues after the best match.
    assert extend_committed(["turn", "of", "the"], "turn off the kitchen lights".split()) == (
        ["kitchen", "lights"], True)
    assert extend_committed([], "hello".split()) == (["hello"], False)


def _check_order(events: list[dict]) -> None:
    """Per utterance: partials, then exactly one final; utterances one after another."""
    finished = -1
    for e in events:
        assert e["utterance"] == finished + 1, events
        if e["event"] == "final":
            finished = e["utterance"]


def test_dictate_realtime_partials_then_finals(model_dir, tmp_path):
    wav = two_utterances_wav(tmp_path / "talk.wav")
    duration = sf.info(wav).duration
    began = time.monotonic()
    done = run_dictate("--input", str(wav), "--realtime", "--format", "json", "--model", str(model_dir),
                       "--threads", "2")
    wall = time.monotonic() - began
    assert done.returncode == 0, done.stderr.decode()
    assert wall >= duration - 0.5  # paced like a microphone
    events = json_events(done.stdout)
    assert events[0]["event"] == "ready" and events[0]["model"]
    events = events[1:]
    _check_order(events)
    finals = [e for e in events if e["event"] == "final"]
    assert len(finals) == 2, events
    assert wer([LONG[1]], [finals[0]["text"]]) < 0.2, finals[0]
    assert wer([SHORT[1]], [finals[1]["text"]]) < 0.3, finals[1]
    # Speech starts at 0.8 s and, after 5.3 s, a 1.5 s pause and the command's own lead-in, at ~8.1 s.
    assert abs(finals[0]["start"] - 0.8) < 0.4 and 7.6 < finals[1]["start"] < 8.6
    for f in finals:
        assert f["start"] < f["end"] <= f["t"] and f["compute_s"] >= 0 and 0.5 <= f["endpoint_s"] < 1.0

    # Live input skips a partial while transcription lags behind the stream, so how many partials a loaded
    # machine computes varies; the schedule itself is checked without skipping in test_partial_schedule.
    # Before the first partial only the VAD has run (far faster than real time), so it is never skipped.
    partials = [e for e in events if e["event"] == "partial" and e["utterance"] == 0]
    assert partials, events
    assert partials[0]["t"] - partials[0]["start"] <= 1.5  # scheduled 0.7 s into the speech
    committed = ""
    for p in partials:
        assert p["t"] <= finals[0]["t"] and p["text"].startswith(p["committed"])
        assert p["committed"].startswith(committed)  # committed words are never taken back
        committed = p["committed"]
    # The final is the whole utterance's hypothesis: it extends the committed words unless it says it revised them.
    extends = agreed_prefix(committed.split(), finals[0]["text"].split()) == len(committed.split())
    assert extends != finals[0]["revised"], (committed, finals[0])
    assert [p["t"] for p in partials] == sorted(p["t"] for p in partials)


def test_partial_schedule(transcriber):
    """Not live (every partial computed): the first one `first_partial_s` after the VAD's speech start, then
    one every `partial_interval_s`, committed words only growing, the final after all of them."""
    from dictate_helpers import SPEECH_DEV

    from edge_asr.audio import load_audio

    speech = load_audio(SPEECH_DEV / LONG[0])  # 5.3 s
    audio = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(16000, np.float32)])
    frames: list[int] = []
    encode = transcriber.engine.encode
    transcriber.engine.encode = lambda mel: (frames.append(mel.shape[1]), encode(mel))[1]
    try:
        events = list(Dictation(transcriber, DictateSection(fast_path=False), live=False).run(open_stream(audio)))
    finally:
        del transcriber.engine.encode
    # Partials on the fast path (a doubtful one may be re-decoded in full), the final on the full window.
    assert frames[-1] == N_FRAMES and sum(f < N_FRAMES for f in frames) >= len(frames) // 2, frames
    partials, final = events[:-1], events[-1]
    assert final["event"] == "final" and all(e["event"] == "partial" for e in partials), events
    assert len(partials) >= 4, events  # ~5 s of speech, a partial every second
    frame_s = 0.08
    assert 0.7 - 1e-3 <= partials[0]["t"] - partials[0]["start"] <= 0.7 + frame_s + 1e-3
    gaps = [b["t"] - a["t"] for a, b in zip(partials, partials[1:])]
    assert all(1.0 - 1e-3 <= g <= 1.0 + frame_s + 1e-3 for g in gaps), gaps
    committed = ""
    for p in partials:
        assert p["committed"].startswith(committed)
        committed = p["committed"]
    assert wer([LONG[1]], [final["text"]]) < 0.2, final


def test_dictate_text_from_stdin_to_file(model_dir, tmp_path):
    wav = two_utterances_wav(tmp_path / "talk.wav")
    audio, _ = sf.read(wav, dtype="int16")
    out = tmp_path / "notes.txt"
    done = run_dictate("--input", "-", "--output", str(out), "--model", str(model_dir), "--threads", "2",
                       input_bytes=audio.astype("<i2").tobytes())
    assert done.returncode == 0, done.stderr.decode()
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and wer([LONG[1], SHORT[1]], lines) < 0.2, lines


def test_dictation_api_on_an_array(transcriber):
    """Python API: frames in, events out; silence gives nothing at all."""
    from dictate_helpers import SPEECH_DEV

    from edge_asr.audio import load_audio

    speech = load_audio(SPEECH_DEV / SHORT[0])
    audio = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(16000, np.float32)])
    events = list(Dictation(transcriber, DictateSection(partial_interval_s=0.5), live=False).run(open_stream(audio)))
    assert events[-1]["event"] == "final" and wer([SHORT[1]], [events[-1]["text"]]) < 0.3
    assert all(e["event"] == "partial" for e in events[:-1]) and len(events) >= 3
    silence = np.zeros(16000 * 3, np.float32)
    assert list(Dictation(transcriber).run(open_stream(silence))) == []


def test_dictate_config_errors(model_dir, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dictate:\n  max_utterance_s: 45\n")
    done = run_dictate("--config", str(bad), "--input", "x.wav", "--model", str(model_dir))
    assert done.returncode == 2 and b"dictate.max_utterance_s" in done.stderr, done.stderr
    bad.write_text("dictate:\n  partial_every: 1\n")
    done = run_dictate("--config", str(bad), "--input", "x.wav", "--model", str(model_dir))
    assert done.returncode == 2 and b"unknown key 'dictate.partial_every'" in done.stderr, done.stderr


def test_the_final_is_transcribed_while_the_vad_waits_out_the_silence(transcriber):
    """The final's audio is complete `tail_s` after the last speech frame, so it is transcribed then and is
    ready at the endpoint; a speaker who goes on after such a pause still gets the whole utterance."""
    from dictate_helpers import SPEECH_DEV

    from edge_asr.audio import load_audio

    speech = load_audio(SPEECH_DEV / LONG[0])  # LJ Speech: cut close to the words
    pause = np.zeros(int(0.45 * 16000), np.float32)  # longer than tail_s (0.3), shorter than the 0.6 s endpoint
    audio = np.concatenate([pause, speech, pause, speech, np.zeros(16000, np.float32)])
    events = list(Dictation(transcriber, DictateSection(fast_path=False), live=False).run(open_stream(audio)))
    finals = [e for e in events if e["event"] == "final"]
    assert len(finals) == 1 and wer([f"{LONG[1]} {LONG[1]}"], [finals[0]["text"]]) < 0.2, events
    # Transcribed before the endpoint: only the VAD's work on the endpoint's frame is left.
    assert finals[0]["wait_s"] < 0.5 * finals[0]["compute_s"], finals

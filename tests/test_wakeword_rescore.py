"""Acoustic rescoring on real audio and the real default model: grammar sentences scored against the command's
encoder output recover a command the free transcript misheard, and leave unrelated speech alone."""

import numpy as np
import pytest
from wakeword_helpers import clips, tts

from edge_asr.audio import load_audio
from edge_asr.stream import open_stream
from wakeword.commands import plan_listen
from wakeword.config import CommandConfig, ListenSection
from wakeword.listener import Listener
from wakeword.verify import local_transcriber

GENRES = "jazz|rock|classical|pop"
COMMANDS = [
    CommandConfig("music", [f"play {{genre:{GENRES}}} music", f"put on some {{genre:{GENRES}}} music"]),
    CommandConfig("lock", ["lock the {door:front|back|garage} door"]),
    CommandConfig("timer", ["set a timer for {minutes:int} minutes"]),
]


def wake_then_noisy(tmp_path, command: str, voice: str, alexa: int, snr_db: float, seed: int) -> np.ndarray:
    """A real "alexa", 0.3 s, the TTS command, 1.5 s; white noise at `snr_db` under it all (the wake-word
    bench's held-out utterance of the same index, so this is a case the bench measures)."""
    speech = np.concatenate((np.zeros(8000, np.float32), load_audio(clips("alexa")[alexa]),
                             np.zeros(4800, np.float32), load_audio(tts(command, tmp_path / "cmd.wav", voice)),
                             np.zeros(24000, np.float32)))
    voiced = speech[np.abs(speech) > 0.01]
    level = np.sqrt(np.mean(voiced**2)) / 10 ** (snr_db / 20)
    noise = np.random.default_rng(seed).standard_normal(len(speech))
    return np.clip(speech + noise / np.sqrt(np.mean(noise**2)) * level, -1, 1).astype(np.float32)


def listen(audio: np.ndarray, transcriber, rescore_max_drop) -> list[dict]:
    section = ListenSection(commands=COMMANDS, rescore_max_drop=rescore_max_drop)
    listener = Listener(plan_listen(section, "test"), local_transcriber(transcriber),
                        transcribe_command=local_transcriber(transcriber, fast_path=True), transcribe_ahead=False)
    return [e for e in listener.run(open_stream(audio)) if e["event"] in ("command", "no_match")]


@pytest.fixture(scope="module")
def misheard_rock(tmp_path_factory):
    # flite's rms voice at 20 dB: tiny.en writes "put on some rough music" on both paths.
    return wake_then_noisy(tmp_path_factory.mktemp("rock"), "put on some rock music", "flite:rms",
                           alexa=71, snr_db=20, seed=31)


def test_without_rescoring_the_misheard_command_is_no_match(misheard_rock, transcriber):
    [event] = listen(misheard_rock, transcriber, rescore_max_drop=None)
    assert event["event"] == "no_match" and "rough" in event["text"].lower(), event


def test_rescoring_recovers_the_command_and_its_slot_from_the_audio(misheard_rock, transcriber):
    [event] = listen(misheard_rock, transcriber, rescore_max_drop=ListenSection().rescore_max_drop)
    assert event["event"] == "command", event
    assert event["command"] == "music" and event["slots"] == {"genre": "rock"}
    assert "rough" in event["text"].lower()  # what was heard stays the event's text
    assert event["rescored"] == "Put on some rock music" and 0 < event["confidence"] <= 1


def test_rescoring_leaves_unrelated_speech_no_match(tmp_path, transcriber):
    audio = wake_then_noisy(tmp_path, "how far away is the moon", "flite:kal16", alexa=63, snr_db=20, seed=3)
    [event] = listen(audio, transcriber, rescore_max_drop=ListenSection().rescore_max_drop)
    assert event["event"] == "no_match" and "far away" in event["text"].lower(), event


def test_teacher_forced_scores_agree_with_greedy_decoding(tmp_path, transcriber):
    # The free transcript's own tokens, scored by teacher forcing, get the log-probability greedy decoding gave
    # them (up to the decoder's suppressed tokens, which teacher forcing does not renormalise away).
    audio = load_audio(tts("lock the back door", tmp_path / "cmd.wav", "espeak:en-us"))
    segments, _ = transcriber.transcribe(audio, temperature=0.0, without_timestamps=True,
                                         condition_on_previous_text=False, keep_encoder_output=True)
    [segment] = list(segments)
    [scores] = transcriber.score_texts(segment.encoder_output, [segment.text])
    assert len(scores) == len(segment.tokens) + 1  # the text's tokens and the end of text
    assert scores.mean() == pytest.approx(segment.avg_logprob, abs=0.05)
    wrong, right = transcriber.score_texts(segment.encoder_output, ["Lock the front door.", segment.text])
    assert wrong.mean() < right.mean() - 0.3
    assert segment.to_dict().keys() >= {"text", "tokens"} and "encoder_output" not in segment.to_dict()

"""Command capture on real audio, without a transcriber: the wake word alone, then nothing."""

import numpy as np
from wakeword_helpers import clips

from edge_asr.audio import load_audio
from edge_asr.stream import open_stream
from wakeword.commands import plan_listen
from wakeword.config import CaptureConfig, CommandConfig, ListenSection
from wakeword.listener import Listener


def never_transcribe(audio, prompt=None):
    raise AssertionError("nothing was said after the wake word: there is nothing to transcribe")


def test_wake_word_then_silence_gives_up_after_the_start_timeout():
    section = ListenSection(capture=CaptureConfig(start_timeout_s=2.0),
                            commands=[CommandConfig("lights", ["turn {state:on|off} the lights"])])
    audio = np.concatenate((np.zeros(16000, np.float32), load_audio(clips("alexa")[1]),
                            np.zeros(5 * 16000, np.float32)))
    events = list(Listener(plan_listen(section, "test"), never_transcribe).run(open_stream(audio)))
    assert [e["event"] for e in events] == ["wake", "no_match"]
    wake, gave_up = events
    assert wake["score"] >= 0.9  # accepted by the first stage alone: no transcription
    assert gave_up["reason"] == "no speech after the wake word"
    assert 2.0 <= gave_up["t"] - wake["t"] <= 2.0 + 0.5 + 0.16  # timeout (+ the wake word's own tail)


def wake_then(tmp_path, command: str) -> np.ndarray:
    from wakeword_helpers import tts

    return np.concatenate((np.zeros(16000, np.float32), load_audio(clips("alexa")[1]),
                           np.zeros(4800, np.float32), load_audio(tts(command, tmp_path / "cmd.wav")),
                           np.zeros(2 * 16000, np.float32)))


def listener_as_listen_builds_it(section: ListenSection, transcriber) -> Listener:
    """Wake-word checks on the full window, commands as `listen.fast_path` and `listen.beam_size` say."""
    from wakeword.verify import listen_transcribers

    made = listen_transcribers(transcriber, section.language, section.fast_path, section.beam_size)
    return Listener(plan_listen(section, "test"), made.wake_check, transcribe_command=made.command,
                    command_retry=made.command_retry)


def test_a_whole_command_ends_at_a_short_pause(tmp_path, transcriber):
    section = ListenSection(commands=[CommandConfig("lights", ["turn {state:on|off} the {room} lights"])])
    listener = listener_as_listen_builds_it(section, transcriber)
    # Streamed as fast as the file reads: the early end waits for the pause's transcript (at real time it
    # would be the same wait, hidden in the pause), so where the command is cut does not depend on speed.
    events = list(listener.run(open_stream(wake_then(tmp_path, "turn off the kitchen lights"))))
    assert [e["event"] for e in events] == ["wake", "command"], events
    command = events[1]
    assert command["slots"] == {"state": "off", "room": "kitchen"}
    # Cut at the first frame after complete_silence_s of silence (80 ms frames), not after the full trailing
    # silence.
    pause = command["endpoint_t"] - command["t"]
    assert section.capture.complete_silence_s <= pause < section.capture.complete_silence_s + 0.08, command


def test_a_command_ending_in_a_number_waits_for_the_full_silence(tmp_path, transcriber):
    # "...for twenty" may go on "...five": a phrase that ends in a number never ends early.
    section = ListenSection(commands=[CommandConfig("timer", ["set a timer for {minutes:int}"])])
    listener = listener_as_listen_builds_it(section, transcriber)
    events = list(listener.run(open_stream(wake_then(tmp_path, "set a timer for twenty"))))
    assert [e["event"] for e in events] == ["wake", "command"], events
    assert events[1]["slots"] == {"minutes": 20}
    assert events[1]["endpoint_t"] - events[1]["t"] >= section.capture.trailing_silence_s


def test_transcribe_ahead_transcribes_the_latest_pause(tmp_path, transcriber):
    # A new pause while the last one's job runs (the speaker went on) queues its own job instead of being
    # skipped, so the pause that ends the command always has a transcript of all of it.
    from edge_asr.ahead import AheadOfEndpoint
    from wakeword.verify import local_transcriber

    audio = wake_then(tmp_path, "turn off the kitchen lights")
    ahead = AheadOfEndpoint(local_transcriber(transcriber), threaded=True)
    ahead.start(1.0, audio[:2 * 16000])  # only the lead and the start of "alexa"
    ahead.start(4.0, audio)
    assert ahead.wait(1.0) is None
    assert "kitchen" in ahead.wait(4.0).text.lower()
    assert "kitchen" in ahead.result(4.0, audio).text.lower()  # the endpoint at that pause: no new job

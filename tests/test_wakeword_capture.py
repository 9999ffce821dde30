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

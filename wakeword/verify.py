"""The second stage of wake-word detection, and the local transcription it (and command capture) use.

A verifier is anything with `verify(audio) -> bool`: the audio is the pre-roll that holds the candidate
wake word. `TranscriptVerifier` asks the local transcriber whether it hears the wake phrase; a cloud check
(escalation) can plug in with the same method.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from wakeword.grammar import find_phrase

# (texts, prefix) -> each text's token log-probabilities after `prefix`, given the audio just transcribed.
ScoreTexts = Callable[[list[str], str], list[np.ndarray]]
# (contexts, words, prefix) -> (contexts, words) log-probabilities of each word coming next after each context.
NextWords = Callable[[list[str], list[str], str], np.ndarray]


@dataclass
class Heard:
    text: str
    confidence: float  # exp(mean segment avg_logprob): the transcriber's own certainty, 0..1
    # Scores other texts against the same audio, reusing its encoder output (None: this transcriber can't).
    score: ScoreTexts | None = field(default=None, repr=False, compare=False)
    next_words: NextWords | None = field(default=None, repr=False, compare=False)


Transcribe = Callable[..., Heard]  # (audio, prompt: str | None = None) -> Heard


def certainty(avg_logprobs: list[float]) -> float:
    """`Heard.confidence` from the segments' average token log-probabilities (0 without segments)."""
    return round(math.exp(min(0.0, sum(avg_logprobs) / len(avg_logprobs))), 3) if avg_logprobs else 0.0

# Silence appended to a command before a fast-path transcription when the model was not adapted to short
# encoder contexts (its card does not say the fast path is safe). With only the card's default 1 s after
# the speech, tiny.en (fp32 and int8) often fails to stop and repeats the command until the token cap;
# with more silence it sees the speech end, as in a padded 30 s window, and stops. On 60 TTS commands at
# 15 dB SNR (int8), with 4 s 11 transcripts still looped, with 8 s none did, and 8 s took no longer
# (fewer runaway tokens to decode); it still encodes about half of a 30 s window for a 5 s capture.
# Timestamps are off there too: "Alexa. Turn on the kitchen lights." (the wake word, then the command,
# clean) still looped with 8 s of silence when the decoder predicted timestamps, and stopped without them.
# (With the full window timestamps stay on: without them Whisper tends to stop at the pause after
# "Alexa.".) A command the fast path hears as none gets a full-window second opinion (the Listener).
UNADAPTED_FAST_PATH_PAD_S = 8.0


def local_transcriber(transcriber, language: str | None = "en", fast_path: bool | None = False,
                      beam_size: int = 1) -> Transcribe:
    """Adapt an edge_asr Transcriber to `audio -> Heard`, tuned for short commands (no fallback).

    `fast_path`: True encodes only the seconds present (plus silence, see UNADAPTED_FAST_PATH_PAD_S), not a
    30 s window; False always the full window; None as the model card says. `beam_size` 1: greedy.
    """
    unadapted = bool(fast_path) and not transcriber.card.fast_path.safe
    pad_s = UNADAPTED_FAST_PATH_PAD_S if unadapted else None  # None: the card's pad

    def transcribe(audio: np.ndarray, prompt: str | None = None) -> Heard:
        segments, _ = transcriber.transcribe(audio, beam_size=beam_size, temperature=(0.0,), language=language,
                                             word_timestamps=False, condition_on_previous_text=False,
                                             initial_prompt=prompt, fast_path=fast_path, fast_path_pad_s=pad_s,
                                             without_timestamps=unadapted, keep_encoder_output=True)
        segments = list(segments)
        text = " ".join(s.text.strip() for s in segments).strip()
        if not segments:
            return Heard("", 0.0)
        encoded = segments[-1].encoder_output  # a command is one window

        def score(texts: list[str], prefix: str = "") -> list[np.ndarray]:
            return transcriber.score_texts(encoded, texts, prefix, language)

        def next_words(contexts: list[str], words: list[str], prefix: str = "") -> np.ndarray:
            return transcriber.next_word_logprobs(encoded, contexts, words, prefix, language)

        return Heard(text, certainty([s.avg_logprob for s in segments]), score, next_words)

    return transcribe


@dataclass
class ListenTranscribers:
    """What `listen` transcribes with, from one model: the wake-word check (full window, greedy), commands
    (`listen.fast_path`, `listen.beam_size`) and, for commands on the fast path, a full-window second opinion
    for one it heard as no command (None otherwise)."""

    wake_check: Transcribe
    command: Transcribe
    command_retry: Transcribe | None


def listen_transcribers(transcriber, language: str | None, fast_path: bool | None, beam_size: int
                        ) -> ListenTranscribers:
    fast = transcriber.card.fast_path.safe if fast_path is None else fast_path
    command = local_transcriber(transcriber, language, fast_path=fast, beam_size=beam_size)
    retry = local_transcriber(transcriber, language, beam_size=beam_size) if fast else None
    return ListenTranscribers(local_transcriber(transcriber, language), command, retry)


class Verifier(Protocol):
    def verify(self, audio: np.ndarray) -> bool: ...


class TranscriptVerifier:
    """Accept a candidate when the transcript of its pre-roll contains one of the wake phrases. No prompt
    here: priming the transcriber with the wake phrase would make it hear one in anything."""

    def __init__(self, transcribe: Transcribe, phrases: list[str], min_similarity: float = 0.7) -> None:
        self.transcribe = transcribe
        self.phrases = phrases
        self.min_similarity = min_similarity
        self.last_heard = ""

    def verify(self, audio: np.ndarray) -> bool:
        self.last_heard = self.transcribe(audio).text
        return any(find_phrase(self.last_heard, p, self.min_similarity) for p in self.phrases)


def cloud_transcriber(client, language: str | None = "en") -> Transcribe:
    """`audio -> Heard` on the escalation endpoint, for commands the device is unsure of. Raises CloudError
    when the cloud can't answer; `confidence` comes from its segments' avg_logprob, as the local one does."""

    def transcribe(audio: np.ndarray, prompt: str | None = None) -> Heard:
        cloud = client.transcribe(audio, language=language, prompt=prompt)
        logprobs = [s["avg_logprob"] for s in cloud.segments if isinstance(s.get("avg_logprob"), (int, float))]
        return Heard(cloud.text.strip(), certainty(logprobs))

    return transcribe


class CloudVerifier:
    """The escalation endpoint (a bigger model) must hear the wake phrase; when the cloud cannot answer
    (down, slow, circuit open) the `fallback` verifier decides instead."""

    def __init__(self, client, phrases: list[str], fallback: Verifier, language: str | None = "en") -> None:
        self.client = client
        self.phrases = phrases
        self.fallback = fallback
        self.language = language

    def verify(self, audio: np.ndarray) -> bool:
        from edge_asr.escalation import cloud_confirms_wake

        for phrase in self.phrases:
            # on_failure=None comes back as-is when the cloud gives no answer.
            heard = cloud_confirms_wake(audio, phrase, self.client, on_failure=None, language=self.language)
            if heard is None:
                return self.fallback.verify(audio)
            if heard:
                return True
        return False

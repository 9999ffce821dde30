"""Acoustic rescoring: pick the command from the audio, not from the free transcript alone.

A grammar-based assistant does not ask "what was said?" but "which of my sentences was said?". After the free
transcription and text matching, the grammar's sentences nearest the transcript (`Grammar.candidates`) are
scored by the transcriber's decoder against the encoder output it already computed (teacher forcing, one
batched pass, no sampling), next to the transcript itself. Per token, a sentence that the audio supports
about as well as what the decoder wrote freely is what was said: "put on some rough music" becomes "put on
some rock music". A request that is no command scores far below its own transcript with every sentence of
the grammar and stays no match. Number slots cannot be listed sentence by sentence, so the decoder is first
asked which numbers follow the words before each number slot, and the likeliest fill the candidates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from wakeword.grammar import Candidate, Grammar
from wakeword.verify import Heard

_END = re.compile(r"[.!?]$")
# The numbers a number slot is asked about: each is one token of Whisper's vocabulary (" 7", " 45", up to
# " 361"), so one next-token distribution scores them all.
NUMBERS = [str(n) for n in range(301)]
NUMBERS_PER_CONTEXT = 2


@dataclass
class Rescored:
    candidate: Candidate
    text: str  # the sentence as scored ("Put on some rock music.")
    drop: float  # the transcript's mean token log-probability minus the sentence's (negative: the sentence won)


class AcousticRescorer:
    def __init__(self, grammar: Grammar, max_drop: float = 1.5, limit: int = 8) -> None:
        self.grammar = grammar
        self.max_drop = max_drop
        self.limit = limit
        self.number_contexts = grammar.number_contexts()

    def scored(self, heard: Heard, command_text: str) -> tuple[str, list[Candidate], list[np.ndarray]]:
        """(what the transcript's command is scored as, the candidates, token log-probabilities of that text
        and then of each candidate). The words heard before the command (the wake word) are the prefix."""
        at = heard.text.find(command_text) if command_text else -1
        prefix = heard.text[:at] if at > 0 else ""
        end = _END.search(heard.text.rstrip())
        free = command_text.strip() + (end.group() if end and not _END.search(command_text.strip()) else "")
        capital = free[:1].isupper()
        candidates = self.grammar.candidates(command_text, self.limit, self.numbers_heard(heard, prefix, capital))
        texts = [_styled(c.text, capital, end.group() if end else "") for c in candidates]
        return free, candidates, heard.score([free, *texts], prefix)

    def numbers_heard(self, heard: Heard, prefix: str, capital: bool) -> tuple[int, ...]:
        """The numbers the audio most supports after each phrase's words before a number slot (the likeliest
        `NUMBERS_PER_CONTEXT` of 0-300 each): a number the transcript did not write as one ("set an alarm
        for a scene with a cloth") is then among the candidates ("set an alarm for 7 o'clock")."""
        if not self.number_contexts or heard.next_words is None:
            return ()
        logprobs = heard.next_words([_styled(c, capital, "") for c in self.number_contexts], NUMBERS, prefix)
        best = np.argsort(-logprobs, axis=1)[:, :NUMBERS_PER_CONTEXT]
        return tuple(sorted({int(NUMBERS[i]) for i in best.ravel()}))

    def rescore(self, heard: Heard, command_text: str) -> Rescored | None:
        """The grammar sentence the audio supports best, if it is within `max_drop` of the transcript per
        token; None otherwise, or when the transcriber cannot score texts."""
        if heard.score is None or not command_text.strip():
            return None
        free, candidates, scores = self.scored(heard, command_text)
        if not candidates:
            return None
        means = [float(s.mean()) for s in scores]
        best = int(np.argmax(means[1:]))
        drop = means[0] - means[1 + best]
        if drop > self.max_drop:
            return None
        c = candidates[best]
        text = _styled(c.text, free[:1].isupper(), "")
        return Rescored(c, text, round(drop, 3))


def _styled(sentence: str, capital: bool, end: str) -> str:
    """A grammar sentence written as the transcriber writes: its capital and its closing punctuation."""
    return (sentence[:1].upper() + sentence[1:] if capital else sentence) + end

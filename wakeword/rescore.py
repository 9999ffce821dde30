"""Acoustic rescoring: pick the command from the audio, not from the free transcript alone.

A grammar-based assistant does not ask "what was said?" but "which of my sentences was said?". After the free
transcription and text matching, the grammar's sentences nearest the transcript (`Grammar.candidates`) are
scored by the transcriber's decoder against the encoder output it already computed (teacher forcing, one
batched pass, no sampling), next to the transcript itself. Per token, a sentence that the audio supports
about as well as what the decoder wrote freely is what was said: "put on some rough music" becomes "put on
some rock music". A request that is no command scores far below its own transcript with every sentence of
the grammar and stays no match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from wakeword.grammar import Candidate, Grammar
from wakeword.verify import Heard, ScoreTexts

_END = re.compile(r"[.!?]$")


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

    def scored(self, heard_text: str, command_text: str,
               score: ScoreTexts) -> tuple[str, list[Candidate], list[np.ndarray]]:
        """(what the transcript's command is scored as, the candidates, token log-probabilities of that text
        and then of each candidate). The words heard before the command (the wake word) are the prefix."""
        at = heard_text.find(command_text) if command_text else -1
        prefix = heard_text[:at] if at > 0 else ""
        end = _END.search(heard_text.rstrip())
        free = command_text.strip() + (end.group() if end and not _END.search(command_text.strip()) else "")
        candidates = self.grammar.candidates(command_text, self.limit)
        capital = free[:1].isupper()
        texts = [_styled(c.text, capital, end.group() if end else "") for c in candidates]
        return free, candidates, score([free, *texts], prefix)

    def rescore(self, heard: Heard, command_text: str) -> Rescored | None:
        """The grammar sentence the audio supports best, if it is within `max_drop` of the transcript per
        token; None otherwise, or when the transcriber cannot score texts."""
        if heard.score is None or not command_text.strip():
            return None
        free, candidates, scores = self.scored(heard.text, command_text, heard.score)
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

"""Whisper's byte-level BPE via the `tokenizers` package, plus the special tokens from the model card."""

from __future__ import annotations

import string
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer

from edge_asr.model_dir import SpecialTokens


class Tokenizer:
    def __init__(self, path: str | Path, special: SpecialTokens):
        self.hf = HFTokenizer.from_file(str(path))
        self.special = special

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def decode(self, tokens: list[int]) -> str:
        """Text of the ordinary tokens (timestamps and specials dropped)."""
        return self.hf.decode([t for t in tokens if t < self.special.eot], skip_special_tokens=False)

    def sot_sequence(self, language: str | None, task: str = "transcribe", timestamps: bool = True) -> list[int]:
        s = self.special
        seq = [s.sot]
        if s.languages:
            seq += [s.languages.get(language or "en", s.languages.get("en")), s.transcribe if task == "transcribe"
                    else s.translate]
        if not timestamps:
            seq.append(s.no_timestamps)
        return seq

    def non_speech_specials(self) -> list[int]:
        """Specials that must never be sampled inside a transcript."""
        s = self.special
        return [s.sot, s.sot_prev, s.no_speech, s.transcribe, s.translate, *s.languages.values()]

    def split_to_words(self, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
        """Group tokens into words: a word starts at a token with a leading space or at punctuation."""
        subwords, subword_tokens = self._split_on_unicode(tokens)
        words: list[str] = []
        word_tokens: list[list[int]] = []
        for sub, toks in zip(subwords, subword_tokens):
            special = toks[0] >= self.special.eot
            starts = sub.startswith(" ") or sub.strip() in string.punctuation
            if special or starts or not words:
                words.append(sub)
                word_tokens.append(list(toks))
            else:
                words[-1] += sub
                word_tokens[-1].extend(toks)
        return words, word_tokens

    def _split_on_unicode(self, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
        # A multi-byte character can span tokens: cut only where the text decodes cleanly.
        words, word_tokens, current = [], [], []
        for t in tokens:
            current.append(t)
            text = self.hf.decode(current, skip_special_tokens=False) if t < self.special.eot else "<|special|>"
            if "\ufffd" not in text:
                words.append(text)
                word_tokens.append(current)
                current = []
        return words, word_tokens

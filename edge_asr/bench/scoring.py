"""WER / CER with Whisper's English normalizer (whisper-normalizer) and jiwer.

Corpus WER is total errors over total reference words (not a mean of per-utterance WERs), as jiwer
computes it over a list of pairs.
"""

from __future__ import annotations

from functools import lru_cache

import jiwer


@lru_cache(maxsize=1)
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    return " ".join(_normalizer()(text).split())


def score_utterance(reference: str, hypothesis: str) -> dict:
    """Per-utterance counts on normalized text."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    words = jiwer.process_words(ref, hyp)
    chars = jiwer.process_characters(ref, hyp)
    return {
        "reference_normalized": ref,
        "hypothesis_normalized": hyp,
        "ref_words": words.hits + words.substitutions + words.deletions,
        "hits": words.hits,
        "substitutions": words.substitutions,
        "deletions": words.deletions,
        "insertions": words.insertions,
        "wer": words.wer,
        "cer": chars.cer,
    }


def corpus_scores(pairs: list[tuple[str, str]]) -> dict:
    """WER and CER over (reference, hypothesis) pairs, normalized."""
    if not pairs:
        return {"wer": None, "cer": None, "ref_words": 0}
    refs = [normalize(r) for r, _ in pairs]
    hyps = [normalize(h) for _, h in pairs]
    words = jiwer.process_words(refs, hyps)
    return {
        "wer": words.wer,
        "cer": jiwer.process_characters(refs, hyps).cer,
        "ref_words": words.hits + words.substitutions + words.deletions,
        "substitutions": words.substitutions,
        "deletions": words.deletions,
        "insertions": words.insertions,
    }


def hallucination(hypotheses: list[str]) -> dict:
    """On non-speech clips any word is a hallucination: the share of clips with words, and the word count."""
    counts = [len(normalize(h).split()) for h in hypotheses]
    if not counts:
        return {"rate": None, "words": 0, "clips": 0}
    return {"rate": sum(c > 0 for c in counts) / len(counts), "words": sum(counts), "clips": len(counts)}

"""Word timestamps from the alignment heads' cross-attention, aligned to audio frames by DTW (as Whisper)."""

from __future__ import annotations

import numpy as np

from edge_asr.engine import CrossKV, WhisperEngine
from edge_asr.tokenizer import Tokenizer
from edge_asr.types import Word

TOKENS_PER_SECOND = 50  # one audio-context position per 20 ms
PREPEND = "\"'“¿([{-"
APPEND = "\"'.。,，!！?？:：”)]}、"


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monotonic alignment path through `cost` (tokens x frames), computed one anti-diagonal at a time."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0
    trace = np.zeros((n + 1, m + 1), dtype=np.int8)
    for k in range(2, n + m + 1):
        i = np.arange(max(1, k - m), min(n, k - 1) + 1)
        j = k - i
        options = np.stack([acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]])
        best = options.argmin(axis=0)
        acc[i, j] = cost[i - 1, j - 1] + options[best, np.arange(len(i))]
        trace[i, j] = best
    i, j = n, m
    path = []
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        step = trace[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    path.reverse()
    arr = np.array(path)
    return arr[:, 0], arr[:, 1]


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1), axis=-1)


def align_words(
    engine: WhisperEngine, tokenizer: Tokenizer, cross_kv: CrossKV, sot_sequence: list[int],
    text_tokens: list[int], num_frames: int, medfilt_width: int = 7,
) -> list[tuple[Word, int]]:
    """Words of `text_tokens` with start/end (seconds into the window), mean token probability, and how
    many of the tokens each word covers (so callers can hand words back to their segments)."""
    if not text_tokens:
        return []
    special = tokenizer.special
    tokens = [*sot_sequence, special.no_timestamps, *text_tokens, special.eot]
    logits, _, attn = engine.decode(np.array([tokens]), engine.empty_cache(1), cross_kv, want_attention=True)
    sampled = logits[0, len(sot_sequence) :, : special.eot].astype(np.float64)
    sampled -= sampled.max(axis=-1, keepdims=True)
    probs = np.exp(sampled)
    probs /= probs.sum(axis=-1, keepdims=True)
    token_probs = probs[np.arange(len(text_tokens)), text_tokens]

    heads = engine.card.alignment_heads
    weights = np.stack([attn[layer, 0, head] for layer, head in heads])  # (heads, tokens, ctx)
    weights = weights[:, :, : max(1, num_frames // 2)]
    # The exported weights are already softmaxed over the full context: renormalising over the frames kept
    # equals a softmax over just those frames.
    weights = weights / np.maximum(weights.sum(axis=-1, keepdims=True), 1e-10)
    std, mean = weights.std(axis=-2, keepdims=True), weights.mean(axis=-2, keepdims=True)
    weights = median_filter((weights - mean) / np.maximum(std, 1e-10), medfilt_width)
    matrix = weights.mean(axis=0)[len(sot_sequence) : -1]
    text_idx, time_idx = dtw(-matrix)

    words, word_tokens = tokenizer.split_to_words(text_tokens + [special.eot])
    if len(word_tokens) <= 1:
        return []
    bounds = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    jumps = np.pad(np.diff(text_idx), (1, 0), constant_values=1).astype(bool)
    jump_times = time_idx[jumps] / TOKENS_PER_SECOND
    starts = jump_times[bounds[:-1]]
    ends = jump_times[bounds[1:]]
    out = [
        (Word(start=float(s), end=float(e), word=w, probability=float(np.mean(token_probs[i:j]))), j - i)
        for w, s, e, i, j in zip(words[:-1], starts, ends, bounds[:-1], bounds[1:])
    ]
    _limit_long_words([w for w, _ in out])
    return _merge_punctuation(out)


def _limit_long_words(words: list[Word]) -> None:
    """DTW can stretch a word over a pause: cap words at twice the median duration (max 2 x 0.7 s)."""
    durations = np.array([w.end - w.start for w in words])
    durations = durations[durations > 0]
    median = min(0.7, float(np.median(durations))) if len(durations) else 0.0
    cap = median * 2
    if cap <= 0:
        return
    for i, w in enumerate(words):
        if w.end - w.start > cap:
            if i == 0:  # a stretched first word usually began late
                w.start = max(w.start, w.end - cap)
            else:
                w.end = w.start + cap


def _merge_punctuation(words: list[tuple[Word, int]]) -> list[tuple[Word, int]]:
    """Attach leading and trailing punctuation to the neighbouring word, as Whisper does."""
    merged: list[tuple[Word, int]] = []
    for w, n in words:
        text = w.word.strip()
        if merged and text and all(c in APPEND for c in text) and not w.word.startswith(" "):
            prev, pn = merged[-1]
            prev.word += w.word
            prev.end = max(prev.end, w.end)
            merged[-1] = (prev, pn + n)
            continue
        if merged:
            prev, pn = merged[-1]
            ptext = prev.word.strip()
            if ptext and all(c in PREPEND for c in ptext):
                merged.pop()
                w = Word(start=prev.start, end=w.end, word=prev.word.rstrip() + w.word.lstrip(),
                         probability=w.probability)
                n += pn
        merged.append((w, n))
    return merged

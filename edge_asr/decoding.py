"""Decoding one 30 s window, built from small swappable parts as openai-whisper's decoding.py:
logit filters (what may be sampled), a token decoder (greedy or beam search), and a sequence ranker.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edge_asr.engine import CrossKV, WhisperEngine
from edge_asr.tokenizer import Tokenizer

NEG_INF = -np.inf


def log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    shifted = x - m
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def log_softmax_at(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """`log_softmax(x)[row, index[row]]` for each row of (batch, vocab) `x`, the same float32 arithmetic
    without building the whole (batch, vocab) result: greedy decoding needs one log-probability per step."""
    m = x.max(axis=-1, keepdims=True)
    log_sum = np.log(np.exp(x - m).sum(axis=-1))
    return (x[np.arange(len(index)), index] - m[:, 0]) - log_sum


def logsumexp(x: np.ndarray) -> float:
    m = x.max()
    return float(m + np.log(np.exp(x - m).sum())) if np.isfinite(m) else float(m)


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


@dataclass
class DecodingOptions:
    temperature: float = 0.0
    beam_size: int = 1
    patience: float = 1.0
    length_penalty: float | None = None
    without_timestamps: bool = False
    max_initial_timestamp: float = 1.0
    language: str | None = None
    task: str = "transcribe"
    max_new_tokens: int | None = None
    # A window shorter than 30 s (the end of a file) must not be given timestamps past its end.
    max_timestamp: float | None = None


@dataclass
class DecodingResult:
    tokens: list[int]  # sampled tokens, timestamps included, eot excluded
    text: str
    avg_logprob: float
    sum_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float


# --- logit filters ------------------------------------------------------------------------------------------

class LogitFilter(Protocol):
    def apply(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        """Mask `logits` (batch, vocab) in place given the sequences so far `tokens` (batch, length)."""


class SuppressTokens:
    def __init__(self, ids: list[int]):
        self.ids = np.array(sorted(set(ids)), dtype=np.int64)

    def apply(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        logits[:, self.ids] = NEG_INF


class SuppressAtBegin:
    """No blank and no end-of-text as the first sampled token."""

    def __init__(self, ids: list[int], sample_begin: int):
        self.ids, self.sample_begin = np.array(ids, dtype=np.int64), sample_begin

    def apply(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        if tokens.shape[1] == self.sample_begin:
            logits[:, self.ids] = NEG_INF


class TimestampRules:
    """Timestamps come in pairs, never decrease, start the text, and win when their total mass does."""

    def __init__(self, tokenizer: Tokenizer, sample_begin: int, max_initial: int | None, max_index: int | None):
        self.eot = tokenizer.special.eot
        self.ts_begin = tokenizer.special.timestamp_begin
        self.no_ts = tokenizer.special.no_timestamps
        self.sample_begin, self.max_initial, self.max_index = sample_begin, max_initial, max_index

    def apply(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        b = self.ts_begin
        logits[:, self.no_ts] = NEG_INF
        if self.max_index is not None:
            logits[:, b + self.max_index + 1 :] = NEG_INF
        for k in range(tokens.shape[0]):
            seq = tokens[k, self.sample_begin :]
            last_ts = len(seq) >= 1 and seq[-1] >= b
            penultimate_ts = len(seq) < 2 or seq[-2] >= b
            if last_ts:
                if penultimate_ts:
                    logits[k, b:] = NEG_INF
                else:
                    logits[k, : self.eot] = NEG_INF
            stamps = seq[seq >= b]
            if stamps.size:
                floor = stamps[-1] if last_ts and not penultimate_ts else stamps[-1] + 1
                logits[k, b:floor] = NEG_INF
        if tokens.shape[1] == self.sample_begin:
            logits[:, :b] = NEG_INF
            if self.max_initial is not None:
                logits[:, b + self.max_initial + 1 :] = NEG_INF
        # Compared as logits: log-probabilities are the logits less one constant per row, which cancels.
        for k in range(tokens.shape[0]):
            if logsumexp(logits[k, b:]) > logits[k, :b].max():
                logits[k, :b] = NEG_INF


# --- token decoders -----------------------------------------------------------------------------------------

class GreedyDecoder:
    def __init__(self, temperature: float, eot: int, rng: np.random.Generator):
        self.temperature, self.eot, self.rng = temperature, eot, rng

    def reset(self) -> None:
        pass

    def update(self, tokens, logits, sum_logprobs) -> tuple[np.ndarray, np.ndarray | None, bool]:
        if self.temperature == 0:
            nxt = logits.argmax(axis=-1)
        else:
            probs = np.exp(log_softmax(logits / self.temperature))
            nxt = np.array([self.rng.choice(len(p), p=p / p.sum()) for p in probs])
        current = log_softmax_at(logits, nxt)
        done = tokens[:, -1] == self.eot
        sum_logprobs += np.where(done, 0.0, current)
        nxt = np.where(done, self.eot, nxt)
        tokens = np.concatenate([tokens, nxt[:, None]], axis=1)
        return tokens, None, bool((tokens[:, -1] == self.eot).all())

    def finalize(self, tokens: np.ndarray, sum_logprobs: np.ndarray) -> tuple[list[list[int]], list[float]]:
        return [list(t) + [self.eot] for t in tokens], list(sum_logprobs)


class BeamSearchDecoder:
    def __init__(self, beam_size: int, eot: int, patience: float = 1.0):
        self.beam_size, self.eot = beam_size, eot
        self.max_candidates = max(1, round(beam_size * patience))
        self.finished: dict[tuple[int, ...], float] = {}

    def reset(self) -> None:
        self.finished = {}

    def update(self, tokens, logits, sum_logprobs) -> tuple[np.ndarray, np.ndarray | None, bool]:
        logprobs = log_softmax(logits)
        scores: dict[tuple[int, ...], float] = {}
        sources: dict[tuple[int, ...], int] = {}
        for j in range(tokens.shape[0]):
            prefix = tuple(int(t) for t in tokens[j])
            top = np.argpartition(-logprobs[j], self.beam_size)[: self.beam_size + 1]
            for tok in top:
                seq = prefix + (int(tok),)
                scores[seq] = float(sum_logprobs[j] + logprobs[j, tok])
                sources[seq] = j
        kept, source_idx, newly_finished = [], [], {}
        for seq in sorted(scores, key=scores.get, reverse=True):
            if seq[-1] == self.eot:
                newly_finished[seq] = scores[seq]
            else:
                sum_logprobs[len(kept)] = scores[seq]
                kept.append(seq)
                source_idx.append(sources[seq])
                if len(kept) == self.beam_size:
                    break
        for seq in sorted(newly_finished, key=newly_finished.get, reverse=True):
            if len(self.finished) >= self.max_candidates:
                break
            self.finished[seq] = newly_finished[seq]
        return np.array(kept), np.array(source_idx), len(self.finished) >= self.max_candidates

    def finalize(self, tokens: np.ndarray, sum_logprobs: np.ndarray) -> tuple[list[list[int]], list[float]]:
        finished = dict(self.finished)
        if len(finished) < self.beam_size:  # not enough ended beams: take the best unfinished ones
            for j in np.argsort(-sum_logprobs):
                seq = tuple(int(t) for t in tokens[j]) + (self.eot,)
                finished.setdefault(seq, float(sum_logprobs[j]))
                if len(finished) >= self.beam_size:
                    break
        return [list(s) for s in finished], list(finished.values())


# --- ranking ------------------------------------------------------------------------------------------------

def rank(lengths: list[int], sum_logprobs: list[float], length_penalty: float | None) -> int:
    """Index of the best candidate: log-probability over a length penalty (plain length by default)."""
    def score(n: int, lp: float) -> float:
        penalty = n if length_penalty is None else ((5 + n) / 6) ** length_penalty
        return lp / max(penalty, 1)

    return int(np.argmax([score(n, lp) for n, lp in zip(lengths, sum_logprobs)]))


# --- one window ---------------------------------------------------------------------------------------------

class WindowDecoder:
    """Decodes one window's cross K/V into tokens with the given options."""

    def __init__(self, engine: WhisperEngine, tokenizer: Tokenizer, seed: int = 0):
        self.engine, self.tokenizer = engine, tokenizer
        self.rng = np.random.default_rng(seed)
        card = engine.card
        self.base_suppress = list(card.suppress_ids) + tokenizer.non_speech_specials()
        self.suppress_begin = list(card.suppress_ids_begin)
        self.n_ctx = card.dims.n_text_ctx

    def initial_tokens(self, prompt: list[int], opts: DecodingOptions) -> tuple[list[int], int]:
        sot_seq = self.tokenizer.sot_sequence(opts.language, opts.task, timestamps=not opts.without_timestamps)
        prefix = [self.tokenizer.special.sot_prev] + prompt[-(self.n_ctx // 2 - 1) :] if prompt else []
        return prefix + sot_seq, len(prefix)

    def decode(self, cross_kv: CrossKV, opts: DecodingOptions, prompt: list[int] | None = None) -> DecodingResult:
        tok = self.tokenizer
        eot = tok.special.eot
        initial, sot_index = self.initial_tokens(prompt or [], opts)
        sample_begin = len(initial)
        filters: list[LogitFilter] = [
            SuppressAtBegin(self.suppress_begin, sample_begin),
            SuppressTokens(self.base_suppress + ([] if opts.without_timestamps else [tok.special.no_timestamps])),
        ]
        if not opts.without_timestamps:
            max_index = None if opts.max_timestamp is None else int(round(opts.max_timestamp / 0.02))
            filters.append(TimestampRules(tok, sample_begin, int(round(opts.max_initial_timestamp / 0.02)), max_index))
        n = opts.beam_size if opts.temperature == 0 and opts.beam_size > 1 else 1
        decoder = (
            BeamSearchDecoder(n, eot, opts.patience) if n > 1 else GreedyDecoder(opts.temperature, eot, self.rng)
        )
        tokens = np.array([initial] * n, dtype=np.int64)
        sum_logprobs = np.zeros(n)
        cache = self.engine.empty_cache(n)
        feed = tokens
        no_speech_prob = 0.0
        budget = min(opts.max_new_tokens or self.n_ctx // 2, self.n_ctx - sample_begin)
        for step in range(budget):
            logits, cache, _ = self.engine.decode(feed, cache, cross_kv)
            if step == 0:
                no_speech_prob = float(np.exp(log_softmax(logits[0, sot_index]))[tok.special.no_speech])
            logits = logits[:, -1].astype(np.float32, copy=True)
            for f in filters:
                f.apply(logits, tokens)
            tokens, source, done = decoder.update(tokens, logits, sum_logprobs)
            if source is not None:
                cache = cache[:, source]
            if done:
                break
            feed = tokens[:, -1:]
        candidates, scores = decoder.finalize(tokens, sum_logprobs)
        candidates = [[int(t) for t in c[sample_begin : c.index(eot, sample_begin)]] for c in candidates]
        best = rank([len(c) for c in candidates], scores, opts.length_penalty)
        sampled, lp = candidates[best], scores[best]
        text = tok.decode(sampled)
        return DecodingResult(
            tokens=sampled, text=text, avg_logprob=lp / (len(sampled) + 1), sum_logprob=lp,
            no_speech_prob=no_speech_prob, temperature=opts.temperature, compression_ratio=compression_ratio(text),
        )


# --- teacher forcing ----------------------------------------------------------------------------------------

def score_continuations(engine: WhisperEngine, cross_kv: CrossKV, prefix: list[int],
                        continuations: list[list[int]], batch: int = 16) -> list[np.ndarray]:
    """The log-probability of each token of each continuation after `prefix`, given one window's encoder
    output: teacher forcing, no sampling. The prefix is decoded once; the continuations then go through the
    decoder together (right-padded: a causal decoder's earlier positions never see the padding), `batch` at
    a time to bound the (batch, length, vocab) logits."""
    logits, cache, _ = engine.decode(np.array([prefix]), engine.empty_cache(1), cross_kv)
    first = log_softmax(logits[0, -1].astype(np.float32))
    scores: list[np.ndarray] = []
    for start in range(0, len(continuations), batch):
        group = continuations[start:start + batch]
        width = max(len(c) for c in group)
        tokens = np.zeros((len(group), max(1, width - 1)), dtype=np.int64)
        for k, c in enumerate(group):
            tokens[k, :len(c) - 1] = c[:-1]  # the last token is only scored, never fed
        if width > 1:
            logits, _, _ = engine.decode(tokens, np.repeat(cache, len(group), axis=1), cross_kv)
        for k, c in enumerate(group):
            rows = [first[c[0]]]
            if len(c) > 1:
                rows += list(log_softmax_at(logits[k, :len(c) - 1].astype(np.float32), np.array(c[1:])))
            scores.append(np.array(rows, dtype=np.float64))
    return scores


def next_token_logprobs(engine: WhisperEngine, cross_kv: CrossKV, prefix: list[int], contexts: list[list[int]],
                        tokens: list[int]) -> np.ndarray:
    """(contexts, tokens): the log-probability of each token coming right after `prefix` + each context, given
    one window's encoder output. What the audio says next, for every option at once, from one decoder pass:
    a grammar's number slot asks which number follows "set a timer for" without scoring 100 sentences."""
    # The prefix's last token starts every row, so an empty context asks what follows the prefix itself.
    cache = engine.empty_cache(1)
    if len(prefix) > 1:
        _, cache, _ = engine.decode(np.array([prefix[:-1]]), cache, cross_kv)
    rows = [prefix[-1:] + c for c in contexts]
    batch = np.zeros((len(rows), max(len(r) for r in rows)), dtype=np.int64)
    for k, r in enumerate(rows):
        batch[k, :len(r)] = r
    logits, _, _ = engine.decode(batch, np.repeat(cache, len(rows), axis=1), cross_kv)
    last = logits[np.arange(len(rows)), [len(r) - 1 for r in rows]].astype(np.float32)
    return log_softmax(last)[:, tokens]

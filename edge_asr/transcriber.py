"""`Transcriber`: the class users hold. Long audio is decoded in 30 s windows with Whisper's seeking,
temperature fallback, no-speech detection and word timestamps; segments come out lazily.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_asr.alignment import align_words
from edge_asr.audio import AudioSource, audio_info, stream_audio
from edge_asr.decoding import (
    DecodingOptions,
    DecodingResult,
    WindowDecoder,
    log_softmax,
    next_token_logprobs,
    score_continuations,
)
from edge_asr.engine import CrossKV, WhisperEngine
from edge_asr.frontend import FRAMES_PER_SECOND, HOP, N_FRAMES, SAMPLE_RATE, log_mel
from edge_asr.model_dir import TOKENIZER, ModelCard
from edge_asr.models import resolve_model
from edge_asr.tokenizer import Tokenizer
from edge_asr.types import Segment, TranscriptionInfo

TIME_PER_TIMESTAMP = 0.02
# A window whose loudest sample is below -60 dBFS is silence: Whisper hallucinates on digital silence.
SILENCE_PEAK = 1e-3
MIN_TAIL_SECONDS = 0.5
INPUT_STRIDE = 2  # mel frames per audio-context position
# On the fast path a model that was not adapted to it may fail to stop; no speech needs more tokens than this
# (timestamps included), so a runaway is cut early instead of running to 224 tokens at every temperature.
FAST_PATH_TOKENS_PER_SECOND = 10
REPEATED_WORDS = 3  # a fast-path hypothesis that says the same 3 words twice is re-decoded on the full window


def fast_path_frames(audio_frames: int, pad_s: float) -> int:
    """Encoder input for a window holding `audio_frames` mel frames of audio on the fast path: the audio plus
    `pad_s` of silence, rounded up to whole seconds (few distinct shapes), never more than a full window."""
    seconds = math.ceil((audio_frames + pad_s * FRAMES_PER_SECOND) / FRAMES_PER_SECOND - 1e-9)
    return int(min(N_FRAMES, max(1, seconds) * FRAMES_PER_SECOND))


@dataclass
class TranscribeOptions:
    beam_size: int = 1
    patience: float = 1.0
    length_penalty: float | None = None
    temperature: float | tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float | None = 2.4
    log_prob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    condition_on_previous_text: bool = True
    prompt_reset_on_temperature: float = 0.5
    initial_prompt: str | None = None
    word_timestamps: bool = True
    without_timestamps: bool = False
    max_initial_timestamp: float = 1.0
    language: str | None = None
    task: str = "transcribe"
    # Encode a window that the audio ends in over only the seconds present, not 30 s: much faster for short
    # utterances. None: on when the model card says it was measured not to cost accuracy.
    fast_path: bool | None = None
    # Where the no-speech token says a window is silent but its text is likely enough to override that, let
    # Silero VAD decide whether anyone spoke (see Transcriber._is_silence).
    vad_check: bool = True
    # Silence appended after the audio on the fast path. None: the card's `fast_path.pad_s` (what the model was
    # measured, or distilled, with); more padding buys back accuracy for a slower encoder pass.
    fast_path_pad_s: float | None = None
    # A doubtful fast-path window is decoded again on the full window. Off: keep the short context's answer
    # (dictation partials: they are replaced by the final anyway, and speed is their point).
    fast_path_fallback: bool = True
    # Keep each window's encoder output on its segments (`Segment.encoder_output`) for `score_texts`.
    keep_encoder_output: bool = False

    @property
    def temperatures(self) -> tuple[float, ...]:
        t = self.temperature
        return (float(t),) if isinstance(t, (int, float)) else tuple(t)


def repeats_itself(text: str, n: int = REPEATED_WORDS) -> bool:
    """Some run of `n` words occurs twice. A short window rarely says the same three words twice, while a
    model that did not stop says its sentence again; the compression-ratio test needs far longer text."""
    words = [w for w in (re.sub(r"[^\w']", "", w.lower()) for w in text.split()) if w]
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(grams) != len(set(grams))


class _AudioBuffer:
    """A sliding window over a stream of blocks: keeps only what the decoder may still need."""

    def __init__(self, blocks: Iterator[np.ndarray]):
        self.blocks = blocks
        self.start = 0  # absolute sample index of self.data[0]
        self.data = np.zeros(0, dtype=np.float32)
        self.exhausted = False

    @property
    def end(self) -> int:
        return self.start + len(self.data)

    def fill(self, until: int) -> None:
        parts = [self.data]
        end = self.end
        while end < until and not self.exhausted:
            block = next(self.blocks, None)
            if block is None:
                self.exhausted = True
            else:
                parts.append(block)
                end += len(block)
        if len(parts) > 1:
            self.data = np.concatenate(parts)

    def get(self, a: int, b: int) -> np.ndarray:
        return self.data[max(0, a - self.start) : max(0, b - self.start)]

    def drop_before(self, a: int) -> None:
        if a > self.start:
            self.data = self.data[a - self.start :].copy()
            self.start = a


class Transcriber:
    """Speech to text with a model directory on ONNX Runtime.

    >>> segments, info = Transcriber(threads=2).transcribe("talk.wav")
    """

    def __init__(self, model: str | Path | None = None, threads: int | None = None,
                 cache_dir: str | Path | None = None):
        self.model_dir = resolve_model(model, cache_dir)
        self.card = ModelCard.load(self.model_dir)
        self.engine = WhisperEngine(self.model_dir, self.card, threads)
        self.tokenizer = Tokenizer(self.model_dir / TOKENIZER, self.card.tokens)
        self.window_decoder = WindowDecoder(self.engine, self.tokenizer)
        self._vad = None  # Silero VAD, built the first time a window's silence is in doubt

    @property
    def threads(self) -> int:
        return self.engine.threads

    def transcribe(self, audio: AudioSource, **options) -> tuple[Iterator[Segment], TranscriptionInfo]:
        """Returns (lazy segments, info). Audio problems are raised here, before any decoding."""
        try:
            opts = TranscribeOptions(**options)
        except TypeError as e:
            raise ValueError(str(e).replace("TranscribeOptions.__init__()", "transcribe()")) from None
        if opts.fast_path is None:
            opts.fast_path = self.card.fast_path.safe
        if opts.fast_path_pad_s is None:
            opts.fast_path_pad_s = self.card.fast_path.pad_s
        elif opts.fast_path_pad_s < 0:
            raise ValueError(f"fast_path_pad_s must be >= 0, got {opts.fast_path_pad_s}")
        _, duration = audio_info(audio)
        buffer = _AudioBuffer(stream_audio(audio))
        first = None  # the first window, when language detection already encoded it
        if self.card.multilingual and opts.language is None:
            first = self._encode_window(buffer, 0, opts.fast_path, opts.fast_path_pad_s)
            opts.language = self.detect_language(first[1]) if first[1] is not None else "en"
        elif not self.card.multilingual:
            opts.language = "en"
        info = TranscriptionInfo(
            language=opts.language or "en", duration=duration, model=self.card.name,
            options=dataclasses.asdict(opts),
        )
        return self._segments(buffer, opts, first), info

    def score_texts(self, encoder_output: CrossKV, texts: list[str], prefix: str = "",
                    language: str | None = "en") -> list[np.ndarray]:
        """How likely the model finds each text, as spoken in a window already encoded (a segment's
        `encoder_output`): the log-probability of each of its tokens, end of text included, after `prefix`
        (words heard before it, e.g. a wake word). Teacher forcing: the prefix once, then the texts in one
        batched decoder pass, so a grammar's candidate sentences are scored against the audio without encoding
        or decoding again. No timestamps and no prompt: texts are compared on the audio and the model's own
        sense of language alone."""
        tok = self.tokenizer
        continuations = [tok.encode(" " + t.strip()) + [tok.special.eot] for t in texts]
        return score_continuations(self.engine, encoder_output, self._forced_prefix(prefix, language),
                                   continuations)

    def next_word_logprobs(self, encoder_output: CrossKV, contexts: list[str], words: list[str], prefix: str = "",
                           language: str | None = "en") -> np.ndarray:
        """(contexts, words): how likely each word is to be spoken right after each context, in a window
        already encoded: the log-probability of the word's first token (a whole word where it is one token,
        as " 7" and " 45" are). Teacher forcing as in `score_texts`."""
        return next_token_logprobs(self.engine, encoder_output, self._forced_prefix(prefix, language),
                                   [self._spoken(c) for c in contexts],
                                   [self.tokenizer.encode(" " + w.strip())[0] for w in words])

    def _forced_prefix(self, prefix: str, language: str | None) -> list[int]:
        """Teacher forcing's start: no timestamps, no prompt, then the words heard before (a wake word)."""
        return self.tokenizer.sot_sequence(language, timestamps=False) + self._spoken(prefix)

    def _spoken(self, text: str) -> list[int]:
        """Tokens of text as the decoder writes it mid-sentence (a leading space); none for no text."""
        return self.tokenizer.encode(" " + text.strip()) if text.strip() else []

    def detect_language(self, cross_kv: CrossKV) -> str:
        tok = self.tokenizer.special
        logits, _, _ = self.engine.decode(np.array([[tok.sot]]), self.engine.empty_cache(1), cross_kv)
        langs = list(tok.languages.items())
        scores = log_softmax(logits[0, -1])[[i for _, i in langs]]
        return langs[int(np.argmax(scores))][0]

    # --- the window loop ------------------------------------------------------------------------------------

    def _encode_window(
        self, buffer: _AudioBuffer, seek: int, fast_path: bool = False, pad_s: float = 0.0
    ) -> tuple[np.ndarray, CrossKV | None]:
        buffer.fill((seek + N_FRAMES) * HOP)
        chunk = buffer.get(seek * HOP, (seek + N_FRAMES) * HOP)
        if len(chunk) < HOP or np.abs(chunk).max() < SILENCE_PEAK:
            return chunk, None  # nothing to encode
        if seek > 0 and buffer.exhausted and len(chunk) < MIN_TAIL_SECONDS * SAMPLE_RATE:
            # The previous window's timestamps already ended the speech; a sliver after them would cost a
            # whole encoder pass for no words (it doubled the latency of short clips).
            return chunk, None
        frames = N_FRAMES
        if fast_path and len(chunk) < N_FRAMES * HOP:  # the audio ends inside this window
            frames = fast_path_frames(len(chunk) // HOP, pad_s)
        mel = log_mel(chunk, self.card.dims.n_mels, pad_to=frames)
        return chunk, self.engine.encode(mel)

    def _segments(
        self, buffer: _AudioBuffer, opts: TranscribeOptions, first: tuple[np.ndarray, CrossKV | None] | None
    ) -> Iterator[Segment]:
        tok = self.tokenizer
        ts_begin = tok.special.timestamp_begin
        all_tokens: list[int] = tok.encode(" " + opts.initial_prompt.strip()) if opts.initial_prompt else []
        prompt_reset_since = 0
        seek = 0
        seg_id = 0
        while True:
            if first is None:
                first = self._encode_window(buffer, seek, opts.fast_path, opts.fast_path_pad_s)
            chunk, cross_kv = first
            first = None
            segment_size = len(chunk) // HOP
            if segment_size <= 0 or (buffer.exhausted and len(chunk) < HOP):
                return
            time_offset = seek / FRAMES_PER_SECOND
            window_duration = segment_size / FRAMES_PER_SECOND
            if cross_kv is None:  # silence
                seek += segment_size
                buffer.drop_before(seek * HOP)
                continue
            prompt = all_tokens[prompt_reset_since:]
            has_speech = self._speech_check(chunk)
            if cross_kv[0].shape[1] < self.card.dims.n_audio_ctx:  # a fast-path window
                result, cross_kv = self._decode_fast_window(chunk, cross_kv, opts, prompt, window_duration,
                                                            has_speech)
            else:
                result = self._decode_with_fallback(cross_kv, opts, prompt, window_duration, has_speech)
            previous_seek = seek
            if self._is_silence(result, opts, has_speech):
                seek += segment_size
                buffer.drop_before(seek * HOP)
                continue

            segments, seek, single_ending = self._split_segments(result, seek, segment_size, ts_begin)
            if opts.word_timestamps and segments:
                self._add_words(segments, cross_kv, segment_size, opts, time_offset)
                if not single_ending and segments[-1].words:
                    last_end = segments[-1].words[-1].end
                    if last_end > time_offset:
                        seek = round(last_end * FRAMES_PER_SECOND)
            if seek <= previous_seek:  # a window must always move forward
                seek = previous_seek + segment_size

            for s in segments:
                if s.end <= s.start or not s.text.strip():
                    continue
                if opts.keep_encoder_output:
                    s.encoder_output = cross_kv
                s.id = seg_id
                seg_id += 1
                yield s
                all_tokens.extend(s.tokens)
            if not opts.condition_on_previous_text or result.temperature > opts.prompt_reset_on_temperature:
                prompt_reset_since = len(all_tokens)
            buffer.drop_before(seek * HOP)

    def _speech_check(self, chunk: np.ndarray) -> Callable[[], bool]:
        """Whether Silero VAD hears speech in this window's audio: asked at most once, and only if needed."""
        answer: list[bool] = []

        def has_speech() -> bool:
            if not answer:
                from edge_asr.vad import SileroVad, contains_speech

                if self._vad is None:
                    self._vad = SileroVad(threads=1)
                answer.append(contains_speech(chunk, self._vad))
            return answer[0]

        return has_speech

    def _decode_fast_window(
        self, chunk: np.ndarray, cross_kv: CrossKV, opts: TranscribeOptions, prompt: list[int],
        window_duration: float, has_speech: Callable[[], bool],
    ) -> tuple[DecodingResult, np.ndarray]:
        """A first try at temperature 0 on the short context; when it looks like the short context misled the model
        (it fails Whisper's own fallback thresholds, runs into the token cap, or repeats itself: the ways an
        unadapted model goes wrong there), the window is encoded in full and decoded the normal way.
        Returns the result and the cross K/V it came from (word alignment needs the same one)."""
        cap = int(FAST_PATH_TOKENS_PER_SECOND * window_duration) + 10
        first_try = dataclasses.replace(opts, temperature=0.0)
        result = self._decode_with_fallback(cross_kv, first_try, prompt, window_duration, has_speech, cap)
        if not opts.fast_path_fallback or self._is_silence(result, opts, has_speech) or not (
            _needs_fallback(result, opts) or len(result.tokens) >= cap or repeats_itself(result.text)
        ):
            return result, cross_kv
        cross_kv = self.engine.encode(log_mel(chunk, self.card.dims.n_mels))
        return self._decode_with_fallback(cross_kv, opts, prompt, window_duration, has_speech), cross_kv

    def _decode_with_fallback(
        self, cross_kv: CrossKV, opts: TranscribeOptions, prompt: list[int], window_duration: float,
        has_speech: Callable[[], bool], max_new_tokens: int | None = None,
    ) -> DecodingResult:
        results: list[DecodingResult] = []
        for t in opts.temperatures:
            dopts = DecodingOptions(
                temperature=t, beam_size=opts.beam_size if t == 0 else 1, patience=opts.patience,
                length_penalty=opts.length_penalty, without_timestamps=opts.without_timestamps,
                max_initial_timestamp=opts.max_initial_timestamp, language=opts.language, task=opts.task,
                max_timestamp=window_duration, max_new_tokens=max_new_tokens,
            )
            result = self.window_decoder.decode(cross_kv, dopts, prompt)
            results.append(result)
            # A window found silent is skipped whatever its text, so a better decode of it is no use.
            if self._is_silence(result, opts, has_speech) or not _needs_fallback(result, opts):
                return result
        # Every temperature failed. The last sample is the most random of them, so take the likeliest decode
        # that is not a loop (faster-whisper does the same): a loop kept here would be emitted as text.
        unlooped = [r for r in results if not _too_repetitive(r, opts)]
        best = max(unlooped or results, key=lambda r: r.avg_logprob)
        # Report the last temperature tried, so the prompt is reset as after any high-temperature decode.
        return dataclasses.replace(best, temperature=results[-1].temperature)

    @staticmethod
    def _is_silence(result: DecodingResult, opts: TranscribeOptions, has_speech: Callable[[], bool]) -> bool:
        """Whisper's no-speech test, with Silero VAD as the second opinion where Whisper's two signals disagree.

        The no-speech token says nobody spoke; in openai-whisper and faster-whisper a transcript likely enough
        (avg_logprob above the threshold) overrides it. On non-speech that override is what lets the classic
        hallucinations through: tiny.en's " Thank you." over a plucked melody (no-speech 0.88, avg_logprob
        -0.9), base's " I'm sorry, I'm sorry, ..." over a pure tone (0.71, -0.2). So where the override would
        decide, the VAD decides: the text stands only if the window holds speech. Windows where the no-speech
        token is low, nearly all speech, never pay for the VAD.
        """
        if opts.no_speech_threshold is None or result.no_speech_prob <= opts.no_speech_threshold:
            return False
        if opts.log_prob_threshold is None or result.avg_logprob <= opts.log_prob_threshold:
            return True
        return opts.vad_check and not has_speech()

    def _split_segments(
        self, result: DecodingResult, seek: int, segment_size: int, ts_begin: int
    ) -> tuple[list[Segment], int, bool]:
        """Cut the window's tokens at consecutive timestamp pairs; returns segments, next seek and whether
        the window ended on a single timestamp (then the whole window is consumed)."""
        tokens = result.tokens
        time_offset = seek / FRAMES_PER_SECOND
        is_ts = [t >= ts_begin for t in tokens]
        single_ending = len(tokens) >= 2 and not is_ts[-2] and is_ts[-1]
        cuts = [i + 1 for i in range(len(tokens) - 1) if is_ts[i] and is_ts[i + 1]]

        def make(toks: list[int], start: float, end: float) -> Segment:
            text = self.tokenizer.decode(toks)
            return Segment(
                id=0, seek=seek, start=round(start, 3), end=round(end, 3), text=text, tokens=toks,
                temperature=result.temperature, avg_logprob=result.avg_logprob,
                compression_ratio=result.compression_ratio, no_speech_prob=result.no_speech_prob,
            )

        segments: list[Segment] = []
        if cuts:
            if single_ending:
                cuts.append(len(tokens))
            last = 0
            for cut in cuts:
                piece = tokens[last:cut]
                start = time_offset + (piece[0] - ts_begin) * TIME_PER_TIMESTAMP
                end = time_offset + (piece[-1] - ts_begin) * TIME_PER_TIMESTAMP
                segments.append(make(piece, start, end))
                last = cut
            if single_ending:
                seek += segment_size
            else:
                seek += (tokens[last - 1] - ts_begin) * INPUT_STRIDE
        else:
            duration = segment_size / FRAMES_PER_SECOND
            stamps = [t for t in tokens if t >= ts_begin]
            if stamps and stamps[-1] != ts_begin:
                duration = (stamps[-1] - ts_begin) * TIME_PER_TIMESTAMP
            segments.append(make(tokens, time_offset, time_offset + duration))
            seek += segment_size
        return segments, seek, single_ending

    def _add_words(
        self, segments: list[Segment], cross_kv: CrossKV, segment_size: int, opts: TranscribeOptions,
        time_offset: float,
    ) -> None:
        eot = self.tokenizer.special.eot
        per_segment = [[t for t in s.tokens if t < eot] for s in segments]
        text_tokens = [t for toks in per_segment for t in toks]
        sot_seq = self.tokenizer.sot_sequence(opts.language, opts.task, timestamps=True)
        timings = align_words(self.engine, self.tokenizer, cross_kv, sot_seq, text_tokens, segment_size)
        index = 0
        for segment, toks in zip(segments, per_segment):
            words, covered = [], 0
            while index < len(timings) and covered < len(toks):
                word, n = timings[index]
                word.start = round(time_offset + word.start, 3)
                word.end = round(time_offset + word.end, 3)
                if word.word.strip():
                    words.append(word)
                covered += n
                index += 1
            if words:  # segment edges from its words: tighter than the timestamp tokens
                segment.start = words[0].start
                segment.end = max(words[-1].end, segment.start)
            segment.words = words


def _too_repetitive(result: DecodingResult, opts: TranscribeOptions) -> bool:
    threshold = opts.compression_ratio_threshold
    return threshold is not None and result.compression_ratio > threshold


def _needs_fallback(result: DecodingResult, opts: TranscribeOptions) -> bool:
    """Whisper's test for a failed decode: a loop, or text the model itself finds unlikely.

    A high no-speech probability alone must not excuse a failed decode (this code used to stop the fallback
    on it, as openai-whisper once did): the no-speech token is high wherever a window holds little speech,
    e.g. the short last window of an utterance, and exactly there a beam at temperature 0 loops on a likely
    phrase (compression ratio 8-15, avg_logprob -0.2), which the silence test then kept because its
    log-probability is high. Only a window judged silent (`Transcriber._is_silence`) ends the fallback early;
    openai-whisper and faster-whisper also require the unlikely text for that.
    """
    unlikely = opts.log_prob_threshold is not None and result.avg_logprob < opts.log_prob_threshold
    return _too_repetitive(result, opts) or unlikely

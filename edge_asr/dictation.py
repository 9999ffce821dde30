"""Streaming dictation: VAD cuts the stream into utterances; while one is spoken, a partial hypothesis about
every second, of which only the prefix that two consecutive hypotheses agree on is committed (local
agreement); at the end of speech the utterance is finalized.

`Dictation(transcriber, section).run(frames)` yields events as plain dicts (the CLI prints each as a JSON
line), in this order per utterance: partials (zero or more), then one final.
  {"event": "partial", "utterance", "start", "t", "committed", "tentative", "text", "compute_s"}
  {"event": "final", "utterance", "start", "end", "t", "text", "revised", "endpoint_s", "compute_s", "wait_s",
   ("source": "local" | "cloud", "escalation": {...}: with an escalation policy, as transcribe's segments)}
Times without `_s` are seconds into the stream: `start`/`end` of speech; `t` is how much audio had arrived
when the event was computed. `compute_s` is wall time spent on that hypothesis. `endpoint_s` is the silence
the VAD waited for before calling the end; `wait_s`, the wall time from then (on a live stream: from when that
audio arrived) to the final. The final's audio ends `tail_s` after the last speech frame, so it is transcribed
as soon as that much silence is in, while the VAD waits out the rest of `trailing_silence_s`: the final then
costs no time after the endpoint unless its transcription outlasts the wait (or the speaker goes on, and the
next pause is transcribed again).
`committed` only ever grows within an utterance; the final text is the hypothesis over the whole utterance
and usually extends it (`revised`: it disagreed with an already committed word, so a display that showed
the partial should replace that line).
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from edge_asr.ahead import AheadOfEndpoint
from edge_asr.errors import ConfigError

SAMPLE_RATE = 16000
MAX_UTTERANCE_S = 28.0  # one Whisper window, with room for pre-roll and tail


@dataclass
class DictateSection:
    """The `dictate:` section of the config."""

    model: str | None = None  # default: transcribe.model, else the built-in one
    threads: int | None = None  # default: transcribe.threads, else 2
    partial_interval_s: float = 1.0  # a partial hypothesis about this often while someone speaks
    # The first one sooner: the first words on screen are what makes dictation feel live, and one short
    # partial costs little (its last word is never committed, so a cut-off word does no harm).
    first_partial_s: float = 0.7
    vad_threshold: float = 0.5
    trailing_silence_s: float = 0.6  # this much silence ends an utterance
    max_utterance_s: float = 15.0  # longer speech is cut into utterances of at most this
    pre_roll_s: float = 0.3  # audio kept from before the VAD's speech start (onsets are quiet)
    tail_s: float = 0.3  # silence kept after the last speech frame
    beam_size: int = 1  # for finals; partials are always greedy
    fast_path: bool | None = None  # None: the model card decides
    fast_path_pad_s: float | None = None  # silence after the audio on the fast path; None: the model card's
    # Partials are tentative (the final replaces them), so they take the fast path without its full-window
    # re-decode (several times faster: the first words show up sooner, more partials fit in) even where the
    # card keeps finals on the full window.
    partial_fast_path: bool = True
    language: str | None = None
    word_timestamps: bool = False  # finals carry words with times (costs one more decoder pass)

    def check(self, source: str = "config") -> DictateSection:
        """Ranges the type check cannot see; raises ConfigError naming the key."""
        if not 0 < self.max_utterance_s <= MAX_UTTERANCE_S:
            raise ConfigError(f"{source}: 'dictate.max_utterance_s' must be in (0, {MAX_UTTERANCE_S}], "
                              f"got {self.max_utterance_s}")
        for key in ("partial_interval_s", "first_partial_s", "trailing_silence_s"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{source}: 'dictate.{key}' must be positive, got {getattr(self, key)}")
        if self.fast_path_pad_s is not None and self.fast_path_pad_s < 0:
            raise ConfigError(f"{source}: 'dictate.fast_path_pad_s' must be >= 0, got {self.fast_path_pad_s}")
        if not 0 < self.vad_threshold < 1:
            raise ConfigError(f"{source}: 'dictate.vad_threshold' must be in (0, 1), got {self.vad_threshold}")
        return self


def _norm(word: str) -> str:
    return re.sub(r"[^\w']", "", word.lower())


def agreed_prefix(previous: list[str], current: list[str]) -> int:
    """How many leading words two hypotheses share (case and punctuation aside)."""
    n = 0
    for a, b in zip(previous, current):
        if _norm(a) != _norm(b):
            break
        n += 1
    return n


def extend_committed(committed: list[str], hypothesis: list[str]) -> tuple[list[str], bool]:
    """The words of `hypothesis` that come after what was committed, and whether it disagreed with it.

    Usually the hypothesis starts with the committed words. When it does not, the committed words are kept
    (they were shown already) and the hypothesis continues from where its best match with them ends.
    """
    k = agreed_prefix(committed, hypothesis)
    if k == len(committed):
        return hypothesis[k:], False
    matcher = difflib.SequenceMatcher(a=[_norm(w) for w in committed], b=[_norm(w) for w in hypothesis],
                                      autojunk=False)
    blocks = [b for b in matcher.get_matching_blocks() if b.size]
    if not blocks:
        return hypothesis[len(committed):], True
    last = blocks[-1]
    return hypothesis[last.b + last.size + (len(committed) - last.a - last.size):], True


class _Utterance:
    def __init__(self, index: int, start: float, audio: np.ndarray, audio_start: float) -> None:
        self.index = index
        self.start = start  # where the VAD heard speech start
        self.audio_start = audio_start  # stream time of the first kept sample (pre-roll included)
        self.chunks = [audio]
        self.committed: list[str] = []
        self.previous: list[str] | None = None
        self.next_partial_t = 0.0
        self.partials = 0

    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks) if len(self.chunks) > 1 else self.chunks[0]


class Dictation:
    """Feed frames (any fixed size; 80 ms from edge_asr.stream), get partial and final events."""

    def __init__(self, transcriber, section: DictateSection | None = None, vad=None, live: bool = True,
                 policy=None) -> None:
        """`live`: frames arrive in real time (a microphone, a paced file), so when transcription falls behind,
        partials are skipped rather than delaying everything after them. `policy` (an EscalationPolicy): a
        final the device is unsure of is re-done by the cloud; partials never leave the device."""
        from edge_asr.vad import Endpointer

        self.transcriber = transcriber
        self.policy = policy
        self.live = live
        self.section = section = (section or DictateSection()).check()
        self.endpointer = Endpointer(vad, threshold=section.vad_threshold,
                                     trailing_silence_s=section.trailing_silence_s,
                                     max_speech_s=section.max_utterance_s)
        self.t = 0.0
        self._recent: list[np.ndarray] = []  # frames before speech starts: the pre-roll
        self._recent_samples = 0
        self._utterance: _Utterance | None = None
        self._count = 0
        self._wall_start: float | None = None
        # The final is transcribed once `tail_s` of silence is in, while the VAD waits out the rest of
        # `trailing_silence_s`. In this loop, not on a worker thread: partials use the same transcriber.
        self._final_ahead: AheadOfEndpoint[tuple[list, float]] = AheadOfEndpoint(self._final_of, threaded=False)

    def run(self, frames: Iterable[np.ndarray]) -> Iterator[dict]:
        for frame in frames:
            yield from self.feed(frame)
        yield from self.finish()

    def feed(self, frame: np.ndarray) -> Iterator[dict]:
        if self._wall_start is None:
            self._wall_start = time.monotonic() - len(frame) / SAMPLE_RATE
        self.t += len(frame) / SAMPLE_RATE
        arrived = self._wall_start + self.t if self.live else time.monotonic()
        events = self.endpointer.feed(frame)
        utt = self._utterance
        if utt is not None:
            utt.chunks.append(frame)
        else:
            self._remember(frame)
        for event in events:
            if event.kind == "start":
                utt = self._begin(event.t)
            elif event.kind == "end" and utt is not None:
                yield from self._finalize(utt, event.t, arrived)
                utt = None
        end = self._speech_end()
        if utt is not None and end is not None and self._final_audio_complete(end):
            self._final_ahead.start(end, self._final_audio(utt, end))
        elif utt is not None and self.t >= utt.next_partial_t and not (self.live and self._behind()):
            event = self._partial(utt)
            if event is not None:
                yield event

    def finish(self) -> Iterator[dict]:
        for event in self.endpointer.flush():
            if self._utterance is not None:
                yield from self._finalize(self._utterance, event.t, time.monotonic())

    # --- utterances -----------------------------------------------------------------------------------------

    def _remember(self, frame: np.ndarray) -> None:
        self._recent.append(frame)
        self._recent_samples += len(frame)
        keep = int((self.section.pre_roll_s + 0.5) * SAMPLE_RATE)  # + the VAD's look-back to its start
        while self._recent and self._recent_samples - len(self._recent[0]) >= keep:
            self._recent_samples -= len(self._recent.pop(0))

    def _begin(self, start: float) -> _Utterance:
        """Speech started at stream time `start` (detected a little later); keep audio from `start - pre_roll`."""
        recent = np.concatenate(self._recent) if self._recent else np.zeros(0, np.float32)
        recent_start = self.t - len(recent) / SAMPLE_RATE
        begin = max(recent_start, start - self.section.pre_roll_s)
        audio = recent[int(round((begin - recent_start) * SAMPLE_RATE)):]
        self._recent, self._recent_samples = [], 0
        utt = _Utterance(self._count, start, audio, begin)
        utt.next_partial_t = start + self.section.first_partial_s
        self._count += 1
        self._utterance = utt
        return utt

    def _behind(self) -> bool:
        assert self._wall_start is not None
        lag = (time.monotonic() - self._wall_start) - self.t
        return lag > self.section.partial_interval_s

    def _transcribe(self, audio: np.ndarray, final: bool) -> list:
        s = self.section
        fast_path = s.fast_path if final or not s.partial_fast_path else True
        # With escalation, finals have word probabilities: the confidence and benefit were fitted with them.
        words = s.word_timestamps or self.policy is not None
        options = dict(beam_size=s.beam_size if final else 1, word_timestamps=final and words,
                       language=s.language, fast_path=fast_path, fast_path_pad_s=s.fast_path_pad_s,
                       condition_on_previous_text=False)
        if not final:
            # Audio cut mid-word often looks doubtful; re-decoding it in full would make most partials slower
            # than the full window alone (7 of 10 were, in a 6-utterance stream).
            options["fast_path_fallback"] = False
        if not final:
            options["temperature"] = 0.0  # a partial is soon replaced: no fallback
        segments, _ = self.transcriber.transcribe(audio, **options)
        return list(segments)

    def _partial(self, utt: _Utterance) -> dict | None:
        began = time.monotonic()
        words = _words(self._transcribe(utt.audio(), final=False))
        # Never commit the last word: the audio may end inside it.
        if utt.previous is not None:
            agreed = agreed_prefix(utt.previous, words[:-1])
            if agreed > len(utt.committed):
                new, _ = extend_committed(utt.committed, words[:agreed])
                utt.committed = utt.committed + new
        utt.previous = words
        tentative, _ = extend_committed(utt.committed, words)
        utt.next_partial_t = self.t + self.section.partial_interval_s
        if not words:
            return None
        utt.partials += 1
        return {"event": "partial", "utterance": utt.index, "start": utt.start, "t": round(self.t, 3),
                "committed": " ".join(utt.committed), "tentative": " ".join(tentative),
                "text": " ".join(utt.committed + tentative), "compute_s": round(time.monotonic() - began, 3)}

    def _final_audio_complete(self, end: float) -> bool:
        """The speaker has been silent for `tail_s`: the final's audio is all in, though the VAD is still
        waiting to call the end (and this pause is not transcribed yet)."""
        return self.t - end >= self.section.tail_s - 1e-9 and not self._final_ahead.started(end)

    def _speech_end(self) -> float | None:
        """Where the last speech frame ended, as the endpointer's end event will say it."""
        end = self.endpointer.last_speech_end
        return None if end is None else round(end, 3)

    def _final_audio(self, utt: _Utterance, end: float) -> np.ndarray:
        """The utterance's audio up to `tail_s` after speech ending at `end`."""
        keep = int(round((end + self.section.tail_s - utt.audio_start) * SAMPLE_RATE))
        return utt.audio()[: max(1, keep)]

    def _final_of(self, audio: np.ndarray) -> tuple[list, float]:
        """(segments, compute_s) of the final over `audio`."""
        began = time.monotonic()
        segments = self._transcribe(audio, final=True)
        return segments, time.monotonic() - began

    def _finalize(self, utt: _Utterance, end: float, arrived: float) -> Iterator[dict]:
        self._utterance = None
        audio = self._final_audio(utt, end)
        segments, compute_s = self._final_ahead.result(end, audio)
        if self.policy is not None:  # only the final, once the endpoint is sure: drafts never go up
            began = time.monotonic()
            language = self.section.language or (None if self.transcriber.card.multilingual else "en")
            segments = list(self.policy.route(segments, audio, language))
            compute_s += time.monotonic() - began
        words = _words(segments)
        _, revised = extend_committed(utt.committed, words)
        # The final is the record (the line written to --output): the hypothesis over the whole utterance, not
        # the committed words, which came from partials on truncated audio and, on a live stream, depend on
        # which partials the machine had time for. `revised` tells a display that shown words changed.
        text = " ".join(words or utt.committed)
        if not text and not utt.partials:
            return  # the VAD fired on something that is no speech
        event = {"event": "final", "utterance": utt.index, "start": utt.start, "end": end, "t": round(self.t, 3),
                 "text": text, "revised": revised, "endpoint_s": round(self.t - end, 3),
                 "compute_s": round(compute_s, 3), "wait_s": round(max(0.0, time.monotonic() - arrived), 3)}
        if self.section.word_timestamps:
            event["words"] = [
                {"word": w.word.strip(), "start": round(utt.audio_start + w.start, 3),
                 "end": round(utt.audio_start + w.end, 3), "probability": round(w.probability, 3)}
                for seg in segments for w in seg.words or []
            ]
        if self.policy is not None and segments:
            event["source"] = segments[0].source
            event["escalation"] = segments[0].extra.get("escalation")
        yield event


def _words(segments) -> list[str]:
    return "".join(seg.text for seg in segments).split()

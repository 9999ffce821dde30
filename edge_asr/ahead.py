"""Transcribe ahead of the endpoint.

An endpointer calls the end of speech only after `trailing_silence_s` of silence, but the audio of the speech
is complete as soon as the pause begins. Transcribing it then hides most of the transcription inside the
silence the endpointer waits for anyway; if the pause turns out to be the end, its result is ready (or nearly
so) at the endpoint. If the speaker goes on, the result is stale and the next pause gets its own. Results
are keyed by where the speech before the pause ended, so the endpoint takes one only when no speech came
after it. `dictate` (finals) and `listen` (commands) both work this way.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


class AheadOfEndpoint(Generic[T]):
    """`work(audio)` for the speech up to a pause, started when the pause begins, reused at the endpoint.

    `threaded`: jobs run one at a time on one worker thread, so the caller's frame loop keeps reading audio
    meanwhile (listen) and `work` is never run by two threads at once; otherwise `start` runs `work` at once
    in the caller (dictate: its partials use the same transcriber in the same loop).
    """

    def __init__(self, work: Callable[[np.ndarray], T], threaded: bool) -> None:
        self._work = work
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transcribe-ahead") if threaded else None
        self._job: Future[T] | None = None
        self._key: float | None = None

    def start(self, speech_end_t: float, audio: np.ndarray) -> None:
        if self._key == speech_end_t:
            return  # already started for this pause
        # The speaker went on after the previous pause: its job is stale. Dropped if it has not begun; one
        # that runs is finished first (the endpoint would wait for it anyway), and this pause's job follows,
        # so the pause that ends the speech always has its own result, on a slow machine as on a fast one.
        if self._job is not None:
            self._job.cancel()
        self._key, self._job = speech_end_t, self._submit(audio)

    def started(self, speech_end_t: float) -> bool:
        return self._job is not None and self._key == speech_end_t

    def wait(self, speech_end_t: float) -> T | None:
        """The result for this pause, waiting for it if it is still running (None: no job for this pause).
        The caller's frames queue meanwhile; waiting costs no latency, as the endpoint would wait for this
        same job, and the caller can act the moment the result is there, not at the next frame."""
        return self._job.result() if self._job is not None and self._key == speech_end_t else None

    def result(self, speech_end_t: float | None, audio: np.ndarray) -> T:
        """At the endpoint: the pause's result if it covered all the speech there is, else `work(audio)` now."""
        job, key = self._job, self._key
        self._job = self._key = None
        if job is not None:
            done = job.result()  # a running job is finished first: `work` is never run twice at once
            if key == speech_end_t:
                return done
        return self._work(audio)

    def _submit(self, audio: np.ndarray) -> Future[T]:
        if self._pool is not None:
            return self._pool.submit(self._work, audio)
        done: Future[T] = Future()
        done.set_result(self._work(audio))
        return done

"""The interface every speech recogniser implements: a turn's audio in, partial and final text out.

An engine is opened once (a model loaded, a directory checked) and then runs one ``AsrStream`` per turn:
the caller feeds int16 mono PCM at ``sample_rate`` as it arrives, ``finish`` when the turn ends gives the
final text, ``cancel`` drops the turn (barge-in, teardown). Partial text goes to an ``on_partial``
callback on the event loop's thread as the hypothesis improves. Every engine keeps at most
``MAX_TURN_S`` of a turn's audio; the rest is dropped (and logged once), so a stuck-open microphone
cannot grow memory without bound.

``ThreadedStream`` is the machinery of the engines whose recogniser is a blocking library (pocketsphinx,
FunASR in-process): the turn runs as one job on the engine's single worker thread, so the recogniser is
only ever touched by that thread and a second turn waits for the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, ClassVar, Final, TypeVar

import numpy as np

log = logging.getLogger(__name__)

MAX_TURN_S: Final = 60.0  # audio kept per turn; a longer turn is cut here
PARTIAL_EVERY_S: Final = 0.1  # a threaded recogniser's hypothesis is read at most this often

T = TypeVar("T")
S = TypeVar("S", bound="ThreadedStream")


class AsrError(Exception):
    """A recogniser failed; the message says what to fix (the directory, URL or package it names)."""


@dataclass(frozen=True)
class Transcript:
    """What was heard: ``final`` once the turn is over, partial (``final=False``) while it goes on."""

    text: str
    final: bool
    engine: str


PartialCallback = Callable[[Transcript], None]


class AsrStream(ABC):
    """One turn of speech being recognised; its owner ends it with ``finish`` or ``cancel``."""

    @abstractmethod
    def feed(self, pcm: np.ndarray) -> None:
        """Queue int16 mono PCM; returns at once (the work happens in the background)."""

    @abstractmethod
    async def finish(self) -> Transcript:
        """The turn is over: the final text (``final=True``). Raises ``AsrError`` on failure or timeout."""

    @abstractmethod
    async def cancel(self) -> None:
        """Drop the turn and release what it holds; idempotent, and harmless after ``finish``."""


class AsrEngine(ABC):
    """A speech recogniser, chosen by ``name`` in ``voice_in.asr.engine``."""

    name: ClassVar[str]
    sample_rate: ClassVar[int] = 16000

    @abstractmethod
    async def open(self) -> None:
        """Load the model or check the configuration; ``AsrError`` says what is missing."""

    @abstractmethod
    def stream(self, on_partial: PartialCallback | None = None) -> AsrStream:
        """Start a turn (call it on the event loop's thread)."""

    @abstractmethod
    async def close(self) -> None:
        """Cancel the turns still open and release models, threads and sockets."""


def as_pcm(pcm: np.ndarray) -> np.ndarray:
    """``pcm`` as a flat int16 array; other sample formats are the caller's bug, not converted."""
    if pcm.dtype != np.int16:
        raise ValueError(f"ASR audio must be int16 PCM, got {pcm.dtype}")
    if pcm.ndim > 1 and pcm.shape[1:] != (1,):
        raise ValueError(f"ASR audio must be mono, got shape {pcm.shape}")
    return pcm.reshape(-1)


class TurnLimit:
    """Counts a turn's samples and cuts what goes past ``MAX_TURN_S`` (logged once per turn)."""

    def __init__(self, engine: str, rate: int = 16000, max_s: float = MAX_TURN_S) -> None:
        self.engine = engine
        self.max_s = max_s
        self.max_samples = round(max_s * rate)
        self.samples = 0
        self._warned = False

    def take(self, pcm: np.ndarray) -> np.ndarray:
        """The part of ``pcm`` that fits in the turn (empty once it is full)."""
        room = self.max_samples - self.samples
        if len(pcm) > room:
            if not self._warned:
                self._warned = True
                log.warning(
                    "asr %s: turn longer than %g s, the rest of its audio is dropped",
                    self.engine,
                    self.max_s,
                )
            pcm = pcm[: max(room, 0)]
        self.samples += len(pcm)
        return pcm


class TurnAudio:
    """A turn's audio kept whole (bounded by ``TurnLimit``), for a recogniser that reads it at the end."""

    def __init__(self, engine: str) -> None:
        self.limit = TurnLimit(engine)
        self._parts: list[np.ndarray] = []

    def add(self, pcm: np.ndarray) -> np.ndarray:
        """Keep ``pcm`` (what fits); returns the part kept."""
        kept = self.limit.take(pcm)
        if len(kept):
            self._parts.append(kept.copy())
        return kept

    @property
    def samples(self) -> int:
        """Samples kept so far."""
        return self.limit.samples

    def pcm(self) -> np.ndarray:
        """Everything kept, one int16 array."""
        return np.concatenate(self._parts) if self._parts else np.zeros(0, np.int16)


class _End:
    """The queue marker that ends a turn's job: ``keep`` finishes it, otherwise it is dropped."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep


class ThreadedStream(AsrStream):
    """A turn decoded by a blocking recogniser as one job on the engine's worker thread.

    The job starts the utterance, takes audio from a thread-safe queue, reads the hypothesis at most
    every ``PARTIAL_EVERY_S`` of audio (handed to the loop with ``call_soon_threadsafe``) and ends at the
    queue's end marker. Subclasses give the recogniser's four steps; they run on the worker thread only.
    """

    def __init__(
        self,
        engine: str,
        worker: Worker,
        on_partial: PartialCallback | None,
        on_done: Callable[[ThreadedStream], None],
    ) -> None:
        self.engine = engine
        self._loop = asyncio.get_running_loop()
        self._on_partial = on_partial
        self._on_done = on_done
        self._limit = TurnLimit(engine)
        self._audio: queue.SimpleQueue[np.ndarray | _End] = queue.SimpleQueue()
        self._state = "open"  # open -> finishing -> done | cancelled
        self._job: Future[str | None] = worker.submit(self._work)

    @abstractmethod
    def _begin(self) -> None:
        """Start an utterance (worker thread)."""

    @abstractmethod
    def _process(self, pcm: np.ndarray) -> None:
        """Decode more audio (worker thread)."""

    @abstractmethod
    def _hypothesis(self) -> str:
        """The text so far, "" if none or if the recogniser gives no partials (worker thread)."""

    @abstractmethod
    def _end(self) -> str:
        """End the utterance: the final text (worker thread)."""

    def _abort(self) -> None:
        """Drop the utterance, leaving the recogniser ready for the next (worker thread)."""

    def feed(self, pcm: np.ndarray) -> None:
        """Queue audio for the worker; dropped once the turn is over or full."""
        if self._state != "open":
            return
        pcm = self._limit.take(as_pcm(pcm))
        if len(pcm):
            self._audio.put(pcm.copy())

    async def finish(self) -> Transcript:
        """Decode what is queued and end the utterance."""
        if self._state != "open":
            raise AsrError(f"{self.engine}: the turn is already {self._state}")
        self._state = "finishing"
        self._audio.put(_End(keep=True))
        try:
            text = await asyncio.wrap_future(self._job)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            # cancel() unqueued the job before it started
            raise AsrError(f"{self.engine}: the turn was cancelled") from None
        except AsrError:
            raise
        except Exception as exc:
            log.exception("asr %s: decoding failed", self.engine)
            raise AsrError(f"{self.engine}: decoding failed: {exc}") from exc
        finally:
            if self._state == "finishing":
                self._state = "done"
            self._on_done(self)
        if text is None:  # cancelled while finishing
            raise AsrError(f"{self.engine}: the turn was cancelled")
        return Transcript(text, True, self.engine)

    async def cancel(self) -> None:
        """Stop the job (or unqueue it if it has not started) and wait until the worker has let go."""
        if self._state in {"done", "cancelled"}:
            return
        self._state = "cancelled"
        if not self._job.cancel():
            self._audio.put(_End(keep=False))
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.wrap_future(self._job))
        self._on_done(self)

    @property
    def active(self) -> bool:
        """Whether the worker still has (or will have) this turn's job."""
        return not self._job.done()

    def _work(self) -> str | None:
        self._begin()
        try:
            return self._decode()
        except BaseException:
            with contextlib.suppress(Exception):
                self._abort()
            raise

    def _decode(self) -> str | None:
        unread = 0
        every = round(PARTIAL_EVERY_S * 16000)
        heard = ""
        while True:
            batch, end = self._take()
            if end is not None and not end.keep:
                self._abort()
                return None
            if batch:
                pcm = np.concatenate(batch) if len(batch) > 1 else batch[0]
                self._process(pcm)
                unread += len(pcm)
            if end is not None:
                return self._end()
            if unread >= every and self._on_partial is not None:
                unread = 0
                text = self._hypothesis()
                if text and text != heard:
                    heard = text
                    self._send_partial(text)

    def _take(self) -> tuple[list[np.ndarray], _End | None]:
        """What is queued (waiting for at least one item), up to and including an end marker."""
        batch: list[np.ndarray] = []
        item = self._audio.get()
        while True:
            if isinstance(item, _End):
                return batch, item
            batch.append(item)
            try:
                item = self._audio.get_nowait()
            except queue.Empty:
                return batch, None

    def _send_partial(self, text: str) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody listens any more
            self._loop.call_soon_threadsafe(self._deliver, text)

    def _deliver(self, text: str) -> None:
        if self._state not in {"open", "finishing"} or self._on_partial is None:
            return
        try:
            self._on_partial(Transcript(text, False, self.engine))
        except Exception:
            log.exception("asr %s: the partial-text callback failed", self.engine)


class Worker:
    """One daemon thread running jobs in order: a recogniser that must only be touched by one thread.

    A daemon, so a turn its owner forgot to end cannot hold the process open at exit; ``stop`` is the
    orderly end (after the turns are cancelled).
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Queue ``fn``; its future can be cancelled until it starts."""
        future: Future[T] = Future()
        self._jobs.put((future, fn))
        return future

    def stop(self) -> None:
        """Let the queued jobs run, then end the thread (blocking: call it off the loop)."""
        self._jobs.put(None)
        self._thread.join()

    @property
    def alive(self) -> bool:
        """Whether the thread is still running."""
        return self._thread.is_alive()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except BaseException as exc:  # handed to whoever awaits the job
                future.set_exception(exc)
            else:
                future.set_result(result)


class ThreadedEngine(AsrEngine):
    """An engine whose recogniser lives on one worker thread; it owns that thread and its open turns."""

    def __init__(self) -> None:
        self._thread: Worker | None = None
        self._streams: set[ThreadedStream] = set()

    def _worker(self) -> Worker:
        if self._thread is None:
            self._thread = Worker(f"asr-{self.name}")
        return self._thread

    async def _load(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the worker thread, where the model it loads will be used.

        If it fails, or is cancelled, the thread is stopped again: a failed ``open`` leaves nothing
        running. A load cancelled while it ran still finishes on the thread; what it made (a decoder
        child process) is handed to ``_discard``, since nobody else will ever see it.
        """
        job = self._worker().submit(fn)
        try:
            return await asyncio.wrap_future(job)
        except BaseException:
            await self.close()  # the worker has run (or dropped) the job once this returns
            if job.done() and not job.cancelled() and job.exception() is None:
                self._discard(job.result())
            raise

    def _discard(self, loaded: object) -> None:
        """Release what a cancelled ``_load`` made (the default: nothing to release)."""

    def _track(self, stream: S) -> S:
        self._streams.add(stream)
        return stream

    def _untrack(self, stream: ThreadedStream) -> None:
        self._streams.discard(stream)

    async def close(self) -> None:
        """Cancel the open turns, then stop the worker thread and drop the model."""
        for stream in list(self._streams):
            await stream.cancel()
        if self._thread is not None:
            worker, self._thread = self._thread, None
            await asyncio.to_thread(worker.stop)
        self._release()

    def _release(self) -> None:
        """Drop the model once the worker has stopped."""

"""The interface every TTS engine implements: text in, a stream of PCM chunks (with timings) out.

An engine streams so the program can start speaking a sentence while the rest of it is synthesised.
Chunks may be any rate, mono or stereo, int16 or float; the speech writer resamples them to the program
rate. Timings are optional: phonemes (what the mouth does) and words (what was said, for subtitles and
for cutting the transcript at an interrupt), both in seconds from the start of the text's audio.
Cancelling the task that iterates ``stream`` must abort the engine's work and close its connection.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from broadcaster.voice.speech_track import Phoneme


class TtsError(Exception):
    """An engine could not speak a text (server down, bad answer, bad voice); the chain tries the next."""


@dataclass(frozen=True)
class TtsChunk:
    """A piece of synthesised audio and the timings that fall in it (seconds from the text's start)."""

    pcm: np.ndarray
    rate: int
    phonemes: tuple[Phoneme, ...] = ()
    words: tuple[Phoneme, ...] = ()


class TtsEngine(ABC):
    """A TTS engine, chosen by ``name`` in ``voice.engines``."""

    name: ClassVar[str]

    @property
    @abstractmethod
    def settings_key(self) -> str:
        """The voice and every setting that changes the audio (the cache key, with the text)."""

    @abstractmethod
    def stream(self, text: str) -> AsyncIterator[TtsChunk]:
        """Synthesise ``text``; yields chunks as they are ready. Raises ``TtsError`` on failure."""

    async def aclose(self) -> None:  # noqa: B027 (optional hook)
        """Release sessions, threads or models the engine holds."""


async def from_worker(
    queue: asyncio.Queue[TtsChunk | TtsError | None],
    worker: asyncio.Future[None],
    cancel: Callable[[], None],
) -> AsyncGenerator[TtsChunk, None]:
    """The chunks a synthesis thread puts on ``queue`` (None ends the text, a ``TtsError`` fails it).

    However the stream ends (done, failed, cancelled or closed early) the thread is told to ``cancel``
    and waited for, so the synthesiser is free again when the stream is.
    """
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, TtsError):
                raise item
            yield item
    finally:
        cancel()
        await asyncio.shield(worker)

"""The TTS fallback chain: the primary engine speaks, the next one takes over when it fails or stalls.

A sentence goes to the first engine (or straight from the cache when that engine said it before). If
the engine raises, or sends no audio within ``first_audio_timeout_s``, or stalls for ``timeout_s``
between chunks, the sentence goes to the next engine; nothing is dropped silently: each failure is
counted and logged, and a sentence no engine could speak raises ``TtsError`` for the caller to log.
An engine that fails after some audio already went out is retried from the sentence's start by the
next one (the caller is told through ``restart``, so it can discard the partial audio it queued).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

from broadcaster.latency import RecentLatency
from broadcaster.voice.audio_guard import AudioGuard, GarbageAudio
from broadcaster.voice.cache import AudioCache
from broadcaster.voice.tts.base import TtsChunk, TtsEngine, TtsError

log = logging.getLogger(__name__)

REST_AFTER = 2  # failures in a row before an engine rests behind the others
REST_S = 5.0
REST_MAX_S = 60.0


@dataclass
class EngineStats:
    """One engine's counters."""

    sentences: int = 0
    failures: int = 0
    timeouts: int = 0
    garbage: int = 0  # answers that were not speech (see audio_guard)
    failing: int = 0  # failures in a row: 0 once it speaks a sentence again
    last_error: str = ""
    resting_until: float = 0.0  # monotonic: until then it is tried after the others
    first_audio: RecentLatency = field(default_factory=RecentLatency)

    def as_dict(self) -> dict[str, Any]:
        """For the status line and the run summary."""
        return {
            "sentences": self.sentences,
            "failures": self.failures,
            "timeouts": self.timeouts,
            "garbage": self.garbage,
            "failing": self.failing,
            "last_error": self.last_error,
            "first_audio_p50_ms": self.first_audio.p50(),
        }


@dataclass(frozen=True)
class Spoken:
    """A chunk and the engine it came from; ``restart``: drop what was queued for this sentence so far."""

    chunk: TtsChunk
    engine: str
    restart: bool = False


class TtsChain:
    """Engines in order of preference, with an optional cache in front of each."""

    def __init__(
        self,
        engines: Sequence[TtsEngine],
        first_audio_timeout_s: float,
        timeout_s: float,
        cache: AudioCache | None = None,
    ) -> None:
        if not engines:
            raise ValueError("a TTS chain needs at least one engine")
        self.engines = list(engines)
        self.first_audio_timeout_s = first_audio_timeout_s
        self.timeout_s = timeout_s
        self.cache = cache
        self.engine_stats = {e.name: EngineStats() for e in engines}
        self.fallbacks = 0
        self.unspoken = 0

    def stats(self) -> dict[str, Any]:
        """Counters of the chain, its engines and its cache."""
        out: dict[str, Any] = {
            "fallbacks": self.fallbacks,
            "unspoken": self.unspoken,
            "engines": {name: s.as_dict() for name, s in self.engine_stats.items()},
        }
        if self.cache is not None:
            out["cache"] = vars(self.cache.stats).copy()
        return out

    def order(self, prefer: str | None = None) -> list[TtsEngine]:
        """The engines in the order they are tried: ``prefer`` (an engine's name) first, then the rest.

        An engine that failed ``REST_AFTER`` times in a row rests: it is tried after the others (so a
        hanging server does not cost every sentence its timeout) until its rest is over, then first
        again; each failure after that doubles its rest, up to ``REST_MAX_S``.
        """
        engines = self.engines if prefer is None else sorted(self.engines, key=lambda e: e.name != prefer)
        now = time.monotonic()
        return sorted(engines, key=lambda e: self.engine_stats[e.name].resting_until > now)

    async def speak(
        self, text: str, *, cache: bool = False, prefer: str | None = None
    ) -> AsyncGenerator[Spoken, None]:
        """The sentence's audio from the first engine that can speak it (``prefer``: try it first)."""
        sent_any = False
        errors: list[str] = []
        engines = self.order(prefer)
        for position, engine in enumerate(engines):
            key = AudioCache.key(engine.name, engine.settings_key, text) if self.cache else ""
            if cache and self.cache is not None:
                hit = await asyncio.to_thread(self.cache.get, key)
                if hit is not None:
                    yield Spoken(hit, engine.name, restart=sent_any)
                    return
            stats = self.engine_stats[engine.name]
            stats.sentences += 1
            chunks: list[TtsChunk] = []
            try:
                async with contextlib.aclosing(self._attempt(engine, text, stats)) as attempt:
                    async for chunk in attempt:
                        yield Spoken(chunk, engine.name, restart=sent_any and not chunks)
                        chunks.append(chunk)
            except TtsError as exc:
                stats.failures += 1
                stats.failing += 1
                stats.last_error = str(exc)[:300]
                if stats.failing >= REST_AFTER:
                    rest = min(REST_MAX_S, REST_S * 2.0 ** min(stats.failing - REST_AFTER, 8))
                    stats.resting_until = time.monotonic() + rest
                errors.append(f"{engine.name}: {exc}")
                nxt = engines[position + 1].name if position + 1 < len(engines) else None
                log.warning(
                    "TTS %s failed on %r (%s)%s",
                    engine.name,
                    text[:60],
                    exc,
                    f"; {nxt} speaks it" if nxt else "",
                )
                if nxt:
                    self.fallbacks += 1
                sent_any = sent_any or bool(chunks)
                continue
            stats.failing, stats.resting_until = 0, 0.0
            if cache and self.cache is not None and chunks:
                await asyncio.to_thread(self.cache.put, key, chunks)
            return
        self.unspoken += 1
        raise TtsError("no engine could speak it: " + "; ".join(errors))

    async def _attempt(
        self, engine: TtsEngine, text: str, stats: EngineStats
    ) -> AsyncGenerator[TtsChunk, None]:
        started = time.monotonic()
        stream = engine.stream(text)
        guard = AudioGuard(text)
        first = True
        try:
            while True:
                limit = self.first_audio_timeout_s if first else self.timeout_s
                try:
                    async with asyncio.timeout(limit):
                        chunk = await anext(stream)
                except StopAsyncIteration:
                    if first:
                        raise TtsError("it returned no audio") from None
                    return
                except TimeoutError as exc:
                    stats.timeouts += 1
                    what = "no audio within" if first else "stalled for"
                    raise TtsError(f"{what} {limit:g} s") from exc
                except TtsError:
                    raise
                except Exception as exc:  # an engine's bug must not stop the show
                    raise TtsError(f"{type(exc).__name__}: {exc}") from exc
                _judged(guard, chunk, stats)
                if first:
                    stats.first_audio.add((time.monotonic() - started) * 1000)
                    first = False
                yield chunk
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()


def _judged(guard: AudioGuard, chunk: TtsChunk, stats: EngineStats) -> None:
    """Check a chunk with the sentence's ``AudioGuard``; garbage is the engine's ``TtsError``."""
    try:
        guard.check(chunk.pcm, chunk.rate)
    except GarbageAudio as exc:
        stats.garbage += 1
        raise TtsError(f"it returned garbage audio: {exc}") from exc

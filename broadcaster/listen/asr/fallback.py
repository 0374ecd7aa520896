"""A recogniser with a spare: ``voice_in.asr.fallback`` takes the turns the main engine fails.

Both engines are opened in ``open`` (so a failing turn does not also wait for the spare's model to
load). A main engine that cannot open is off until the next start (a missing package or model does not
appear by itself) and every turn goes to the spare, live. Otherwise each turn runs on the main engine
while its audio is also kept (bounded by ``MAX_TURN_S``); if the turn fails (a server down, a timeout),
the audio is replayed into the spare and its text is the turn's. A streak of failures is logged once,
and once more when the main engine works again.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np

from broadcaster.listen.asr.base import (
    AsrEngine,
    AsrError,
    AsrStream,
    PartialCallback,
    Transcript,
    TurnAudio,
    as_pcm,
)

log = logging.getLogger(__name__)

REPLAY_SAMPLES = 16000  # a failed turn goes to the spare a second of audio at a time


class FallbackAsr(AsrEngine):
    """``primary``, and ``spare`` for the turns it fails."""

    name = "fallback"

    def __init__(self, primary: AsrEngine, spare: AsrEngine) -> None:
        self.primary = primary
        self.spare = spare
        self.primary_open = False
        self.spare_open = False
        self.failing = False  # in a streak of failed turns (logged at its start)

    async def open(self) -> None:
        """Open both; ``AsrError`` only if neither opens."""
        errors: list[str] = []
        for engine in (self.primary, self.spare):
            try:
                await engine.open()
            except AsrError as exc:
                errors.append(str(exc))
                log.warning("asr %s cannot open: %s", engine.name, exc)
            else:
                if engine is self.primary:
                    self.primary_open = True
                else:
                    self.spare_open = True
        if not (self.primary_open or self.spare_open):
            raise AsrError("; ".join(errors))
        if not self.primary_open:
            log.warning(
                "asr: %s takes every turn (%s is off until restart)", self.spare.name, self.primary.name
            )

    def stream(self, on_partial: PartialCallback | None = None) -> AsrStream:
        """A turn on the main engine, or on the spare if the main one is off."""
        if not self.primary_open:
            if not self.spare_open:
                raise AsrError("asr: no engine is open")
            return self.spare.stream(on_partial)
        try:
            stream = self.primary.stream(on_partial)
        except AsrError as exc:
            if not self.spare_open:
                raise
            self.turn_failed(exc)
            return self.spare.stream(on_partial)
        return FallbackStream(self, stream, on_partial)

    async def close(self) -> None:
        """Close both engines."""
        try:
            await self.primary.close()
        finally:
            await self.spare.close()

    def turn_failed(self, exc: AsrError) -> None:
        """Log a failed turn (loudly at the start of a streak)."""
        level = logging.DEBUG if self.failing else logging.WARNING
        self.failing = True
        log.log(level, "asr %s failed, %s takes the turn: %s", self.primary.name, self.spare.name, exc)

    def turn_worked(self) -> None:
        """A turn on the main engine worked: the streak is over."""
        if self.failing:
            self.failing = False
            log.info("asr %s works again", self.primary.name)


class FallbackStream(AsrStream):
    """A turn on the main engine whose audio is kept, to replay into the spare if the turn fails."""

    def __init__(self, owner: FallbackAsr, stream: AsrStream, on_partial: PartialCallback | None) -> None:
        self.owner = owner
        self._stream = stream
        self._on_partial = on_partial
        self._audio = TurnAudio(owner.primary.name)
        self._replay: AsrStream | None = None
        self._cancelled = False

    def feed(self, pcm: np.ndarray) -> None:
        """Feed the main engine and keep the audio."""
        pcm = as_pcm(pcm)
        self._audio.add(pcm)
        self._stream.feed(pcm)

    async def finish(self) -> Transcript:
        """The main engine's text, or the spare's from the replayed audio if the main one fails."""
        try:
            transcript = await self._stream.finish()
        except AsrError as exc:
            if self._cancelled or not self.owner.spare_open:
                raise
            self.owner.turn_failed(exc)
            return await self._replay_into_spare()
        self.owner.turn_worked()
        return transcript

    async def _replay_into_spare(self) -> Transcript:
        replay = self._replay = self.owner.spare.stream(self._on_partial)
        try:
            pcm = self._audio.pcm()
            for start in range(0, len(pcm), REPLAY_SAMPLES):
                replay.feed(pcm[start : start + REPLAY_SAMPLES])
            return await replay.finish()
        except BaseException:
            with contextlib.suppress(Exception):
                await replay.cancel()
            raise

    async def cancel(self) -> None:
        """Drop the turn on both engines."""
        self._cancelled = True
        try:
            await self._stream.cancel()
        finally:
            if self._replay is not None:
                await self._replay.cancel()

"""What every comment feed shares: a config, counters, and a WebSocket session that never gives up.

A feed reads one live room's chat and hands normalised events to a sink (the chat desk), awaiting it:
the sink returns once the events are in the chat log, so a feed never reads faster than the log can
keep (backpressure reaches the server through TCP) and nothing acknowledged can be lost.

``SocketFeed`` owns the connection: it reconnects with capped exponential backoff and jitter, treats a
connection that has said nothing for ``liveness_s`` as dead (a half-open TCP connection never errors),
and survives garbage: a frame the protocol cannot read is logged (the first few, then every 100th),
counted and skipped. A protocol module implements ``url`` and three hooks (``prepare``, before each
connection, may fetch what the URL or the auth needs): ``open`` (handshake and auth),
``handle`` (one frame into events; outgoing frames it needs, such as a PONG, go to ``send``) and
optionally ``heartbeat`` (sent every ``heartbeat_s``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, WebSocketException

from broadcaster.stream.rtc.settings import redact_text
from danmaku.events import HOST_FEED, ChatEvent

log = logging.getLogger("danmaku.feed")
# the websockets library logs every frame at DEBUG, secrets (a PASS line, an auth body) included:
# its records go to a logger of their own that never says more than INFO
WIRE_LOG = logging.getLogger("danmaku.feed.wire")
WIRE_LOG.setLevel(logging.INFO)

Sink = Callable[[Sequence[ChatEvent]], Awaitable[None]]
State = Literal["idle", "connecting", "live", "backoff", "failed", "closed"]
MAX_FRAME_BYTES = 4 * 1024 * 1024


class FeedError(Exception):
    """The session cannot go on (closed, refused, auth failed); the feed reconnects after a backoff."""


class FeedAuthError(FeedError):
    """The server refused the credentials; retried at the longest backoff, since it rarely heals."""


class GarbageFrame(ValueError):
    """A frame the protocol cannot read: counted and skipped, the session goes on."""


class FeedConfig(BaseModel):
    """Keys every ``[[feeds]]`` table has; each protocol adds its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    name: str = Field("", max_length=64)
    enabled: bool = True
    backoff_initial_s: float = Field(1.0, ge=0.01, le=60.0)
    backoff_max_s: float = Field(30.0, ge=0.05, le=600.0)
    # a connection with no frame (nor heartbeat reply) for this long is dead
    liveness_s: float = Field(70.0, ge=0.2, le=3600.0)
    open_timeout_s: float = Field(10.0, ge=0.1, le=120.0)

    @field_validator("name")
    @classmethod
    def _not_the_mic(cls, value: str) -> str:
        if value == HOST_FEED:
            raise ValueError(f"{HOST_FEED!r} is the console microphone's; choose another name")
        return value


@dataclass
class FeedStats:
    """Counters for the status line, /metrics and the tests."""

    state: State = "idle"
    connects: int = 0
    disconnects: int = 0
    auth_failures: int = 0
    frames: int = 0
    events: int = 0
    garbage: int = 0
    silent_timeouts: int = 0
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        """A plain dict."""
        return vars(self).copy()


def loads(text: str | bytes) -> Any:
    """Parse JSON with orjson (a third of the standard library's time on chat messages).

    Falls back to ``json`` for what orjson refuses (integers past 64 bits, NaN); raises ValueError.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def backoff_delay(
    attempt: int, initial: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before reconnect ``attempt`` (0-based).

    Doubling from ``initial`` up to ``cap``, then scaled by a random factor in [0.5, 1) so a fleet of
    rooms does not reconnect in step.
    """
    base = min(cap, initial * 2.0 ** min(attempt, 30))
    return base * (0.5 + rand() / 2)


class Feed(ABC):
    """A source of chat events; ``run`` goes until cancelled and never raises anything else."""

    type: ClassVar[str]

    def __init__(self, cfg: FeedConfig, sink: Sink) -> None:
        self.cfg = cfg
        self.sink = sink
        self.name = cfg.name or cfg.type
        self.stats = FeedStats()

    @abstractmethod
    async def run(self) -> None:
        """Read the room until cancelled."""

    async def deliver(self, events: Sequence[ChatEvent]) -> None:
        """Stamp the feed's name on ``events`` and hand them to the sink (awaiting the chat log)."""
        for event in events:
            event.feed = self.name
        self.stats.events += len(events)
        await self.sink(events)


class SocketFeed(Feed):
    """A feed over one WebSocket connection at a time (see the module docstring)."""

    #: frames the first few garbage reports show in full, then every this many
    GARBAGE_LOG_EVERY = 100

    def __init__(self, cfg: FeedConfig, sink: Sink) -> None:
        super().__init__(cfg, sink)
        self._outbox: list[str | bytes] = []
        self._connected_at = 0.0
        self._ending = ""

    # -- the protocol's hooks -------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Before each connection, what must be fetched first (a short-lived key); default: nothing."""

    @abstractmethod
    def url(self) -> str:
        """The WebSocket URL to connect to (may change between attempts, e.g. a host list)."""

    async def open(self, ws: ClientConnection) -> None:
        """Handshake and authenticate; raise FeedAuthError on refusal. Default: nothing to do."""

    @abstractmethod
    def handle(self, frame: str | bytes) -> Sequence[ChatEvent]:
        """One frame into events; raise GarbageFrame for a frame that cannot be read."""

    def heartbeat(self) -> str | bytes | None:
        """The frame sent every ``heartbeat_s`` seconds (None: no application heartbeat)."""
        return None

    heartbeat_s: float = 30.0

    # -- the session ----------------------------------------------------------------------------------

    def send(self, frame: str | bytes) -> None:
        """Queue a frame for the server (a PONG, an ack); sent before the next frame is read."""
        self._outbox.append(frame)

    def reset(self) -> None:
        """Forget per-connection state before a new connection (override to clear more)."""
        self._outbox.clear()
        self._ending = ""

    def end_session(self, why: str) -> None:
        """End the session once the current frame's events are delivered; then reconnect as usual.

        For a server that asks its clients to reconnect.
        """
        self._ending = why

    async def run(self) -> None:
        """Connect, read, and reconnect after every failure with a capped, jittered backoff."""
        attempt = 0
        try:
            while True:
                self.stats.state = "connecting"
                auth_failed = False
                try:
                    await self._session()
                except FeedAuthError as exc:
                    auth_failed = True
                    self._failed(f"authentication refused: {exc}")
                    self.stats.auth_failures += 1
                except (FeedError, OSError, TimeoutError, WebSocketException, InvalidHandshake) as exc:
                    self._failed(str(exc) or type(exc).__name__)
                except Exception as exc:
                    log.exception("feed %s: unexpected error; reconnecting", self.name)
                    self._failed(f"{type(exc).__name__}: {exc}")
                # a session that stayed up a while was healthy: start the backoff again from the bottom
                if self._connected_at and time.monotonic() - self._connected_at > self.cfg.backoff_max_s:
                    attempt = 0
                self._connected_at = 0.0
                cap = self.cfg.backoff_max_s
                delay = cap if auth_failed else backoff_delay(attempt, self.cfg.backoff_initial_s, cap)
                attempt += 1
                self.stats.state = "backoff"
                log.info("feed %s: reconnecting in %.1f s", self.name, delay)
                await asyncio.sleep(delay)
        finally:
            self.stats.state = "closed"

    def _failed(self, why: str) -> None:
        why = redact_text(why)  # a URL in an error (InvalidURI, an HTTP error) may carry a key
        self.stats.last_error = why
        if self.stats.state == "live":
            self.stats.disconnects += 1
        log.warning("feed %s: %s", self.name, why)

    async def _session(self) -> None:
        self.reset()
        async with asyncio.timeout(self.cfg.open_timeout_s):
            await self.prepare()
        async with connect(
            self.url(),
            open_timeout=self.cfg.open_timeout_s,
            ping_interval=None,
            close_timeout=1.0,
            max_size=MAX_FRAME_BYTES,
            max_queue=64,
            user_agent_header=None,
            logger=WIRE_LOG,
        ) as ws:
            async with asyncio.timeout(self.cfg.open_timeout_s):
                await self.open(ws)
            await self._flush(ws)
            self.stats.state = "live"
            self.stats.connects += 1
            self._connected_at = time.monotonic()
            log.info("feed %s: live", self.name)
            beat = asyncio.create_task(self._beat(ws)) if self.heartbeat() is not None else None
            try:
                await self._read(ws)
            finally:
                if beat is not None:
                    beat.cancel()
                    await asyncio.gather(beat, return_exceptions=True)

    async def _read(self, ws: ClientConnection) -> None:
        while True:
            frame = await self._next_frame(ws)
            self.stats.frames += 1
            try:
                events = self.handle(frame)
            except GarbageFrame as exc:
                self.garbage(frame, str(exc))
                continue
            except FeedError:
                raise
            except Exception as exc:
                self.garbage(frame, f"{type(exc).__name__}: {exc}")
                continue
            if self._outbox:
                await self._flush(ws)
            if events:
                await self.deliver(events)
            if self._ending:
                raise FeedError(self._ending)

    async def _next_frame(self, ws: ClientConnection) -> str | bytes:
        """The next frame, proving a quiet connection alive.

        A quiet half of ``liveness_s`` is answered with a WebSocket ping; a connection that then stays
        silent, pong included, for the other half is dead.
        """
        half = self.cfg.liveness_s / 2
        pong: Awaitable[float] | None = None
        while True:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancel that arrives
                # together with a frame, and a busy feed could then never be stopped
                async with asyncio.timeout(half):
                    return await ws.recv()
            except TimeoutError:
                if pong is not None and not _done(pong):
                    self.stats.silent_timeouts += 1
                    raise FeedError(
                        f"silent for {self.cfg.liveness_s:g} s: connection presumed dead"
                    ) from None
                pong = await ws.ping()

    async def _flush(self, ws: ClientConnection) -> None:
        frames, self._outbox = self._outbox, []
        for frame in frames:
            await ws.send(frame)

    async def _beat(self, ws: ClientConnection) -> None:
        while True:
            frame = self.heartbeat()
            if frame is not None:
                await ws.send(frame)
            await asyncio.sleep(self.heartbeat_s)

    def garbage(self, frame: str | bytes, why: str) -> None:
        """Count and skip an unreadable frame or message (logged: the first few, then every 100th)."""
        self.stats.garbage += 1
        n = self.stats.garbage
        if n <= 5 or n % self.GARBAGE_LOG_EVERY == 0:
            shown = frame[:80] if isinstance(frame, str) else frame[:40].hex()
            log.warning("feed %s: skipped unreadable frame #%d (%s): %r", self.name, n, why, shown)


def _done(waiter: Awaitable[float]) -> bool:
    return isinstance(waiter, asyncio.Future) and waiter.done()

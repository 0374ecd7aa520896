"""The show's event hub: what moderators' consoles subscribe to, and the error a command answers with.

The director, the chat desk and the preview publish events (``publish`` never blocks and never fails);
each subscriber has its own bounded queue, so a slow or stalled console loses its oldest events (and
is told how many) instead of holding up the show. Topics:

- ``on_air``: the sentence on air (``{"item": id or null, "lane": ..., "text": ...}``), and ``{"text": ""}``
  when the room falls silent.
- ``queue``: the queue changed (``{"items": [...]}``, the whole listing).
- ``triage``: a chat decision (``{"event": {...}, "verdict": ...}``).
- ``review``: a reply waits for approval, or was approved, edited or rejected.
- ``state``: switches (chat paused, review mode, avatar, persona, script on air).
- ``metrics``: a periodic snapshot of the figures ``/metrics`` serves.
- ``preview``: program pictures and sound for the dashboard (binary payloads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

TOPICS = ("on_air", "queue", "triage", "review", "state", "metrics", "preview")


class ControlError(Exception):
    """A command that cannot be done: ``code`` is machine-readable, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(eq=False)
class Subscription:
    """One subscriber's queue of ``(topic, data)``; iterate it to receive events."""

    topics: frozenset[str]
    limit: int = 256
    dropped: int = 0
    _items: deque[tuple[str, Any]] = field(default_factory=deque)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _closed: bool = False

    def put(self, topic: str, data: Any) -> None:
        """Queue an event; the oldest goes when the queue is full."""
        if self._closed or topic not in self.topics:
            return
        if len(self._items) >= self.limit:
            self._items.popleft()
            self.dropped += 1
        self._items.append((topic, data))
        self._ready.set()

    async def get(self) -> tuple[str, Any]:
        """The next event; raises ``EOFError`` once closed and drained."""
        while not self._items:
            if self._closed:
                raise EOFError("subscription closed")
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def close(self) -> None:
        """No more events; a waiting ``get`` ends."""
        self._closed = True
        self._ready.set()

    async def __aiter__(self) -> AsyncIterator[tuple[str, Any]]:
        while True:
            try:
                yield await self.get()
            except EOFError:
                return


class EventHub:
    """Fans events out to subscribers. Call from the event loop's thread (``publish_threadsafe`` else)."""

    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        # subscribers per topic, so that ``wants`` is one dict read, safe from the render thread
        self._wanted: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.published = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop that ``publish_threadsafe`` hands events to."""
        self._loop = loop

    def subscribe(self, topics: Iterable[str] = TOPICS, limit: int = 256) -> Subscription:
        """A new subscription to ``topics`` (unknown names raise ``ControlError``)."""
        wanted = frozenset(topics)
        unknown = wanted - set(TOPICS)
        if unknown:
            known = ", ".join(TOPICS)
            raise ControlError("bad_topic", f"unknown topic(s) {sorted(unknown)}; topics: {known}")
        sub = Subscription(wanted, limit)
        self._subscribers.add(sub)
        for topic in wanted:
            self._wanted[topic] = self._wanted.get(topic, 0) + 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to ``sub`` and close it."""
        if sub in self._subscribers:
            self._subscribers.discard(sub)
            for topic in sub.topics:
                self._wanted[topic] -= 1
        sub.close()

    def wants(self, topic: str) -> bool:
        """Whether anyone listens to ``topic`` (producers skip costly work otherwise); any thread."""
        return self._wanted.get(topic, 0) > 0

    def publish(self, topic: str, data: Any) -> None:
        """Deliver an event to every subscriber of ``topic``; never blocks."""
        self.published += 1
        for sub in self._subscribers:
            sub.put(topic, data)

    def publish_threadsafe(self, topic: str, data: Any) -> None:
        """``publish`` from another thread (the render or preview thread); dropped when no loop is bound."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed in between: the process is ending
            loop.call_soon_threadsafe(self.publish, topic, data)

    def close(self) -> None:
        """Close every subscription (shutdown)."""
        for sub in list(self._subscribers):
            self.unsubscribe(sub)

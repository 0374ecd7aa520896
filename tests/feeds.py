"""What the feed tests share: a sink that collects events, and a feed running for a block."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

from danmaku.events import ChatEvent
from danmaku.feeds.base import Feed

F = TypeVar("F", bound=Feed)


class Collector:
    """A feed's sink that keeps every event; ``wait_for`` waits until ``count`` have arrived."""

    def __init__(self) -> None:
        self.events: list[ChatEvent] = []
        self.arrived = asyncio.Event()

    async def __call__(self, events: Sequence[ChatEvent]) -> None:
        self.events.extend(events)
        self.arrived.set()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[ChatEvent]:
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.events


@asynccontextmanager
async def running(feed: F) -> AsyncIterator[F]:
    """``feed.run()`` as a task for the block; cancelled and awaited after it."""
    task = asyncio.create_task(feed.run())
    try:
        yield feed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

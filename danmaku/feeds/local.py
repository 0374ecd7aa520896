"""The local feed: comments typed by an operator, for trying the product and for the dashboard.

``submit`` is the way in (the dashboard, ``run --chat``); with ``stdin = true`` and a terminal on
standard input, each line typed (``NAME: TEXT``, or just ``TEXT``) is a comment too.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
from typing import Literal

from pydantic import Field

from danmaku.events import ChatEvent, Kind, User, derived_id, now_ms
from danmaku.feeds.base import Feed, FeedConfig, Sink

log = logging.getLogger("danmaku.feed")


class LocalFeedConfig(FeedConfig):
    """`[[feeds]] type = "local"`."""

    type: Literal["local"] = "local"
    stdin: bool = False  # read comments typed on the terminal (ignored when stdin is not a terminal)
    platform: str = Field("local", pattern=r"^[a-z0-9_]{1,32}$")


class LocalFeed(Feed):
    """Comments submitted in-process."""

    type = "local"

    def __init__(self, cfg: LocalFeedConfig, sink: Sink) -> None:
        super().__init__(cfg, sink)
        self.platform = cfg.platform
        self.stdin = cfg.stdin
        self._counter = itertools.count(1)

    async def submit(
        self, name: str, text: str, kind: Kind = "chat", user_id: str | None = None
    ) -> ChatEvent:
        """One comment; returns once it is in the chat log."""
        now = now_ms()
        uid = user_id or f"name:{name}"
        event = ChatEvent(
            derived_id(self.platform, uid, now, next(self._counter)),
            self.platform,
            kind,
            now,
            User(uid, name),
            text,
            raw=f"{name}: {text}",
            received_at=now,
        )
        await self.deliver([event])
        return event

    async def run(self) -> None:
        """Read the terminal when asked to and one is attached; otherwise wait for submissions."""
        self.stats.state = "live"
        try:
            if self.stdin and sys.stdin is not None and sys.stdin.isatty():
                await self._read_terminal()
            await asyncio.Event().wait()
        finally:
            self.stats.state = "closed"

    async def _read_terminal(self) -> None:
        log.info("feed %s: type comments as NAME: TEXT (or just TEXT)", self.name)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=64 * 1024)
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        try:
            while line := await reader.readline():
                self.stats.frames += 1
                text = line.decode("utf-8", "replace").strip()
                if not text:
                    continue
                name, sep, said = text.partition(":")
                if sep and name.strip() and said.strip() and len(name) <= 32:
                    await self.submit(name.strip(), said.strip())
                else:
                    await self.submit("operator", text)
        finally:
            transport.close()

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Literal

import pytest
from websockets.asyncio.server import ServerConnection

from danmaku.events import ChatEvent, User
from danmaku.feeds.base import FeedConfig, GarbageFrame, SocketFeed, backoff_delay
from tests.feeds import Collector
from tests.ws_servers import SilentProxy, serve_ws


class EchoConfig(FeedConfig):
    type: Literal["echo"] = "echo"
    url: str = ""


class EchoFeed(SocketFeed):
    """The smallest protocol: each frame is {"id", "text"}."""

    type = "echo"

    def __init__(self, cfg: EchoConfig, sink: object) -> None:
        super().__init__(cfg, sink)  # type: ignore[arg-type]
        self.target = cfg.url

    def url(self) -> str:
        return self.target

    def handle(self, frame: str | bytes) -> Sequence[ChatEvent]:
        try:
            msg = json.loads(frame)
            return [ChatEvent(str(msg["id"]), "echo", "chat", 0, User("u", "u"), msg["text"])]
        except (ValueError, KeyError, TypeError) as exc:
            raise GarbageFrame(str(exc)) from exc


def config(url: str, **extra: object) -> EchoConfig:
    return EchoConfig(url=url, backoff_initial_s=0.02, backoff_max_s=0.1, open_timeout_s=2, **extra)


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    lows = [backoff_delay(n, 1.0, 30.0, rand=lambda: 0.0) for n in range(8)]
    highs = [backoff_delay(n, 1.0, 30.0, rand=lambda: 0.999999) for n in range(8)]
    assert lows == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    assert highs[0] == pytest.approx(1.0) and highs[-1] == pytest.approx(30.0)
    assert backoff_delay(10_000, 1.0, 30.0) <= 30.0


async def test_reconnects_after_the_server_closes_and_skips_garbage() -> None:
    sessions = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal sessions
        sessions += 1
        n = sessions
        await ws.send(json.dumps({"id": f"{n}-a", "text": "hi"}))
        await ws.send(b"\x00\xff not json")
        await ws.send("{broken")
        await ws.send(json.dumps({"id": f"{n}-b", "text": "there"}))
        if n == 1:
            await ws.close()
        else:
            await ws.wait_closed()

    sink = Collector()
    async with serve_ws(handler) as url:
        feed = EchoFeed(config(url), sink)
        task = asyncio.create_task(feed.run())
        try:
            await sink.wait_for(4)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert [e.id for e in sink.events] == ["1-a", "1-b", "2-a", "2-b"]
    assert all(e.feed == "echo" for e in sink.events)
    assert feed.stats.garbage == 4
    assert feed.stats.connects == 2 and feed.stats.disconnects == 1
    assert feed.stats.state == "closed"


async def test_a_silent_connection_is_dropped_and_replaced() -> None:
    sessions = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal sessions
        sessions += 1
        await ws.send(json.dumps({"id": str(sessions), "text": "hello"}))
        await ws.wait_closed()

    sink = Collector()
    async with serve_ws(handler) as url:
        port = int(url.rsplit(":", 1)[1])
        async with SilentProxy(port) as proxy:
            feed = EchoFeed(config(f"ws://127.0.0.1:{proxy.port}", liveness_s=0.6), sink)
            task = asyncio.create_task(feed.run())
            try:
                await sink.wait_for(1)
                # a quiet but healthy connection is kept alive by pings: no reconnect in 3 liveness spans
                await asyncio.sleep(1.8)
                assert feed.stats.connects == 1 and feed.stats.silent_timeouts == 0
                proxy.freeze()
                proxy.thaw()  # new connections flow again; the old one stays silent
                await sink.wait_for(2)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    assert feed.stats.silent_timeouts == 1
    assert feed.stats.connects == 2


async def test_a_refused_connection_is_retried_with_backoff() -> None:
    sink = Collector()
    feed = EchoFeed(config("ws://127.0.0.1:9"), sink)
    task = asyncio.create_task(feed.run())
    await asyncio.sleep(0.5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert feed.stats.connects == 0
    assert feed.stats.last_error
    assert feed.stats.state == "closed"

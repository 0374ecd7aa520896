"""The control server's test fixtures: a recording stand-in for the director, a running server, a console.

``RecordingShow`` implements ``ShowControl`` in memory and records every call (the real director will
replace it in some tests); ``running_server`` starts a ``ControlServer`` on a free loopback port;
``Console`` is a WebSocket client that sends requests and sorts replies from events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from broadcaster.control.hub import ControlError, EventHub
from broadcaster.control.preview import PreviewSink
from broadcaster.control.server import ControlServer, Health, StatsFn
from broadcaster.control.settings import ControlConfig, Token
from broadcaster.stream.rtc.viewers import Viewers

TOKEN = "test-token-0123456789abcdef"
WAIT_S = 5.0


class RecordingShow:
    """A ShowControl double: keeps a queue of items and records ``(method, args)`` for each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.items = [
            {"id": 1, "lane": "script", "text": "first"},
            {"id": 2, "lane": "script", "text": "second"},
        ]
        self.fail: Exception | None = None
        self._changed = asyncio.Condition()

    async def _record(self, name: str, *args: Any) -> dict[str, Any]:
        async with self._changed:
            if self.fail is not None:
                exc, self.fail = self.fail, None
                raise exc
            self.calls.append((name, args))
            self._changed.notify_all()
        return {"done": name}

    async def wait_for(self, name: str, nth: int = 1, timeout: float = WAIT_S) -> tuple[Any, ...]:
        """The arguments of the ``nth`` call of ``name`` (waits for it)."""

        def made() -> list[tuple[Any, ...]]:
            return [args for n, args in self.calls if n == name]

        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(made()) >= nth)
        return made()[nth - 1]

    def _item(self, item_id: int) -> dict[str, Any]:
        for item in self.items:
            if item["id"] == item_id:
                return item
        raise ControlError("unknown_item", f"no queued item {item_id}")

    async def say(self, text: str, mode: str) -> dict[str, Any]:
        return await self._record("say", text, mode)

    async def interrupt(self) -> dict[str, Any]:
        return await self._record("interrupt")

    async def skip(self) -> dict[str, Any]:
        return await self._record("skip")

    async def chat_answering(self, on: bool) -> dict[str, Any]:
        return await self._record("chat_answering", on)

    def queue_list(self) -> list[dict[str, Any]]:
        self.calls.append(("queue_list", ()))
        return list(self.items)

    async def queue_remove(self, item_id: int) -> dict[str, Any]:
        self._item(item_id)
        return await self._record("queue_remove", item_id)

    async def queue_move(self, item_id: int, position: int) -> dict[str, Any]:
        self._item(item_id)
        return await self._record("queue_move", item_id, position)

    async def script_start(self, script: str, segment: str | None = None) -> dict[str, Any]:
        return await self._record("script_start", script, segment)

    async def script_stop(self) -> dict[str, Any]:
        return await self._record("script_stop")

    async def script_jump(self, script: str, segment: str) -> dict[str, Any]:
        return await self._record("script_jump", script, segment)

    async def switch_avatar(self, name: str) -> dict[str, Any]:
        return await self._record("switch_avatar", name)

    async def switch_persona(self, name: str) -> dict[str, Any]:
        return await self._record("switch_persona", name)

    async def review_mode(self, on: bool) -> dict[str, Any]:
        return await self._record("review_mode", on)

    async def review_approve(self, item_id: int, text: str | None = None) -> dict[str, Any]:
        return await self._record("review_approve", item_id, text)

    async def review_reject(self, item_id: int) -> dict[str, Any]:
        return await self._record("review_reject", item_id)

    async def voice_mode(self, mode: str) -> dict[str, Any]:
        return await self._record("voice_mode", mode)

    def state(self) -> dict[str, Any]:
        self.calls.append(("state", ()))
        return {
            "on_air": {"item": None, "lane": None, "text": ""},
            "queue": list(self.items),
            "review": [],
            "scripts": [{"id": "morning", "title": "Good morning", "segments": ["intro", "news"]}],
            "avatars": ["sample"],
            "personas": ["host"],
            "chat_answering": True,
            "review_mode": False,
        }


@asynccontextmanager
async def running_server(
    backend: Any = None,
    hub: EventHub | None = None,
    *,
    health: Health | None = None,
    stats: StatsFn | None = None,
    preview: PreviewSink | None = None,
    viewers: Viewers | None = None,
    **settings: Any,
) -> AsyncIterator[ControlServer]:
    """A started ControlServer on a free loopback port, closed afterwards."""
    cfg = ControlConfig(port=0, **settings)
    server = ControlServer(
        cfg,
        backend if backend is not None else RecordingShow(),
        hub if hub is not None else EventHub(),
        Token(TOKEN, "env"),
        health=health,
        stats=stats,
        preview=preview,
        viewers=viewers,
    )
    async with server:
        yield server


def ws_url(server: ControlServer, query: str = "") -> str:
    """The /ws address of ``server``."""
    return f"ws://127.0.0.1:{server.port}/ws{query}"


class Console:
    """A console connection: ``call`` sends a request and returns its reply; events are kept aside."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[tuple[str, Any]] = []
        self.binary: list[bytes] = []
        self._ids = 0

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        """Send a raw frame (a dict is sent as JSON text)."""
        await self.ws.send(json.dumps(message) if isinstance(message, dict) else message)

    async def _read(self) -> dict[str, Any] | None:
        """Read one frame: a reply is returned; binary frames and events are kept aside."""
        frame = await self.ws.recv()
        if isinstance(frame, bytes):
            self.binary.append(frame)
            return None
        msg = json.loads(frame)
        if "event" in msg:
            self.events.append((msg["event"], msg["data"]))
            return None
        return dict(msg)

    async def reply(self, rid: Any = None) -> dict[str, Any]:
        """The next reply (with ``rid`` when given), keeping events that come first."""
        async with asyncio.timeout(WAIT_S):
            while True:
                msg = await self._read()
                if msg is not None and (rid is None or msg.get("id") == rid):
                    return msg

    async def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send ``cmd`` and return its reply."""
        self._ids += 1
        await self.send({"id": self._ids, "cmd": cmd, **args})
        return await self.reply(self._ids)

    async def event(self, match: Callable[[str, Any], bool]) -> tuple[str, Any]:
        """The first event (kept or new) that ``match`` accepts."""
        async with asyncio.timeout(WAIT_S):
            while True:
                for i, (topic, data) in enumerate(self.events):
                    if match(topic, data):
                        return self.events.pop(i)
                await self._read()

    async def frame(self) -> bytes:
        """The next binary frame."""
        if self.binary:
            return self.binary.pop(0)
        async with asyncio.timeout(WAIT_S):
            while not self.binary:
                await self._read()
        return self.binary.pop(0)


@asynccontextmanager
async def console(server: ControlServer, *, auth: bool = True, **kwargs: Any) -> AsyncIterator[Console]:
    """A connected console, authenticated by message unless ``auth`` is False."""
    async with connect(ws_url(server, kwargs.pop("query", "")), **kwargs) as ws:
        c = Console(ws)
        if auth:
            reply = await c.call("auth", token=TOKEN)
            assert reply["ok"], reply
        yield c

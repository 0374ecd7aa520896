"""Real WebSocket servers on loopback for the feed tests, and a TCP proxy that can go silent.

``serve_ws(handler)`` runs a websockets server (each connection handled by ``handler``) on a free
port and yields its ``ws://`` URL. ``SilentProxy`` forwards TCP to a server until ``freeze`` is called;
from then on it forwards nothing in either direction and closes nothing, which is what a dead NAT
entry or a stalled server looks like to a client: no error, just silence (pings go unanswered too).
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Self
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection, serve

WsHandler = Callable[[ServerConnection], Awaitable[None]]


@asynccontextmanager
async def serve_ws(handler: WsHandler, **kwargs: object) -> AsyncIterator[str]:
    """Serve WebSocket connections with ``handler``; yields the URL (``ws://127.0.0.1:PORT``)."""
    async with serve(handler, "127.0.0.1", 0, **kwargs) as server:  # type: ignore[arg-type]
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


class WsServer(ABC):
    """A protocol server for the tests: ``async with`` it serves ``handle`` at ``url`` on a free port."""

    path = ""  # appended to the URL (bilibili's "/sub")

    def __init__(self) -> None:
        self.url = ""
        self._stack = AsyncExitStack()

    def serve_options(self) -> dict[str, object]:
        """Extra keyword arguments for websockets' ``serve``."""
        return {}

    @abstractmethod
    async def handle(self, ws: ServerConnection) -> None:
        """One client connection."""

    async def __aenter__(self) -> Self:
        self.url = (
            await self._stack.enter_async_context(serve_ws(self.handle, **self.serve_options())) + self.path
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    @property
    def port(self) -> int:
        """The TCP port (for a SilentProxy in front)."""
        return int(urlsplit(self.url).port or 0)


class SilentProxy:
    """A TCP proxy to ``port`` on loopback that can be made to go silent (see the module docstring)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.frozen = asyncio.Event()
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> SilentProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def freeze(self) -> None:
        """From now on, forward nothing (connections stay open)."""
        self.frozen.set()

    def thaw(self) -> None:
        """Forward again (new connections only: frozen ones stay silent)."""
        self.frozen = asyncio.Event()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        frozen = self.frozen
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        pipes = [
            asyncio.ensure_future(self._pipe(reader, up_writer, frozen)),
            asyncio.ensure_future(self._pipe(up_reader, writer, frozen)),
        ]
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            if frozen.is_set():
                await asyncio.Event().wait()  # hold the sockets open, silent, until the test ends
        finally:
            for pipe in pipes:
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frozen: asyncio.Event
    ) -> None:
        while not frozen.is_set():
            read = asyncio.ensure_future(reader.read(65536))
            stop = asyncio.ensure_future(frozen.wait())
            await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not read.done():
                read.cancel()
                break
            data = read.result()
            if not data:
                return
            writer.write(data)
            await writer.drain()
        await asyncio.Event().wait()

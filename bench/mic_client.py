"""A console's microphone, as the dashboard sends it: PCM blocks over ``/mic``, paced as if captured.

Shared by the voice-in tests and benchmarks. ``stream`` sends each 20 ms block when its last sample
would have been captured, and returns the monotonic time at which the stream's first sample was
captured (the earliest, over all blocks, of send time minus the audio before it): the reference
the fixed pass-through delay is measured from.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
from websockets.asyncio.client import ClientConnection, connect


class MicClient:
    """One ``/mic`` connection: ``open`` (auth + mic.start), ``stream``, the events it was sent."""

    def __init__(self, port: int, token: str, rate: int = 48000) -> None:
        self.url = f"ws://127.0.0.1:{port}/mic"
        self.token = token
        self.rate = rate
        self.ws: ClientConnection | None = None
        self.events: list[tuple[float, str, dict[str, Any]]] = []  # (monotonic, event, data)
        self.changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._live: asyncio.Task[None] | None = None
        self._queue: list[tuple[np.ndarray, asyncio.Future[float]]] = []
        # added to the live stream: (monotonic now, samples) -> int16 samples or None (a room's echo)
        self.mixer: Callable[[float, int], np.ndarray | None] | None = None

    async def open(self) -> dict[str, Any]:
        """Connect, start the microphone; the ``mic`` event that says it is live."""
        self.ws = await connect(self.url, additional_headers={"Authorization": f"Bearer {self.token}"})
        self._reader = asyncio.create_task(self._read())
        await self.ws.send(orjson.dumps({"cmd": "mic.start", "rate": self.rate}).decode())
        return await self.wait("mic", lambda d: d.get("state") in ("live", "busy"))

    async def _read(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                if isinstance(raw, str):
                    msg = orjson.loads(raw)
                    self.events.append((time.monotonic(), msg.get("event", ""), msg.get("data") or {}))
                    self.changed.set()

    async def wait(
        self, event: str, match: Any = None, after: int = 0, within: float = 30.0
    ) -> dict[str, Any]:
        """The first ``event`` (from index ``after`` on) whose data ``match`` accepts."""
        async with asyncio.timeout(within):
            while True:
                for _, name, data in self.events[after:]:
                    if name == event and (match is None or match(data)):
                        return data
                self.changed.clear()
                await self.changed.wait()

    async def stream(self, pcm: np.ndarray, block_ms: int = 20) -> float:
        """Send int16 mono ``pcm`` in real time; returns when its first sample was "captured"."""
        assert self.ws is not None
        block = self.rate * block_ms // 1000
        start = time.monotonic()
        first_capture = float("inf")
        for i in range(0, len(pcm), block):
            end = min(len(pcm), i + block)
            due = start + end / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.monotonic()
            await self.ws.send(np.ascontiguousarray(pcm[i:end], "<i2").tobytes())
            first_capture = min(first_capture, sent - end / self.rate)
        return first_capture

    def start_live(self, block_ms: int = 20) -> None:
        """Stream without a break, as a real microphone does: silence (plus ``mixer``) between ``play``s."""
        self._live = asyncio.create_task(self._run_live(self.rate * block_ms // 1000))

    async def play(self, pcm: np.ndarray) -> float:
        """Queue ``pcm`` on the live stream; returns, once it started, when its first sample was captured."""
        started: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._queue.append((np.asarray(pcm, np.int16), started))
        return await started

    async def _run_live(self, block: int) -> None:
        assert self.ws is not None
        start, sent = time.monotonic(), 0
        current: np.ndarray | None = None
        offset = 0
        while True:
            due = start + (sent + block) / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            out = np.zeros(block, np.int16)
            if current is None and self._queue:
                current, started = self._queue.pop(0)
                offset = 0
                started.set_result(time.monotonic() - block / self.rate)
            if current is not None:
                take = current[offset : offset + block]
                out[: len(take)] = take
                offset += block
                if offset >= len(current):
                    current = None
            if self.mixer is not None:
                extra = self.mixer(time.monotonic(), block)
                if extra is not None:
                    out = np.clip(out.astype(np.int32) + extra, -32768, 32767).astype(np.int16)
            await self.ws.send(out.astype("<i2").tobytes())
            sent += block

    async def close(self) -> None:
        """Stop the microphone and close the connection."""
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.send(orjson.dumps({"cmd": "mic.stop"}).decode())
            await self.ws.close()
        for task in (self._reader, self._live):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

"""The ``/mic`` WebSocket: one console's microphone, authenticated like the control API.

The console sends ``{"cmd": "mic.start", "rate": R}`` (after ``{"cmd": "auth", ...}`` unless the upgrade
carried the token), then binary frames of s16le mono PCM at R, each at most a second, as they are
captured. It is told ``mic`` (state and mode), ``speech`` (speaking or not), ``transcript`` (partial and
final text), ``barge_in`` and ``error`` events. One microphone at a time: a second console is told
``busy`` and closed (4409). A frame that cannot be audio is skipped and counted, never the end of the
stream; events to a console that reads slowly are dropped, oldest first, never queued without bound.
Frames past ``MAX_FRAMES_PER_S`` (twice the dashboard's 50 a second, with a burst of two seconds) are
skipped with an error event; a client that keeps that up is closed (1008).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from broadcaster.control.limits import TokenBucket, client_address
from broadcaster.listen.listener import Listener, MicBusy, MicLink
from broadcaster.listen.vad import VadError

if TYPE_CHECKING:
    from broadcaster.control.server import ControlServer

log = logging.getLogger("broadcaster.control.mic")

EVENT_QUEUE = 64
MAX_BLOCK_S = 1.0
CLOSE_BUSY = 4409
CLOSE_POLICY = 1008
CLOSE_ERROR = 1011
STALL_S = 2.0  # no audio this long (the dashboard sends all the time): what was being said is over
MAX_FRAMES_PER_S = 100.0
FRAME_BURST = 200
STRIKE_WINDOW_S = 10.0  # FRAME_BURST frames skipped within this long close the connection


class _MicStart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    cmd: Literal["mic.start"]
    rate: int = Field(ge=8000, le=48000)


class MicSession:
    """Serves one ``/mic`` connection until the console stops or goes."""

    def __init__(self, server: ControlServer, listener: Listener, ws: ServerConnection, authed: bool) -> None:
        self.server = server
        self.listener = listener
        self.ws = ws
        self.authed = authed
        self.events: asyncio.Queue[str] = asyncio.Queue(EVENT_QUEUE)
        self.dropped = 0
        self.address = client_address(ws)
        self._frames = TokenBucket(MAX_FRAMES_PER_S, FRAME_BURST)
        self._strikes = TokenBucket(FRAME_BURST / STRIKE_WINDOW_S, FRAME_BURST)

    def send(self, event: str, data: dict[str, Any]) -> None:
        """Queue an event for the console (the oldest is dropped when it reads too slowly)."""
        message = orjson.dumps({"event": event, "data": data}).decode()  # a text frame
        if self.events.full():
            self.events.get_nowait()
            self.dropped += 1
        self.events.put_nowait(message)

    async def run(self) -> None:
        """Authenticate, start, then take audio until the console stops."""
        sender = asyncio.create_task(self._forward(), name="mic-events")
        try:
            rate = await self._start()
            if rate is None:
                return
            try:
                link = self.listener.attach(rate, self.send)
            except MicBusy as exc:
                self.send("mic", {"state": "busy", "message": str(exc)})
                await self._drain()
                await self.ws.close(CLOSE_BUSY, "another microphone is live")
                return
            except VadError as exc:  # checked at start too; a package removed since, say
                log.error("voice in: the microphone cannot be heard: %s", exc)
                self.send("error", {"code": "vad", "message": str(exc)})
                await self._drain()
                await self.ws.close(CLOSE_ERROR, "voice activity detection is unavailable")
                return
            try:
                await self._listen(link, rate)
            finally:
                await self.listener.detach(link)
        except TimeoutError:
            await self.ws.close(CLOSE_POLICY, "authenticate and send mic.start first")
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _start(self) -> int | None:
        """The first messages: the token (unless given on the upgrade) and ``mic.start``."""
        cfg = self.server.cfg
        async with asyncio.timeout(cfg.auth_timeout_s):
            while True:
                message = await self.ws.recv()
                request = self._json(message)
                if request is None:
                    continue
                if not self.authed:
                    if self.server.addresses.locked(self.address):
                        self.server.counts["rate_limited"] += 1
                        await self.ws.close(CLOSE_POLICY, "too many wrong tokens from this address")
                        return None
                    token = request.get("token") if request.get("cmd") == "auth" else None
                    if not isinstance(token, str) or not self.server.check_token(token):
                        self.server.auth_failed(self.address)
                        await self.ws.close(CLOSE_POLICY, "wrong token")
                        return None
                    self.authed = True
                    continue
                try:
                    rate = _MicStart.model_validate(request).rate
                except ValidationError as exc:
                    detail = "; ".join(e["msg"] for e in exc.errors())
                    self.send("error", {"code": "bad_request", "message": f"mic.start: {detail}"})
                    continue
                highest = self.listener.cfg.max_rate
                if rate <= highest:
                    return rate
                message = f"mic.start: rate {rate} is over voice_in.max_rate ({highest}); resample to it"
                self.send("error", {"code": "bad_request", "message": message})

    def _json(self, message: str | bytes) -> dict[str, Any] | None:
        if isinstance(message, bytes):
            self.send("error", {"code": "bad_request", "message": "send mic.start before audio"})
            return None
        try:
            value = orjson.loads(message)
        except orjson.JSONDecodeError:
            self.send("error", {"code": "bad_json", "message": "not JSON"})
            return None
        if not isinstance(value, dict):
            self.send("error", {"code": "bad_request", "message": "a message is a JSON object"})
            return None
        return value

    async def _listen(self, link: MicLink, rate: int) -> None:
        limit = int(rate * MAX_BLOCK_S) * 2
        while True:
            try:
                async with asyncio.timeout(STALL_S):
                    message = await self.ws.recv()
            except TimeoutError:  # a console that stopped sending without closing: its turn ends here
                self.listener.stalled(link)
                continue
            if not self._frames.take():
                self.server.counts["rate_limited"] += 1
                if not self._strikes.take():
                    await self.ws.close(CLOSE_POLICY, "too many frames")
                    return
                message = f"more than {MAX_FRAMES_PER_S:g} frames a second: skipped"
                self.send("error", {"code": "rate_limited", "message": message})
                continue
            if isinstance(message, str):
                request = self._json(message)
                if request is not None and request.get("cmd") == "mic.stop":
                    return
                if request is not None:
                    self.send("error", {"code": "unknown_command", "message": "send audio or mic.stop"})
                continue
            if not message or len(message) % 2 or len(message) > limit:
                self.listener.stats.bad_blocks += 1
                self.send(
                    "error",
                    {"code": "bad_audio", "message": f"a block is s16le mono, 1 to {limit} bytes, even"},
                )
                continue
            try:
                self.listener.audio(link, np.frombuffer(message, "<i2"))
            except Exception:  # a fault here must not end the console's microphone
                log.exception("voice in: a block of audio could not be handled; it is skipped")

    async def _forward(self) -> None:
        while True:
            message = await self.events.get()
            with contextlib.suppress(ConnectionClosed):
                await self.ws.send(message)

    async def _drain(self) -> None:
        while not self.events.empty():
            with contextlib.suppress(ConnectionClosed):
                await self.ws.send(self.events.get_nowait())

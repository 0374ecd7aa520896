"""One console's connection: its authentication, its commands (carried out on the show) and its events.

Every message gets exactly one reply; a message that is not a valid request, arrives before the token,
or comes faster than ``commands_per_second`` (``rate_limited``), changes nothing. Events are forwarded
by one task per subscription, so a console that reads slowly only loses its own oldest events (and is
told), while the show and the other consoles go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from broadcaster.control import protocol as p
from broadcaster.control.backend import ShowControl
from broadcaster.control.hub import ControlError, Subscription
from broadcaster.control.limits import TokenBucket, client_address
from broadcaster.stream.rtc.settings import redact_text
from broadcaster.stream.rtc.viewers import ViewerError

if TYPE_CHECKING:
    from broadcaster.control.server import ControlServer

log = logging.getLogger("broadcaster.control.server")

PREVIEW_QUEUE = 4  # preview payloads queued per console: a slow one skips pictures, it does not lag
STRIKE_WINDOW_S = 10.0  # command_burst refused messages within this long close the connection
CLOSE_POLICY = 1008


async def _maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _listing(items: Any) -> dict[str, Any]:
    return {"items": await _maybe(items)}


# each show command, as a call on the backend
ACTIONS: dict[type, Callable[[ShowControl, Any], Any]] = {
    p.Say: lambda b, r: b.say(r.text, r.mode),
    p.Interrupt: lambda b, r: b.interrupt(),
    p.Skip: lambda b, r: b.skip(),
    p.ChatPause: lambda b, r: b.chat_answering(False),
    p.ChatResume: lambda b, r: b.chat_answering(True),
    p.QueueList: lambda b, r: _listing(b.queue_list()),
    p.QueueRemove: lambda b, r: b.queue_remove(r.item),
    p.QueueMove: lambda b, r: b.queue_move(r.item, r.position),
    p.ScriptStart: lambda b, r: b.script_start(r.script, r.segment),
    p.ScriptStop: lambda b, r: b.script_stop(),
    p.ScriptJump: lambda b, r: b.script_jump(r.script, r.segment),
    p.AvatarSwitch: lambda b, r: b.switch_avatar(r.name),
    p.PersonaSwitch: lambda b, r: b.switch_persona(r.name),
    p.ReviewOn: lambda b, r: b.review_mode(True),
    p.ReviewOff: lambda b, r: b.review_mode(False),
    p.ReviewApprove: lambda b, r: b.review_approve(r.item, r.text),
    p.ReviewReject: lambda b, r: b.review_reject(r.item),
    p.State: lambda b, r: b.state(),
    p.VoiceMode: lambda b, r: b.voice_mode(r.mode),
}


async def perform(backend: ShowControl, req: Any) -> Any:
    """Carry out one show command on ``backend``; its result (raises ``ControlError``)."""
    action = ACTIONS.get(type(req))
    if action is None:
        raise ControlError("unknown_command", f"{req.cmd} is not a show command")
    return await _maybe(action(backend, req))


class Session:
    """One console's connection (see the module docstring); ``run`` serves it until it goes."""

    def __init__(self, server: ControlServer, ws: ServerConnection, authed: bool) -> None:
        self.server = server
        self.ws = ws
        self.authed = authed
        self.failures = 0
        self._dropped_before = 0
        self._subs: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.viewers: set[str] = set()  # the WebRTC previews this console started
        self.address = client_address(ws)
        cfg = server.cfg
        self._commands = TokenBucket(cfg.commands_per_second, cfg.command_burst)
        self._strikes = TokenBucket(cfg.command_burst / STRIKE_WINDOW_S, cfg.command_burst)

    @property
    def dropped(self) -> int:
        """Events (not preview payloads) dropped because this console read too slowly."""
        live = sum(s.dropped for s in self._subs if "preview" not in s.topics)
        return self._dropped_before + live

    async def run(self) -> None:
        """Read and answer messages until the console goes (or fails to authenticate in time)."""
        cfg = self.server.cfg
        deadline = asyncio.get_running_loop().time() + cfg.auth_timeout_s
        try:
            while True:
                try:
                    async with asyncio.timeout_at(None if self.authed else deadline):
                        message = await self.ws.recv()
                except TimeoutError:
                    await self.ws.close(CLOSE_POLICY, "authenticate first")
                    return
                if not self._commands.take():
                    self.server.counts["rate_limited"] += 1
                    await self.ws.send(self._limited(message))
                    if not self._strikes.take():
                        await self.ws.close(CLOSE_POLICY, "too many commands")
                        return
                    continue
                reply, subscribed = await self.answer(message)
                await self.ws.send(reply)
                if subscribed:
                    self._start_forwarding()
                if self.failures >= cfg.max_auth_failures:
                    await self.ws.close(CLOSE_POLICY, "too many failed authentications")
                    return
        except ConnectionClosed:
            return

    async def answer(self, message: str | bytes) -> tuple[str, bool]:  # noqa: PLR0911 (one reply per kind)
        """The reply to one message, and whether it made a new subscription."""
        server = self.server
        rid: Any = None
        try:
            if isinstance(message, bytes):
                raise p.ProtocolError("bad_frame", "binary frames are not accepted: send JSON text")
            size = len(message.encode())
            if size > server.cfg.max_message_bytes:
                limit = server.cfg.max_message_bytes
                raise p.ProtocolError("too_large", f"message of {size} bytes; at most {limit}")
            req = p.parse_request(message)
            rid = req.id
            if isinstance(req, p.Auth):
                return self._auth(req), False
            if not self.authed:
                self.failures += 1
                server.counts["auth_failures"] += 1
                raise ControlError("unauthorized", 'authenticate first: {"cmd": "auth", "token": "..."}')
            if isinstance(req, p.Subscribe):
                self._subscribe(req.topics)
                return p.ok(rid, {"topics": req.topics}), True
            if isinstance(req, p.Unsubscribe):
                await self.stop_forwarding()
                return p.ok(rid, {"topics": []}), False
            if isinstance(req, p.Ping):
                return p.ok(rid, {"pong": True}), False
            if isinstance(req, p.WatchOffer | p.WatchStop):
                result = await self._watch(req)
                server.counts["commands"] += 1
                return p.ok(rid, result), False
            result = await perform(server.backend, req)
            server.counts["commands"] += 1
            return p.ok(rid, result), False
        except p.ProtocolError as exc:
            server.counts["errors"] += 1
            return p.error(exc.id, exc.code, exc.message), False
        except ControlError as exc:
            server.counts["errors"] += 1
            return p.error(rid, exc.code, exc.message), False
        except Exception as exc:
            server.counts["errors"] += 1
            log.exception("control: command failed")
            return p.error(rid, "internal", redact_text(f"{type(exc).__name__}: {exc}")), False

    def _limited(self, message: str | bytes) -> str:
        """The ``rate_limited`` reply (with the request's id when it has one)."""
        rid: Any = None
        if isinstance(message, str) and len(message) <= self.server.cfg.max_message_bytes:
            with contextlib.suppress(orjson.JSONDecodeError):
                raw = orjson.loads(message)
                rid = raw.get("id") if isinstance(raw, dict) else None
        rate = self.server.cfg.commands_per_second
        return p.error(rid, "rate_limited", f"more than {rate:g} commands a second: this one was not done")

    async def _watch(self, req: p.WatchOffer | p.WatchStop) -> dict[str, Any]:
        viewers = self.server.viewers
        if viewers is None:
            raise ControlError("unavailable", "the WebRTC preview is off (rtc.preview = false)")
        if isinstance(req, p.WatchStop):
            if req.viewer not in self.viewers:
                raise ControlError("not_found", f"no preview {req.viewer!r} of this console")
            self.viewers.discard(req.viewer)
            await viewers.stop(req.viewer)
            return {"viewer": req.viewer, "stopped": True}
        try:
            vid, answer = await viewers.watch(req.sdp)
        except ViewerError as exc:
            raise ControlError("refused", str(exc)) from exc
        self.viewers.add(vid)
        return {"viewer": vid, "sdp": answer}

    async def stop_viewers(self) -> None:
        """End the WebRTC previews this console started (it went away)."""
        viewers, ids = self.server.viewers, list(self.viewers)
        self.viewers.clear()
        if viewers is not None:
            for vid in ids:
                with contextlib.suppress(Exception):
                    await viewers.stop(vid)

    def _auth(self, req: p.Auth) -> str:
        server = self.server
        locked = server.addresses.locked(self.address)
        if locked:  # the token is not even compared: guesses from this address wait out the lockout
            self.failures += 1
            server.counts["rate_limited"] += 1
            message = f"too many wrong tokens from this address; try again in {locked:.0f} s"
            return p.error(req.id, "rate_limited", message)
        if server.check_token(req.token):
            self.authed = True
            return p.ok(req.id, {"authenticated": True})
        self.failures += 1
        server.auth_failed(self.address)
        left = server.cfg.max_auth_failures - self.failures
        return p.error(req.id, "unauthorized", f"wrong token ({max(left, 0)} attempt(s) left)")

    def _subscribe(self, topics: Sequence[str]) -> None:
        self._dropped_before = self.dropped
        hub = self.server.hub
        for sub in self._subs:
            hub.unsubscribe(sub)
        self._subs.clear()
        events = [t for t in topics if t != "preview"]
        if events:
            self._subs.append(hub.subscribe(events, self.server.cfg.subscriber_queue))
        if "preview" in topics:
            self._subs.append(hub.subscribe(["preview"], PREVIEW_QUEUE))

    def _start_forwarding(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = [asyncio.create_task(self._forward(sub), name="control-events") for sub in self._subs]

    async def stop_forwarding(self) -> None:
        """Unsubscribe and end the forwarding tasks."""
        self._dropped_before = self.dropped
        for sub in self._subs:
            self.server.hub.unsubscribe(sub)
        self._subs.clear()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _forward(self, sub: Subscription) -> None:
        told = 0
        with contextlib.suppress(ConnectionClosed):
            async for topic, data in sub:
                if topic == "preview":
                    if isinstance(data, bytes | bytearray | memoryview):
                        await self.ws.send(bytes(data))
                    continue
                if sub.dropped > told:
                    # said before the next event, so the console knows its view skipped something
                    notice = {"count": sub.dropped - told, "total": sub.dropped}
                    await self.ws.send(p.event("dropped", notice))
                    told = sub.dropped
                await self.ws.send(p.event(topic, data))

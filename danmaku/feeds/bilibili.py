"""The bilibili live room feed: the danmaku WebSocket (web or open platform) into comment events.

A session sends one auth packet (op 7) and waits for its reply (op 8, ``code`` 0); from then on the
server pushes messages (op 5, batched in brotli or zlib packets in a busy room) and answers each
heartbeat (op 2, every 30 s) with op 3, which keeps a quiet room's connection provably alive. Each
message is JSON with a ``cmd``; the ones that matter to a show become events, the rest (rank
updates, banners, PK bars...) are ignored, and one that cannot be read is counted and skipped
without losing the rest of its frame.

Web login: without a cookie bilibili masks every name (``用***``) and gives uid 0, so the feed reads
the room's danmaku key from ``info_url`` each connection (the key is short-lived), sending the browser
cookie named by ``cookie_env`` so the key belongs to that login. Open platform: ``auth_body`` is what
the app-start API returned; it is sent verbatim, and keeping the app alive (its HTTP heartbeat) is the
job of whoever started it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import Field, model_validator
from websockets.asyncio.client import ClientConnection

from broadcaster.stream.rtc.settings import redact_text, redact_url
from danmaku.events import ChatEvent, now_ms
from danmaku.feeds import bilibili_packet as wire
from danmaku.feeds.base import FeedAuthError, FeedConfig, FeedError, GarbageFrame, Sink, SocketFeed, loads
from danmaku.feeds.bilibili_cmds import KNOWN_CMDS, MAPPERS

log = logging.getLogger("danmaku.feed")

DEFAULT_URL = "wss://broadcastlv.chat.bilibili.com/sub"
DEFAULT_INFO_URL = "https://api.live.bilibili.com/xlive/web-room/v1/index/getDanmuInfo?id={room_id}&type=0"
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0"


class BilibiliFeedConfig(FeedConfig):
    """A ``[[feeds]]`` table with ``type = "bilibili"``.

    ``room_id`` is the room's long id. ``token`` is the danmaku key; left empty with ``fetch_token``
    it is fetched from ``info_url`` before each auth, with the cookie in the environment variable
    ``cookie_env`` (its ``DedeUserID`` gives ``uid`` when that is 0, its ``buvid3`` the buvid). Names
    and uids are unmasked only with such a cookie; a failed fetch connects anonymously. The fetched
    host list replaces ``url`` from the next connection on. For the open platform give ``auth_body``
    (or ``auth_body_env``) and its ``wss_link`` as ``urls`` instead. ``protover`` 3 asks for brotli
    batches, 2 for zlib. Gift values are CNY: ``gold_per_cny`` gold coins make one yuan, silver
    (free) gifts are worth 0.
    """

    type: Literal["bilibili"] = "bilibili"
    room_id: int = Field(0, ge=0)
    url: str = DEFAULT_URL
    urls: tuple[str, ...] = ()
    uid: int = Field(0, ge=0)
    token: str = ""
    fetch_token: bool = True
    info_url: str = DEFAULT_INFO_URL
    cookie_env: str = ""
    auth_body: str = ""
    auth_body_env: str = ""
    protover: Literal[2, 3] = 3
    heartbeat_s: float = Field(30.0, ge=0.05, le=300.0)
    gold_per_cny: float = Field(1000.0, gt=0.0)

    @model_validator(mode="after")
    def _a_room_or_an_auth_body(self) -> BilibiliFeedConfig:
        if self.auth_body:
            try:
                if not isinstance(json.loads(self.auth_body), dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                raise ValueError(
                    f"auth_body must be the JSON object the app-start API returned: {exc}"
                ) from exc
        elif not self.auth_body_env and self.room_id <= 0:
            raise ValueError("room_id is required (or auth_body / auth_body_env for the open platform)")
        try:
            self.info_url.format(room_id=0)
        except (LookupError, ValueError, AttributeError, TypeError) as exc:  # {room_id.x}, {room_id[0]}
            raise ValueError(f"info_url may name only {{room_id}}: {exc!r}") from exc
        return self


class BilibiliFeed(SocketFeed):
    """Reads one bilibili live room (see the module docstring)."""

    type = "bilibili"

    def __init__(self, cfg: BilibiliFeedConfig, sink: Sink) -> None:
        super().__init__(cfg, sink)
        self.settings = cfg
        self.heartbeat_s = cfg.heartbeat_s
        #: the room's popularity from the last heartbeat reply (deprecated by bilibili, often 1)
        self.popularity = 0
        self._hosts: list[str] = list(cfg.urls)
        self._turn = 0
        self._heartbeat_frame = wire.encode(wire.OP_HEARTBEAT)
        self._auth = b""

    def url(self) -> str:
        """The servers in turn (``urls`` or the last fetched host list), else ``url``."""
        if not self._hosts:
            return self.settings.url
        self._turn += 1
        return self._hosts[(self._turn - 1) % len(self._hosts)]

    def heartbeat(self) -> bytes:
        """Op 2; the server's op 3 reply is what proves a quiet connection alive."""
        return self._heartbeat_frame

    async def prepare(self) -> None:
        """The auth body, with the room's key fetched now (its host list picks this connection's server)."""
        self._auth = await self._auth_body()

    async def open(self, ws: ClientConnection) -> None:
        """Send the auth packet and wait for its reply: code 0 is live, anything else is refused."""
        await ws.send(wire.encode(wire.OP_AUTH, self._auth))
        while True:
            frame = await ws.recv()
            if isinstance(frame, str):
                raise FeedError("a text frame instead of the auth reply")
            try:
                packets = wire.decode(frame)
            except GarbageFrame as exc:
                raise FeedError(f"unreadable auth reply: {exc}") from exc
            for packet in packets:
                if packet.op == wire.OP_AUTH_REPLY:
                    try:
                        code = json.loads(packet.body).get("code")
                    except (ValueError, AttributeError) as exc:
                        raise FeedError(f"unreadable auth reply: {packet.body[:80]!r}") from exc
                    if code != 0:
                        raise FeedAuthError(f"bilibili refused the auth packet: code {code}")
                    return

    def handle(self, frame: str | bytes) -> Sequence[ChatEvent]:
        """Every message in the frame that maps to an event; heartbeat replies give none."""
        if isinstance(frame, str):
            raise GarbageFrame("a text frame")
        received = now_ms()
        gold = self.settings.gold_per_cny
        events: list[ChatEvent] = []
        for op, _ver, _seq, body in wire.decode(frame):
            if op == wire.OP_MESSAGE:
                event = self._message(body, received, gold)
                if event is not None:
                    events.append(event)
            elif op == wire.OP_HEARTBEAT_REPLY and len(body) >= 4:
                self.popularity = int.from_bytes(body[:4], "big")
        return events

    def _message(self, body: bytes, received: int, gold: float) -> ChatEvent | None:
        end = body.find(b'"', 8) if body.startswith(b'{"cmd":"') else -1
        if end > 0 and body[8:end].partition(b":")[0] not in KNOWN_CMDS:
            return None  # the usual layout lets the cmds we ignore go unparsed
        raw = ""
        cmd: Any = None
        try:
            raw = body.decode()
            msg = loads(raw)
            cmd = msg["cmd"]
            if ":" in cmd:  # DANMU_MSG:4:0:2:2:2:0 and the like
                cmd = cmd.partition(":")[0]
            mapper = MAPPERS.get(cmd)
            return None if mapper is None else mapper(msg, raw, received, gold)
        except (ValueError, LookupError, TypeError, AttributeError, ArithmeticError, RecursionError) as exc:
            self.garbage(raw or body, f"unreadable {cmd or 'message'}: {type(exc).__name__}: {exc}")
            return None

    async def _auth_body(self) -> bytes:
        cfg = self.settings
        if cfg.auth_body:
            return cfg.auth_body.encode()
        if cfg.auth_body_env:
            body = os.environ.get(cfg.auth_body_env, "")
            if not body:
                raise FeedAuthError(f"environment variable {cfg.auth_body_env} holds no auth body")
            return body.encode()
        cookie = os.environ.get(cfg.cookie_env, "") if cfg.cookie_env else ""
        jar = _cookie_values(cookie)
        key = cfg.token or (await self._fetch_key(cookie) if cfg.fetch_token else "")
        login = jar.get("DedeUserID", "")
        auth: dict[str, object] = {
            "uid": cfg.uid or (int(login) if login.isdigit() else 0),
            "roomid": cfg.room_id,
            "protover": cfg.protover,
            "platform": "web",
            "type": 2,
            "key": key,
        }
        if jar.get("buvid3"):
            auth["buvid"] = jar["buvid3"]
        return json.dumps(auth, separators=(",", ":")).encode()

    async def _fetch_key(self, cookie: str) -> str:
        """The room's danmaku key from ``info_url``, or "" (anonymous) when the request fails.

        The host list that comes with it picks the next connection's server.
        """
        cfg = self.settings
        url = cfg.info_url.format(room_id=cfg.room_id)
        headers = {"User-Agent": BROWSER_UA, "Referer": "https://live.bilibili.com/"}
        if cookie:
            headers["Cookie"] = cookie
        timeout = aiohttp.ClientTimeout(total=min(5.0, cfg.open_timeout_s / 2))
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url, headers=headers) as resp:
                resp.raise_for_status()
                info = await resp.json(content_type=None)
            if info.get("code") != 0:
                raise ValueError(f"code {info.get('code')}: {info.get('message', '')}")
            data = info["data"]
            key = data["token"]
            if not isinstance(key, str):
                raise TypeError("token is not a string")
            hosts = [_host_url(cfg.url, host) for host in data.get("host_list") or ()]
        except (aiohttp.ClientError, TimeoutError, ValueError, LookupError, TypeError, AttributeError) as exc:
            why = redact_text(str(exc))
            shown = redact_url(url)
            log.warning("feed %s: no danmaku key from %s (%s); connecting anonymously", self.name, shown, why)
            return ""
        if hosts and not cfg.urls and hosts != self._hosts:
            self._hosts, self._turn = hosts, 0
        return key


def _cookie_values(cookie: str) -> dict[str, str]:
    """``name=value; ...`` as a dict (a plain split: bilibili's cookies upset http.cookies)."""
    pairs = (part.strip().partition("=") for part in cookie.split(";"))
    return {name: value for name, sep, value in pairs if sep and name}


def _host_url(template: str, host: dict[str, Any]) -> str:
    """A host_list entry as a URL, keeping ``template``'s scheme (wss: wss_port, ws: ws_port) and path."""
    parts = urlsplit(template)
    port = host["ws_port"] if parts.scheme == "ws" else host["wss_port"]
    return f"{parts.scheme}://{host['host']}:{int(port)}{parts.path or '/sub'}"

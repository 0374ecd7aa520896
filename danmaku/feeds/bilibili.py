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
from collections.abc import Callable, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import Field, model_validator
from websockets.asyncio.client import ClientConnection

from danmaku.events import ChatEvent, Gift, Kind, User, derived_id, now_ms
from danmaku.feeds import bilibili_packet as wire
from danmaku.feeds.base import FeedAuthError, FeedConfig, FeedError, GarbageFrame, Sink, SocketFeed, loads

log = logging.getLogger("danmaku.feed")

PLATFORM = "bilibili"
DEFAULT_URL = "wss://broadcastlv.chat.bilibili.com/sub"
DEFAULT_INFO_URL = "https://api.live.bilibili.com/xlive/web-room/v1/index/getDanmuInfo?id={room_id}&type=0"
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0"
GUARD_NAMES = {1: "总督", 2: "提督", 3: "舰长"}
SUPERCHAT = "醒目留言"


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
        except (LookupError, ValueError) as exc:
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

    def url(self) -> str:
        """The servers in turn (``urls`` or the last fetched host list), else ``url``."""
        if not self._hosts:
            return self.settings.url
        self._turn += 1
        return self._hosts[(self._turn - 1) % len(self._hosts)]

    def heartbeat(self) -> bytes:
        """Op 2; the server's op 3 reply is what proves a quiet connection alive."""
        return self._heartbeat_frame

    async def open(self, ws: ClientConnection) -> None:
        """Send the auth packet and wait for its reply: code 0 is live, anything else is refused."""
        await ws.send(wire.encode(wire.OP_AUTH, await self._auth_body()))
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
        except (ValueError, LookupError, TypeError, AttributeError, ArithmeticError) as exc:
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
            log.warning("feed %s: no danmaku key from %s (%s); connecting anonymously", self.name, url, exc)
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


# -- messages into events: each mapper takes (message, its wire text, received_at, gold per CNY) ----

Mapper = Callable[[dict[str, Any], str, int, float], ChatEvent | None]
MEMBER = ("member",)
INTERACT_KINDS: dict[int, Kind] = {1: "enter", 2: "follow", 3: "share"}


def _event(
    eid: object, kind: Kind, ts: int, user: User, text: str, gift: Gift | None, raw: str, at: int
) -> ChatEvent:
    return ChatEvent(str(eid), PLATFORM, kind, ts, user, text, gift, raw, at)


def _seconds(value: Any, received: int) -> int:
    """A platform time in seconds as ms, or when the message was read if it gives none."""
    return int(value) * 1000 if value else received


def _id_str(extra: str) -> str:
    """``id_str`` from DANMU_MSG's extra JSON text.

    Found by a search, since parsing that kilobyte of JSON would cost more than the rest of the message.
    """
    at = extra.find('"id_str":"')
    if at >= 0:
        end = extra.find('"', at + 10)
        return extra[at + 10 : end] if end > 0 else ""
    if '"id_str"' in extra:  # not compact JSON: the slow road
        found = json.loads(extra).get("id_str")
        return found if isinstance(found, str) else ""
    return ""


def danmu_msg(msg: dict[str, Any], raw: str, at: int, gold: float) -> ChatEvent:
    """DANMU_MSG: a chat line, from the positional ``info`` array."""
    info = msg["info"]
    meta, text, who = info[0], info[1], info[2]
    if not isinstance(text, str):
        raise TypeError("info[1] is not text")
    ts = int(meta[4])
    uid, name = (who[0], who[1]) if len(who) > 1 else (0, "")
    mid = ""
    mode = meta[15] if len(meta) > 15 else None
    if isinstance(mode, dict):
        user = mode.get("user")
        if isinstance(user, dict):
            uid = uid or user.get("uid", 0)
            name = name or (user.get("base") or {}).get("name", "")
        extra = mode.get("extra")
        if isinstance(extra, str):
            mid = _id_str(extra)
    medal = info[3] if len(info) > 3 else None
    level = medal[0] if medal else (info[4][0] if len(info) > 4 and info[4] else 0)
    roles: tuple[str, ...] = ("admin",) if len(who) > 2 and who[2] else ()
    if len(info) > 7 and info[7]:
        roles += MEMBER
    user = User(str(uid), str(name), roles, int(level))
    return _event(mid or derived_id(PLATFORM, uid, ts, text), "chat", ts, user, text, None, raw, at)


def send_gift(msg: dict[str, Any], raw: str, at: int, gold: float) -> ChatEvent:
    """SEND_GIFT: ``total_coin`` gold is the price paid (a blind box's own price); silver is free."""
    d = msg["data"]
    uid, ts = d["uid"], _seconds(d.get("timestamp"), at)
    value = d.get("total_coin", 0) / gold if d.get("coin_type") == "gold" else 0.0
    eid = d.get("tid") or d.get("rnd") or d.get("batch_combo_id") or derived_id(PLATFORM, "gift", uid, ts)
    level = (d.get("medal_info") or {}).get("medal_level", 0)
    user = User(str(uid), d.get("uname", ""), MEMBER if d.get("guard_level") else (), int(level))
    return _event(eid, "gift", ts, user, "", Gift(d["giftName"], int(d.get("num", 1)), value), raw, at)


def super_chat(msg: dict[str, Any], raw: str, at: int, gold: float) -> ChatEvent:
    """SUPER_CHAT_MESSAGE: a paid message; ``price`` is already CNY."""
    d = msg["data"]
    who = d.get("user_info") or {}
    level = (d.get("medal_info") or {}).get("medal_level", 0)
    user = User(str(d["uid"]), who.get("uname", ""), MEMBER if who.get("guard_level") else (), int(level))
    name = (d.get("gift") or {}).get("gift_name") or SUPERCHAT
    ts = _seconds(d.get("start_time") or d.get("ts"), at)
    return _event(d["id"], "superchat", ts, user, d["message"], Gift(name, 1, float(d["price"])), raw, at)


def interact_word(msg: dict[str, Any], raw: str, at: int, gold: float) -> ChatEvent:
    """INTERACT_WORD: msg_type 1 enter, 2 follow, 3 share; the rest (special, mutual follow) follow."""
    d = msg["data"]
    kind = INTERACT_KINDS.get(int(d["msg_type"]), "follow")
    uid, ts = d["uid"], _seconds(d.get("timestamp"), at)
    level = (d.get("fans_medal") or {}).get("medal_level", 0)
    eid = derived_id(PLATFORM, kind, uid, d.get("trigger_time") or ts)
    return _event(eid, kind, ts, User(str(uid), d.get("uname", ""), (), int(level)), "", None, raw, at)


def guard_buy(msg: dict[str, Any], raw: str, at: int, gold: float) -> ChatEvent:
    """GUARD_BUY: a captain (舰长) or higher bought; ``price`` is gold per unit (month)."""
    d = msg["data"]
    uid, ts, num = d["uid"], _seconds(d.get("start_time"), at), int(d.get("num", 1))
    rank = int(d.get("guard_level", 3))
    gift = Gift(d.get("gift_name") or GUARD_NAMES.get(rank, "大航海"), num, d["price"] * num / gold)
    eid = derived_id(PLATFORM, "guard", uid, ts, rank)
    return _event(eid, "gift", ts, User(str(uid), d.get("username", ""), MEMBER), "", gift, raw, at)


def like_click(msg: dict[str, Any], raw: str, at: int, gold: float) -> ChatEvent:
    """LIKE_INFO_V3_CLICK: someone liked the room (no time given: when it was read)."""
    d = msg["data"]
    uid = d["uid"]
    level = (d.get("fans_medal") or {}).get("medal_level", 0)
    user = User(str(uid), d.get("uname", ""), (), int(level))
    return _event(
        derived_id(PLATFORM, "like", uid, at), "like", at, user, d.get("like_text", ""), None, raw, at
    )


def _open(d: dict[str, Any], kind: str, at: int) -> tuple[User, int, str]:
    """An open-platform message's user, time and id (``open_id`` names the user: ``uid`` is 0 now)."""
    roles: tuple[str, ...] = ("admin",) if d.get("is_admin") else ()
    if d.get("guard_level"):
        roles += MEMBER
    who = d.get("user_info") or d  # a guard purchase nests its user
    uid = who.get("open_id") or who.get("uid") or ""
    user = User(str(uid), who.get("uname", ""), roles, int(d.get("fans_medal_level") or 0))
    ts = _seconds(d.get("timestamp"), at)
    return user, ts, str(d.get("msg_id") or derived_id(PLATFORM, kind, user.id, ts))


def open_dm(msg: dict[str, Any], raw: str, at: int, gold: float) -> ChatEvent:
    """LIVE_OPEN_PLATFORM_DM: a chat line."""
    d = msg["data"]
    if not isinstance(d["msg"], str):
        raise TypeError("msg is not text")
    user, ts, eid = _open(d, "chat", at)
    return _event(eid, "chat", ts, user, d["msg"], None, raw, at)


def open_gift(msg: dict[str, Any], raw: str, at: int, gold: float) -> ChatEvent:
    """LIVE_OPEN_PLATFORM_SEND_GIFT: ``r_price`` (else ``price``) is gold per item, 1000 = 1 CNY.

    A gift not ``paid`` is free whatever its price says (it may count silver).
    """
    d = msg["data"]
    (user, ts, eid), num = _open(d, "gift", at), int(d.get("gift_num", 1))
    unit = d["r_price"] if "r_price" in d else d.get("price", 0)
    gift = Gift(d["gift_name"], num, unit * num / gold if d.get("paid") else 0.0)
    return _event(eid, "gift", ts, user, "", gift, raw, at)


def open_super_chat(msg: dict[str, Any], raw: str, at: int, gold: float) -> ChatEvent:
    """LIVE_OPEN_PLATFORM_SUPER_CHAT: a paid message; ``rmb`` is CNY."""
    d = msg["data"]
    user, ts, eid = _open(d, "superchat", at)
    return _event(eid, "superchat", ts, user, d["message"], Gift(SUPERCHAT, 1, float(d["rmb"])), raw, at)


def open_guard(msg: dict[str, Any], raw: str, at: int, gold: float) -> ChatEvent:
    """LIVE_OPEN_PLATFORM_GUARD: ``price`` gold per ``guard_unit`` (a month; any other unit counts once)."""
    d = msg["data"]
    user, ts, eid = _open(d, "guard", at)
    num = int(d.get("guard_num", 1)) if d.get("guard_unit", "月") == "月" else 1
    gift = Gift(GUARD_NAMES.get(int(d.get("guard_level", 3)), "大航海"), num, d["price"] * num / gold)
    return _event(eid, "gift", ts, user, "", gift, raw, at)


def open_like(msg: dict[str, Any], raw: str, at: int, gold: float) -> ChatEvent:
    """LIVE_OPEN_PLATFORM_LIKE: likes in the last 2 s from one user."""
    user, ts, eid = _open(msg["data"], "like", at)
    return _event(eid, "like", ts, user, msg["data"].get("like_text", ""), None, raw, at)


def open_enter(msg: dict[str, Any], raw: str, at: int, gold: float) -> ChatEvent:
    """LIVE_OPEN_PLATFORM_LIVE_ROOM_ENTER: someone came in."""
    user, ts, eid = _open(msg["data"], "enter", at)
    return _event(eid, "enter", ts, user, "", None, raw, at)


#: cmd (suffix stripped) -> mapper; any other cmd is ignored
MAPPERS: dict[str, Mapper] = {
    "DANMU_MSG": danmu_msg,
    "SEND_GIFT": send_gift,
    "SUPER_CHAT_MESSAGE": super_chat,
    "INTERACT_WORD": interact_word,
    "GUARD_BUY": guard_buy,
    "LIKE_INFO_V3_CLICK": like_click,
    "LIVE_OPEN_PLATFORM_DM": open_dm,
    "LIVE_OPEN_PLATFORM_SEND_GIFT": open_gift,
    "LIVE_OPEN_PLATFORM_SUPER_CHAT": open_super_chat,
    "LIVE_OPEN_PLATFORM_GUARD": open_guard,
    "LIVE_OPEN_PLATFORM_LIKE": open_like,
    "LIVE_OPEN_PLATFORM_LIVE_ROOM_ENTER": open_enter,
}
KNOWN_CMDS = frozenset(cmd.encode() for cmd in MAPPERS)

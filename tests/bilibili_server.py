"""A bilibili live danmaku server on loopback, and realistic traffic for it.

``BilibiliServer`` speaks the real protocol over a real WebSocket (``tests.ws_servers.serve_ws``) with
the feed's own codec: it checks the auth packet (room id and key) and answers op 8 ``{"code": 0}``, or
the refusal code and a close; it answers each heartbeat (op 2) with op 3; and it lets a test push
messages to the live connection as ver 0, zlib or brotli frames, send raw bytes (garbage), or close.
To make a connection go silent, put ``tests.ws_servers.SilentProxy`` in front of ``port``.

The traffic builders make messages shaped like the ones a busy room sends in 2024 (a DANMU_MSG is
about 1.5 KB with its ``extra`` JSON text), so the burst test and ``bench/danmaku.py`` measure the
parse of what production parses: ``danmu_frame(50)`` is one brotli frame of 50 chat messages.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from danmaku.feeds import bilibili_packet as wire
from tests.ws_servers import WsServer

ROOM_ID = 21_452_505
KEY = "test-danmaku-key"
POPULARITY = 4_242
TEXTS = ("主播晚上好", "这个好可爱", "哈哈哈哈哈哈", "今天播多久呀", "666", "what game is this?", "好听！")


class BilibiliServer(WsServer):
    """The danmaku server: ``async with BilibiliServer() as server`` serves at ``server.url``.

    ``key=None`` accepts any key (an anonymous client); ``refuse_code`` is the op 8 code for a wrong
    room or key (-101: token expired). ``attempts`` counts WebSocket connections, ``auths`` keeps every
    auth body as sent, ``connections`` the authenticated connections in order, ``heartbeats`` the op 2
    packets seen.
    """

    def __init__(self, room_id: int = ROOM_ID, key: str | None = KEY, *, refuse_code: int = -101) -> None:
        self.room_id = room_id
        self.key = key
        self.refuse_code = refuse_code
        self.answer_heartbeats = True
        self.attempts = 0
        self.auths: list[bytes] = []
        self.connections: list[ServerConnection] = []
        self.heartbeats = 0
        self._changed = asyncio.Event()
        super().__init__()

    path = "/sub"

    async def handle(self, ws: ServerConnection) -> None:
        """One client: authenticate, then answer heartbeats until it goes."""
        await self._session(ws)

    def auth(self, n: int = -1) -> dict[str, Any]:
        """Auth body ``n`` as JSON."""
        body: dict[str, Any] = json.loads(self.auths[n])
        return body

    async def wait_until(self, ready: Callable[[], bool], limit_s: float = 10.0) -> None:
        """Wait until ``ready()`` (checked after every connection attempt, auth and heartbeat)."""
        async with asyncio.timeout(limit_s):
            while not ready():
                self._changed.clear()
                await self._changed.wait()

    async def wait_connections(self, count: int, limit_s: float = 10.0) -> ServerConnection:
        """The ``count``-th authenticated connection, once it is there."""
        await self.wait_until(lambda: len(self.connections) >= count, limit_s)
        return self.connections[count - 1]

    async def send(self, frame: bytes | str, connection: ServerConnection | None = None) -> None:
        """One raw frame to ``connection`` (the latest by default)."""
        await (connection or self.connections[-1]).send(frame)

    async def push(self, bodies: Iterable[str | dict[str, Any]], ver: int = wire.VER_BROTLI) -> None:
        """Messages (JSON texts or dicts) to the latest connection as one frame of version ``ver``."""
        texts = [b if isinstance(b, str) else compact(b) for b in bodies]
        await self.send(wire.encode_messages(texts, ver))

    async def close(self) -> None:
        """Close the latest connection (the client should reconnect)."""
        await self.connections[-1].close()

    def _notify(self) -> None:
        self._changed.set()

    async def _session(self, ws: ServerConnection) -> None:
        self.attempts += 1
        self._notify()
        try:
            if await self._authenticate(ws):
                self.connections.append(ws)
                self._notify()
                async for frame in ws:
                    await self._answer(ws, frame)
        except ConnectionClosed:
            pass
        await ws.wait_closed()

    async def _authenticate(self, ws: ServerConnection) -> bool:
        frame = await ws.recv()
        packets = wire.decode(frame if isinstance(frame, bytes) else frame.encode())
        if packets[0].op != wire.OP_AUTH:
            await ws.close(1002, "auth packet expected")
            return False
        self.auths.append(packets[0].body)
        self._notify()
        body = json.loads(packets[0].body)
        ok = body.get("roomid") == self.room_id and self.key in (None, body.get("key"))
        reply = {"code": 0} if ok else {"code": self.refuse_code, "message": "token expired"}
        await ws.send(wire.encode(wire.OP_AUTH_REPLY, json.dumps(reply)))
        if not ok:
            await ws.close()
        return ok

    async def _answer(self, ws: ServerConnection, frame: bytes | str) -> None:
        if isinstance(frame, str):
            return
        for packet in wire.decode(frame):
            if packet.op == wire.OP_HEARTBEAT:
                self.heartbeats += 1
                self._notify()
                if self.answer_heartbeats:
                    await ws.send(wire.encode(wire.OP_HEARTBEAT_REPLY, POPULARITY.to_bytes(4, "big")))


# -- realistic traffic --------------------------------------------------------------------------------


def compact(message: dict[str, Any]) -> str:
    """A message's JSON text as bilibili writes it: compact, UTF-8 left as it is."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def id_str(n: int) -> str:
    """A DANMU_MSG ``id_str`` for message ``n`` (36 hex digits, like the real ones)."""
    return hashlib.md5(str(n).encode()).hexdigest() + f"{n % 10_000:04d}"


def danmu(
    n: int,
    text: str | None = None,
    *,
    uid: int | None = None,
    name: str | None = None,
    ts_ms: int = 1_718_000_000_000,
    medal_level: int = 0,
    user_level: int = 12,
    admin: bool = False,
    guard: int = 0,
    with_id: bool = True,
) -> dict[str, Any]:
    """A DANMU_MSG as a 2024 server sends it.

    That is the positional ``info`` array, with the user and the ``extra`` JSON text (holding
    ``id_str``) in ``info[0][15]``.
    """
    text = TEXTS[n % len(TEXTS)] if text is None else text
    uid = 10_000 + n % 997 if uid is None else uid
    name = f"观众{uid}" if name is None else name
    ts_ms += n
    extra = {
        "send_from_me": False, "mode": 0, "color": 16777215, "dm_type": 0, "font_size": 25,
        "player_mode": 1, "show_player_type": 0, "content": text, "user_hash": str(uid * 7919),
        "emoticon_unique": "", "bulge_display": 0, "recommend_score": 3, "main_state_dm_color": "",
        "objective_state_dm_color": "", "direction": 0, "pk_direction": 0, "quartet_direction": 0,
        "anniversary_crowd": 0, "yeah_space_type": "", "yeah_space_url": "", "jump_to_url": "",
        "space_type": "", "space_url": "", "animation": {}, "emots": None, "is_audited": False,
        "id_str": id_str(n) if with_id else "", "icon": None, "show_reply": True, "reply_mid": 0,
        "reply_uname": "", "reply_uname_color": "", "reply_is_mystery": False, "hit_combo": 0,
    }  # fmt: skip
    face = "https://i0.hdslb.com/bfs/face/member/noface.jpg"
    user = {
        "uid": uid,
        "base": {"name": name, "face": face, "name_color": 0, "is_mystery": False, "risk_ctrl_info": None,
                 "origin_info": {"name": name, "face": face},
                 "official_info": {"role": 0, "title": "", "type": -1}},
        "medal": None, "wealth": None, "title": {"old_title_css_id": "", "title_css_id": ""},
        "guard": None, "uhead_frame": None, "guard_leader": {"is_guard_leader": False},
    }  # fmt: skip
    mode_info = {
        "mode": 0,
        "show_player_type": 0,
        "extra": compact(extra),
        "user": user,
    }
    activity = {"activity_identity": "", "activity_source": 0, "not_show": 0}
    meta = [0, 1, 25, 16777215, ts_ms, ts_ms // 1000 % 1_000_000_000, 0, f"{uid * 31:08x}", 0, 0, 0, "",
            0, "{}", "{}", mode_info, activity, 0]  # fmt: skip
    medal = (
        [medal_level, "粉丝团", "主播", ROOM_ID, 6067854, "", 0, 6067854, 6067854, 6067854, 0, 1, 1]
        if medal_level
        else []
    )
    who = [uid, name, int(admin), 0, 0, 10000, 1, ""]
    info = [meta, text, who, medal, [user_level, 0, 9868950, ">50000", 0], ["", ""], 0, guard, None,
            {"ts": ts_ms // 1000, "ct": "5C4B1E2A"}, 0, 0, None, None, 0, 105, [0], None]  # fmt: skip
    return {"cmd": "DANMU_MSG", "dm_v2": "", "info": info}


def send_gift(n: int, *, uid: int = 20_001, name: str = "送礼的人", gift: str = "小花花", num: int = 1,
              price: int = 100, coin_type: str = "gold") -> dict[str, Any]:  # fmt: skip
    """A SEND_GIFT of ``num`` gifts at ``price`` coins each."""
    data = {
        "action": "投喂", "batch_combo_id": f"batch:gift:combo_id:{uid}:{n}", "coin_type": coin_type,
        "giftId": 31036, "giftName": gift, "giftType": 0, "guard_level": 0, "num": num, "price": price,
        "rnd": str(1_718_000_000 + n), "tid": f"{1_718_000_000_000_000 + n}", "timestamp": 1_718_000_000,
        "total_coin": price * num, "uid": uid, "uname": name, "face": "https://i0.hdslb.com/bfs/face/x.jpg",
        "medal_info": {"medal_level": 21, "medal_name": "粉丝团", "anchor_roomid": ROOM_ID, "target_id": 1},
        "blind_gift": None,
    }  # fmt: skip
    return {"cmd": "SEND_GIFT", "data": data}


def danmu_frame(count: int, start: int = 0, ver: int = wire.VER_BROTLI) -> bytes:
    """``count`` DANMU_MSG (numbered from ``start``) in one frame, brotli by default, like a busy room's."""
    return wire.encode_messages((compact(danmu(n)) for n in range(start, start + count)), ver)

"""A JSON relay on loopback, and the frames real relays push, for the feed tests and the benchmark.

``JsonRelay`` serves a real WebSocket like DouyinBarrageGrab's: it pushes whatever frames it is given
(JSON or garbage) to every connected client, records everything a client sends (data messages and
pings apart, so a test can prove a feed is read-only), and can close its clients. Wrap its ``port`` in
``tests.ws_servers.SilentProxy`` for a relay that goes silent.

The builders produce frames as the relays write them:

- DouyinBarrageGrab (github.com/HaoDong108/DouyinBarrageGrab, ``WsBarrageServer.cs`` and
  ``Modles/JsonEntity/BarrageMessages.cs``): ``{"Type": n, "ProcessName": ..., "Data": "<JSON>"}``
  with PascalCase fields; a gift's ``RepeatCount`` is the combo's running total and ``GiftCount`` the
  rise the relay worked out itself.
- barrage-fly (github.com/OrdinaryRoad-Project/ordinaryroad-barrage-fly, ``BarrageFlyMsgDTO.java``):
  ``{"platform", "roomId", "type", "msg"}``, ``msg`` being live-chat-client's message as Jackson
  writes it (``uid``, ``username``, ``content``, ``giftName``, ``giftCount``, ``giftPrice``...).
- the plain form ``{"user", "text"}`` with optional ``id``, ``ts`` and ``type``.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Iterable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from tests.ws_servers import WsServer

Frames = Iterable[str | bytes]
ROOM_ID = 7_412_345_678_901_234_567
WEB_ROOM_ID = "551234567890"
_WORDS = [
    "主播好",
    "666",
    "这个多少钱",
    "今天播多久",
    "哈哈哈哈",
    "有链接吗",
    "来了来了",
    "支持一下",
    "晚上好",
    "怎么买",
]


class JsonRelay(WsServer):
    """A relay on ``url`` (see the module docstring); ``greeting(n)`` gives connection n's first frames."""

    def __init__(self, greeting: Callable[[int], Frames] | None = None) -> None:
        self.greeting = greeting
        self.connections = 0
        self.received: list[str | bytes] = []  # data messages clients sent
        self.pings = 0  # pings clients sent (protocol: allowed)
        self._open: set[ServerConnection] = set()
        self._changed = asyncio.Event()
        super().__init__()

    def serve_options(self) -> dict[str, object]:
        """Record what clients send, pings included; never ping them."""
        return {"create_connection": _recording(self), "ping_interval": None}

    async def handle(self, ws: ServerConnection) -> None:
        """One client: the greeting frames, then whatever the test pushes."""
        await self._handle(ws)

    @property
    def clients(self) -> int:
        """Connections open now."""
        return len(self._open)

    async def push(self, *frames: str | bytes) -> None:
        """Send ``frames`` in order to every open connection."""
        for ws in list(self._open):
            for frame in frames:
                await ws.send(frame)

    async def close_clients(self) -> None:
        """Close every open connection from the relay's side (a relay restart)."""
        await asyncio.gather(*(ws.close(1001, "relay restarting") for ws in list(self._open)))

    async def wait_for(self, ready: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``ready()`` holds (checked after each connection, message or ping)."""
        async with asyncio.timeout(timeout):
            while not ready():
                changed = self._changed
                await changed.wait()

    def changed(self) -> None:
        """Wake whoever waits in ``wait_for``."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        self._open.add(ws)
        self.changed()
        try:
            for frame in self.greeting(self.connections) if self.greeting else ():
                await ws.send(frame)
            async for message in ws:
                self.received.append(message)
                self.changed()
        except ConnectionClosed:
            pass
        finally:
            self._open.discard(ws)
            self.changed()
        await ws.wait_closed()


def _recording(relay: JsonRelay) -> type[ServerConnection]:
    class RecordingConnection(ServerConnection):
        def process_event(self, event: Any) -> None:
            if self.request is not None and isinstance(event, Frame) and event.opcode is Opcode.PING:
                relay.pings += 1
                relay.changed()
            super().process_event(event)

    return RecordingConnection


# -- DouyinBarrageGrab ------------------------------------------------------------------------------


def douyin_user(
    user_id: int,
    nickname: str,
    *,
    fans_level: int = 0,
    club: str = "",
    is_admin: bool = False,
    is_anchor: bool = False,
    pay_level: int = 0,
) -> dict[str, Any]:
    """A ``MsgUser`` as the relay writes it."""
    return {
        "Id": user_id,
        "ShortId": user_id % 10_000_000_000,
        "DisplayId": f"dy{user_id % 100_000_000}",
        "Nickname": nickname,
        "Level": 0,
        "PayLevel": pay_level,
        "Gender": 1 + user_id % 2,
        "HeadImgUrl": f"https://p3-pc.douyinpic.com/aweme/100x100/aweme-avatar/{user_id:x}.jpeg?from=3067671334",
        "SecUid": f"MS4wLjABAAAA{user_id:x}Xk2bnVj7rTgQm0pYb3dhbmd5aW5fc2VjX3VpZA",
        "FansClub": {"ClubName": club, "Level": fans_level},
        "FollowerCount": 12 + user_id % 5000,
        "FollowStatus": 0,
        "FollowingCount": 140,
        "IsAdmin": is_admin,
        "IsAnchor": is_anchor,
    }


def douyin_frame(msg_type: int, data: dict[str, Any], process: str = "直播伴侣") -> str:
    """A ``BarrageMsgPack``: the message serialised again as a string inside the envelope."""
    return json.dumps(
        {"Type": msg_type, "ProcessName": process, "Data": json.dumps(data, ensure_ascii=False)},
        ensure_ascii=False,
    )


def _msg(msg_id: int, user: dict[str, Any] | None, content: str, **fields: Any) -> dict[str, Any]:
    return {
        "MsgId": msg_id,
        "User": user,
        "Owner": {"UserId": "88886666", "Nickname": "主播", "SecUid": "MS4wLjABAAAAowner", "FollowStatus": 0},
        "Content": content,
        "RoomId": str(ROOM_ID),
        "WebRoomId": WEB_ROOM_ID,
        "RoomTitle": "今晚好物专场",
        "IsAnonymous": False,
        "Appid": "1128",
        **fields,
    }


def douyin_chat(msg_id: int, user: dict[str, Any], content: str) -> str:
    """Type 1: a comment."""
    return douyin_frame(1, _msg(msg_id, user, content))


def douyin_like(msg_id: int, user: dict[str, Any], count: int, total: int) -> str:
    """Type 2: likes."""
    return douyin_frame(
        2,
        _msg(
            msg_id, user, f"{user['Nickname']} 为主播点了{count}个赞，总点赞{total}", Count=count, Total=total
        ),
    )


def douyin_enter(msg_id: int, user: dict[str, Any], current: int = 230) -> str:
    """Type 3: a viewer came in."""
    return douyin_frame(
        3,
        _msg(
            msg_id,
            user,
            f"{user['Nickname']} 来了 直播间人数:{current}",
            CurrentCount=current,
            EnterTipType=0,
        ),
    )


def douyin_follow(msg_id: int, user: dict[str, Any]) -> str:
    """Type 4: a follow."""
    return douyin_frame(4, _msg(msg_id, user, f"{user['Nickname']} 关注了主播"))


def douyin_gift(
    msg_id: int,
    user: dict[str, Any],
    *,
    gift_id: int = 463,
    name: str = "小心心",
    group_id: int = 1_717_000_000_001,
    repeat: int = 1,
    increment: int = 1,
    diamonds: int = 1,
    combo: bool = True,
) -> str:
    """Type 5: a gift; ``repeat`` is the combo's running total, ``increment`` the relay's own rise."""
    content = f"{user['Nickname']} 送出 {name}{'(可连击)' if combo else ''} x {repeat}个，增量{increment}个"
    return douyin_frame(
        5,
        _msg(
            msg_id,
            user,
            content,
            GiftId=gift_id,
            GiftName=name,
            GroupId=group_id,
            GiftCount=increment,
            RepeatCount=repeat,
            DiamondCount=diamonds,
            Combo=combo,
            ImgUrl="https://p3-webcast.douyinpic.com/img/webcast/gift.png~tplv-obj.png",
            ToUser=None,
        ),
    )


def douyin_stats(msg_id: int, online: int, total: int) -> str:
    """Type 6: room statistics (no user)."""
    content = f"当前直播间人数 {online}，累计直播间人数 {total}"
    return douyin_frame(
        6,
        _msg(
            msg_id,
            None,
            content,
            OnlineUserCount=online,
            TotalUserCount=total,
            OnlineUserCountStr=str(online),
            TotalUserCountStr=str(total),
        ),
    )


def douyin_fansclub(msg_id: int, user: dict[str, Any], club_type: int, level: int = 1) -> str:
    """Type 7: joined the fans club (``club_type`` 2) or levelled up in it (1)."""
    content = f"恭喜 {user['Nickname']} 成为第1名粉丝团成员" if club_type == 2 else "粉丝团升级"
    return douyin_frame(7, _msg(msg_id, user, content, Type=club_type, Level=level))


def douyin_share(msg_id: int, user: dict[str, Any], share_type: int = 1) -> str:
    """Type 8: shared the room."""
    return douyin_frame(8, _msg(msg_id, user, f"{user['Nickname']} 分享了直播间到微信", ShareType=share_type))


def douyin_live_ended(msg_id: int) -> str:
    """Type 9: the stream ended."""
    return douyin_frame(9, _msg(msg_id, None, "直播已结束"))


def douyin_chat_frames(count: int, *, first_id: int = 7_300_000_000_000_000_000, seed: int = 0) -> list[str]:
    """``count`` realistic comments from a few hundred viewers (for bursts and the benchmark)."""
    rng = random.Random(seed)
    users = [
        douyin_user(
            100_000_000_000 + n * 7919,
            f"用户{n:04d}",
            fans_level=rng.choice((0, 0, 0, 3, 12)),
            club="铁粉团",
            is_admin=n == 0,
        )
        for n in range(300)
    ]
    frames = []
    for n in range(count):
        text = "".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 3)))
        frames.append(douyin_chat(first_id + n, rng.choice(users), text))
    return frames


# -- barrage-fly --------------------------------------------------------------------------------------


def barrage_fly_frame(msg_type: str | None, msg: dict[str, Any], platform: str = "BILIBILI") -> str:
    """A ``BarrageFlyMsgDTO``; ``msg_type`` None for a message barrage-fly has no type for."""
    return json.dumps(
        {"platform": platform, "roomId": "21452505", "type": msg_type, "msg": msg}, ensure_ascii=False
    )


def barrage_fly_danmu(uid: int, username: str, content: str, *, badge: str = "", badge_level: int = 0) -> str:
    """DANMU."""
    msg = {
        "badgeName": badge,
        "badgeLevel": badge_level,
        "uid": uid,
        "username": username,
        "content": content,
    }
    return barrage_fly_frame(
        "DANMU", {**msg, "userAvatar": "https://i0.hdslb.com/bfs/face/member/noface.jpg"}
    )


def barrage_fly_gift(
    uid: str, username: str, name: str, count: int, price: int, *, platform: str = "BILIBILI"
) -> str:
    """GIFT: ``price`` is one item's price in the platform's unit (bilibili gold, Douyin diamonds)."""
    msg = {
        "badgeName": "",
        "badgeLevel": 0,
        "uid": uid,
        "username": username,
        "giftName": name,
        "giftImg": "https://s1.hdslb.com/bfs/live/gift.png",
        "giftId": "31036",
        "giftCount": count,
        "giftPrice": price,
        "receiveUid": "1",
        "receiveUsername": "主播",
        "data": {"action": "投喂", "price": price, "num": count, "coin_type": "gold"},
    }
    return barrage_fly_frame("GIFT", msg, platform)


def barrage_fly_superchat(uid: str, username: str, content: str, price_cny: int) -> str:
    """SUPER_CHAT from bilibili: the price in CNY sits in ``data.price``."""
    msg = {"uid": uid, "username": username, "content": content, "duration": 60, "badgeLevel": 0}
    return barrage_fly_frame(
        "SUPER_CHAT", {**msg, "data": {"price": price_cny, "message": content, "time": 60}}
    )


def barrage_fly_enter(uid: int, username: str) -> str:
    """ENTER_ROOM."""
    return barrage_fly_frame(
        "ENTER_ROOM", {"uid": uid, "username": username, "badgeName": "", "badgeLevel": 0}
    )


def barrage_fly_like(uid: str, username: str, clicks: int = 1) -> str:
    """LIKE."""
    return barrage_fly_frame("LIKE", {"uid": uid, "username": username, "clickCount": clicks})


def barrage_fly_social(uid: str, username: str, action: str) -> str:
    """SOCIAL: ``action`` SUBSCRIBE (followed) or SHARE."""
    msg = {"uid": uid, "username": username, "badgeName": "", "badgeLevel": 0, "socialAction": action}
    return barrage_fly_frame("SOCIAL", msg)


# -- the plain form -----------------------------------------------------------------------------------


def plain_frame(user: str, text: str, **extra: Any) -> str:
    """``{"user", "text"}`` plus any of ``id``, ``ts``, ``type``..."""
    return json.dumps({"user": user, "text": text, **extra}, ensure_ascii=False)

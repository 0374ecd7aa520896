"""bilibili's message cmds into comment events: one mapper per cmd, from the message's JSON.

Each mapper takes (message, its wire text, received_at ms, gold coins per CNY). Field layouts follow
what the servers send today (DANMU_MSG's positional ``info`` array, the user in ``info[0][15]`` on
newer servers) and the open platform's documented messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from danmaku.events import ChatEvent, Gift, Kind, User, derived_id

PLATFORM = "bilibili"
GUARD_NAMES = {1: "总督", 2: "提督", 3: "舰长"}
SUPERCHAT = "醒目留言"

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

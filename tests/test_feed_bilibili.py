from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import brotli
import pytest
from aiohttp import web
from pydantic import ValidationError

from danmaku.events import ChatEvent, derived_id
from danmaku.feeds import bilibili_packet as wire
from danmaku.feeds.base import FeedAuthError, GarbageFrame
from danmaku.feeds.bilibili import BilibiliFeed, BilibiliFeedConfig
from tests.bilibili_server import (
    KEY,
    POPULARITY,
    ROOM_ID,
    BilibiliServer,
    compact,
    danmu,
    danmu_frame,
    id_str,
    send_gift,
)
from tests.feeds import Collector
from tests.feeds import running as running_feed
from tests.http_servers import serve
from tests.ws_servers import SilentProxy

# -- the codec ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ver", [wire.VER_JSON, wire.VER_PLAIN])
def test_a_plain_packet_round_trips(ver: int) -> None:
    frame = wire.encode(wire.OP_MESSAGE, '{"cmd":"X"}', ver, seq=7)
    assert len(frame) == 16 + 11
    assert frame[:16] == bytes.fromhex("0000001b 0010") + ver.to_bytes(2, "big") + bytes.fromhex(
        "00000005 00000007"
    )
    assert wire.decode(frame) == [wire.Packet(wire.OP_MESSAGE, ver, 7, b'{"cmd":"X"}')]


@pytest.mark.parametrize("ver", [wire.VER_JSON, wire.VER_ZLIB, wire.VER_BROTLI])
def test_messages_come_back_in_order_whatever_the_version(ver: int) -> None:
    bodies = [compact({"cmd": "M", "n": n, "text": "弹幕" * n}) for n in range(5)]
    frame = wire.encode_messages(bodies, ver)
    packets = wire.decode(frame)
    assert [p.body.decode() for p in packets] == bodies
    assert {(p.op, p.ver) for p in packets} == {(wire.OP_MESSAGE, wire.VER_JSON)}
    assert int.from_bytes(frame[6:8], "big") == ver


def test_nested_and_several_packets_in_one_frame_keep_their_order() -> None:
    inner = wire.encode_messages(['{"n":2}', '{"n":3}'], wire.VER_ZLIB)
    nested = wire.encode(wire.OP_MESSAGE, inner + wire.encode(wire.OP_MESSAGE, '{"n":4}', 0), wire.VER_BROTLI)
    frame = (
        wire.encode(wire.OP_HEARTBEAT_REPLY, (77).to_bytes(4, "big"))
        + wire.encode(wire.OP_MESSAGE, '{"n":1}', 0)
        + nested
        + wire.encode_messages(['{"n":5}'], wire.VER_BROTLI)
    )
    packets = wire.decode(frame)
    assert packets[0] == wire.Packet(wire.OP_HEARTBEAT_REPLY, wire.VER_PLAIN, 1, (77).to_bytes(4, "big"))
    assert [json.loads(p.body)["n"] for p in packets[1:]] == [1, 2, 3, 4, 5]


def _header(pack_len: int, header_len: int = 16, ver: int = 0, op: int = 5) -> bytes:
    return wire.HEADER.pack(pack_len, header_len, ver, op, 1)


def _nest(levels: int) -> bytes:
    frame = wire.encode(wire.OP_MESSAGE, "{}", 0)
    for _ in range(levels):
        frame = wire.encode(wire.OP_MESSAGE, frame, wire.VER_ZLIB)
    return frame


def _compressed(body: bytes, ver: int, cut: int = 0) -> bytes:
    data = zlib.compress(body) if ver == wire.VER_ZLIB else brotli.compress(body, quality=1)
    data = data[: len(data) - cut]
    return _header(16 + len(data), ver=ver) + data


GOOD = wire.encode(wire.OP_MESSAGE, '{"cmd":"X"}', 0)
ZEROS = b"\0" * (wire.MAX_INFLATED + 1)


GARBAGE = {
    "empty": (b"", "empty"),
    "short header": (GOOD[:10], "truncated header"),
    "short body": (GOOD[:-1], "bad lengths"),
    "trailing bytes": (GOOD + GOOD[:5], "truncated header"),
    "header_len < 16": (_header(16 + 4, header_len=12) + b"abcd", "bad lengths"),
    "pack_len < header": (_header(8) + b"abcdefgh", "bad lengths"),
    "pack_len 2 GB": (_header(1 << 31) + b"x", "bad lengths"),
    "corrupt brotli": (_header(16 + 9, ver=wire.VER_BROTLI) + b"\xff" * 9, "corrupt brotli"),
    "corrupt zlib": (_header(16 + 9, ver=wire.VER_ZLIB) + b"\xff" * 9, "corrupt zlib"),
    "cut zlib": (
        _compressed(wire.encode_messages(["{}"] * 20, 0), wire.VER_ZLIB, cut=6),
        "truncated compressed",
    ),
    "cut brotli": (
        _compressed(wire.encode_messages(["{}"] * 20, 0), wire.VER_BROTLI, cut=3),
        "truncated compressed",
    ),
    "empty zlib": (_compressed(b"", wire.VER_ZLIB), "no packets"),
    "not packets inside": (wire.encode(wire.OP_MESSAGE, b"x" * 40, wire.VER_BROTLI), "bad lengths"),
    "too deep": (_nest(wire.MAX_DEPTH + 1), "nested deeper"),
    "brotli bomb": (_compressed(ZEROS, wire.VER_BROTLI), "inflates past"),
    "zlib bomb": (_compressed(ZEROS, wire.VER_ZLIB), "inflates past"),
}


@pytest.mark.parametrize(("frame", "why"), GARBAGE.values(), ids=GARBAGE.keys())
def test_unreadable_frames_are_garbage(frame: bytes, why: str) -> None:
    with pytest.raises(GarbageFrame, match=why):
        wire.decode(frame)


def test_the_inflation_budget_is_for_the_whole_frame() -> None:
    half = wire.encode(wire.OP_MESSAGE, wire.encode(wire.OP_MESSAGE, b"y" * (wire.MAX_INFLATED // 2), 0), 2)
    assert len(wire.decode(half)) == 1
    with pytest.raises(GarbageFrame, match="inflates past"):
        wire.decode(half + half)


def test_nesting_up_to_the_limit_is_read() -> None:
    assert wire.decode(_nest(wire.MAX_DEPTH)) == [wire.Packet(wire.OP_MESSAGE, 0, 1, b"{}")]


# -- messages into events -----------------------------------------------------------------------------


def feed(**extra: Any) -> BilibiliFeed:
    return BilibiliFeed(BilibiliFeedConfig(room_id=ROOM_ID, **extra), Collector())


def one(message: dict[str, Any] | str, ver: int = wire.VER_BROTLI) -> ChatEvent:
    text = message if isinstance(message, str) else compact(message)
    events = feed().handle(wire.encode_messages([text], ver))
    assert len(events) == 1
    assert events[0].raw == text and events[0].platform == "bilibili"
    return events[0]


def test_danmu_msg_is_a_chat_line_with_its_id_str_and_user() -> None:
    message = danmu(
        3, "主播好", uid=42, name="小明", ts_ms=1_718_000_000_000, medal_level=21, admin=True, guard=3
    )
    message["cmd"] = "DANMU_MSG:4:0:2:2:2:0"
    event = one(message)
    assert (event.kind, event.id, event.text, event.ts) == ("chat", id_str(3), "主播好", 1_718_000_000_003)
    assert (event.user.id, event.user.name, event.user.level) == ("42", "小明", 21)
    assert event.user.roles == ("admin", "member")


def test_danmu_msg_without_id_or_medal_gets_a_derived_id_and_the_user_level() -> None:
    message = danmu(5, "hi", uid=7, user_level=33, with_id=False)
    event = one(message, wire.VER_ZLIB)
    assert event.id == derived_id("bilibili", 7, 1_718_000_000_005, "hi")
    assert event.user.level == 33 and event.user.roles == ()
    old_style = {"cmd": "DANMU_MSG", "info": [[0, 1, 25, 0, 1000, 0], "old", [9, "旧"], [], [4]]}
    event = one(old_style, wire.VER_JSON)
    assert (event.id, event.user.name, event.user.level) == (derived_id("bilibili", 9, 1000, "old"), "旧", 4)


def test_danmu_msg_falls_back_to_the_user_in_the_mode_info() -> None:
    message = danmu(1, "x", uid=55, name="新版")
    message["info"][2] = [0, "", 0]
    event = one(message)
    assert (event.user.id, event.user.name) == ("55", "新版")
    spaced = danmu(2, "y")
    mode = spaced["info"][0][15]
    mode["extra"] = json.dumps(json.loads(mode["extra"]))  # ", " and ": " separators
    assert one(spaced).id == id_str(2)


OPEN_USER = {"uid": 0, "open_id": "39b8fedb-60a5-4e29-ac75-b16955f7e632", "uname": "开放", "uface": ""}
OPEN_DM = {"cmd": "LIVE_OPEN_PLATFORM_DM", "data": {
    **OPEN_USER, "timestamp": 1_718_000_400, "room_id": ROOM_ID, "msg": "开放平台弹幕", "msg_id": "dm-1",
    "guard_level": 2, "fans_medal_level": 12, "fans_medal_wearing_status": True, "fans_medal_name": "牌子",
    "emoji_img_url": "", "dm_type": 0, "is_admin": 1}}  # fmt: skip
CASES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (
        send_gift(1, uid=11, name="甲", gift="小花花", num=3, price=100),
        {"kind": "gift", "id": "1718000000000001", "user": ("11", "甲"), "gift": ("小花花", 3, 0.3)},
    ),
    (
        send_gift(2, uid=12, gift="辣条", num=5, price=100, coin_type="silver"),
        {"kind": "gift", "gift": ("辣条", 5, 0.0), "ts": 1_718_000_000_000},
    ),
    (
        {"cmd": "SUPER_CHAT_MESSAGE", "data": {
            "id": 9_811_234, "uid": 13, "price": 30, "message": "唱首歌吧", "start_time": 1_718_000_100,
            "gift": {"gift_id": 12000, "gift_name": "醒目留言", "num": 1},
            "user_info": {"uname": "乙", "guard_level": 3, "user_level": 20},
            "medal_info": {"medal_level": 8}}},
        {"kind": "superchat", "id": "9811234", "text": "唱首歌吧", "gift": ("醒目留言", 1, 30.0),
         "user": ("13", "乙"), "roles": ("member",), "level": 8, "ts": 1_718_000_100_000},
    ),
    *[
        (
            {"cmd": "INTERACT_WORD", "data": {
                "uid": 14, "uname": "丙", "msg_type": msg_type, "timestamp": 1_718_000_200,
                "trigger_time": 1_718_000_200_123_456_789, "fans_medal": {"medal_level": 2}}},
            {"kind": kind, "id": derived_id("bilibili", kind, 14, 1_718_000_200_123_456_789), "level": 2},
        )
        for msg_type, kind in [(1, "enter"), (2, "follow"), (3, "share"), (4, "follow"), (5, "follow")]
    ],
    (
        {"cmd": "GUARD_BUY", "data": {
            "uid": 15, "username": "丁", "guard_level": 3, "num": 2, "price": 198_000, "gift_id": 10003,
            "gift_name": "舰长", "start_time": 1_718_000_300, "end_time": 1_718_000_300}},
        {"kind": "gift", "gift": ("舰长", 2, 396.0), "roles": ("member",), "user": ("15", "丁")},
    ),
    (
        {"cmd": "LIKE_INFO_V3_CLICK", "data": {"uid": 16, "uname": "戊", "like_text": "为主播点赞了",
                                               "fans_medal": {"medal_level": 5}}},
        {"kind": "like", "text": "为主播点赞了", "user": ("16", "戊"), "level": 5},
    ),
    (
        OPEN_DM,
        {"kind": "chat", "id": "dm-1", "text": "开放平台弹幕", "user": (OPEN_USER["open_id"], "开放"),
         "roles": ("admin", "member"), "level": 12, "ts": 1_718_000_400_000},
    ),
    (
        {"cmd": "LIVE_OPEN_PLATFORM_SEND_GIFT", "data": {
            **OPEN_USER, "room_id": ROOM_ID, "gift_id": 31036, "gift_name": "小花花", "gift_num": 10,
            "price": 100, "r_price": 90, "paid": True, "fans_medal_level": 0, "guard_level": 0,
            "timestamp": 1_718_000_500, "msg_id": "gift-1", "anchor_info": {}}},
        {"kind": "gift", "id": "gift-1", "gift": ("小花花", 10, 0.9)},
    ),
    (
        {"cmd": "LIVE_OPEN_PLATFORM_SEND_GIFT", "data": {
            **OPEN_USER, "gift_name": "辣条", "gift_num": 3, "price": 100, "r_price": 100, "paid": False,
            "timestamp": 1_718_000_501, "msg_id": "gift-2"}},
        {"kind": "gift", "gift": ("辣条", 3, 0.0)},
    ),
    (
        {"cmd": "LIVE_OPEN_PLATFORM_SUPER_CHAT", "data": {
            **OPEN_USER, "room_id": ROOM_ID, "message_id": 777, "message": "开放SC", "rmb": 50,
            "timestamp": 1_718_000_600, "start_time": 1_718_000_600, "end_time": 1_718_000_720,
            "guard_level": 0, "fans_medal_level": 3, "msg_id": "sc-1"}},
        {"kind": "superchat", "id": "sc-1", "text": "开放SC", "gift": ("醒目留言", 1, 50.0), "level": 3},
    ),
    (
        {"cmd": "LIVE_OPEN_PLATFORM_GUARD", "data": {
            "user_info": {"open_id": "oid-g", "uname": "舰长本人", "uface": ""}, "guard_level": 3,
            "guard_num": 1, "guard_unit": "月", "price": 138_000, "fans_medal_level": 20,
            "room_id": ROOM_ID, "msg_id": "guard-1", "timestamp": 1_718_000_700}},
        {"kind": "gift", "id": "guard-1", "gift": ("舰长", 1, 138.0), "user": ("oid-g", "舰长本人"),
         "level": 20},
    ),
    (
        {"cmd": "LIVE_OPEN_PLATFORM_LIKE", "data": {
            **OPEN_USER, "timestamp": 1_718_000_800, "room_id": ROOM_ID, "like_text": "为主播点赞了",
            "like_count": 12, "fans_medal_level": 0, "msg_id": "like-1"}},
        {"kind": "like", "id": "like-1", "text": "为主播点赞了"},
    ),
    (
        {"cmd": "LIVE_OPEN_PLATFORM_LIVE_ROOM_ENTER", "data": {
            **OPEN_USER, "room_id": ROOM_ID, "timestamp": 1_718_000_900, "msg_id": "enter-1"}},
        {"kind": "enter", "id": "enter-1", "user": (OPEN_USER["open_id"], "开放"), "ts": 1_718_000_900_000},
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("message", "expect"), CASES, ids=[f"{m['cmd']}-{n}" for n, (m, _) in enumerate(CASES)]
)
def test_each_cmd_maps_to_its_event(message: dict[str, Any], expect: dict[str, Any]) -> None:
    event = one(message)
    seen = {
        "kind": event.kind,
        "id": event.id,
        "text": event.text,
        "ts": event.ts,
        "user": (event.user.id, event.user.name),
        "roles": event.user.roles,
        "level": event.user.level,
        "gift": None if event.gift is None else (event.gift.name, event.gift.count, event.gift.value),
    }
    assert {key: seen[key] for key in expect} == expect
    assert event.gift is None or event.gift.currency == "CNY"


def test_gift_values_follow_gold_per_cny() -> None:
    events = feed(gold_per_cny=100).handle(wire.encode_messages([compact(send_gift(1, num=2, price=500))]))
    assert events[0].gift is not None and events[0].gift.value == 10.0


def test_unknown_cmds_are_ignored_and_broken_messages_skipped_without_losing_the_frame() -> None:
    f = feed()
    frame = wire.encode_messages(
        [
            compact({"cmd": "ONLINE_RANK_COUNT", "data": {"count": 5}}),
            '{"data":{},"cmd":"STOP_LIVE_ROOM_LIST"}',
            compact(danmu(1)),
            compact({"cmd": "DANMU_MSG", "info": [[0, 1]]}),  # too short
            compact({"cmd": "DANMU_MSG", "info": [[0, 1, 25, 0, 1], 5, [1, "a"]]}),  # text not text
            compact({"cmd": "SEND_GIFT", "data": {"uname": "no uid"}}),
            '{"cmd":"DANMU_MSG","info":',  # truncated JSON
            '{"cmd":"DANMU_MSG',  # truncated in the cmd
            "[1, 2, 3]",
            '{"cmd": 5}',
            b'{"cmd":"DANMU_MSG","info":"\xff\xfe"}',  # not UTF-8
            compact(danmu(2)),
        ]
    )
    events = f.handle(frame)
    assert [e.id for e in events] == [id_str(1), id_str(2)]
    assert f.stats.garbage == 8


def test_heartbeat_replies_and_auth_replies_give_no_events() -> None:
    f = feed()
    frame = wire.encode(wire.OP_HEARTBEAT_REPLY, (1234).to_bytes(4, "big")) + wire.encode(
        wire.OP_AUTH_REPLY, "{}"
    )
    assert f.handle(frame) == []
    assert f.popularity == 1234 and f.stats.garbage == 0
    with pytest.raises(GarbageFrame):
        f.handle("a text frame")


def test_config_needs_a_room_or_an_auth_body() -> None:
    with pytest.raises(ValidationError, match="room_id"):
        BilibiliFeedConfig()
    with pytest.raises(ValidationError, match="auth_body"):
        BilibiliFeedConfig(auth_body="not json")
    with pytest.raises(ValidationError, match="info_url"):
        BilibiliFeedConfig(room_id=1, info_url="https://x/?id={roomid}")
    assert BilibiliFeedConfig(auth_body_env="BILI_AUTH").room_id == 0
    assert BilibiliFeedConfig(room_id=1, urls=["wss://a/sub"]).urls == ("wss://a/sub",)


# -- against the server -------------------------------------------------------------------------------


def config(url: str, **extra: Any) -> BilibiliFeedConfig:
    settings: dict[str, Any] = {"room_id": ROOM_ID, "url": url, "token": KEY, "fetch_token": False}
    settings.update(extra)
    return BilibiliFeedConfig(backoff_initial_s=0.02, backoff_max_s=0.1, open_timeout_s=2, **settings)


@asynccontextmanager
async def running(cfg: BilibiliFeedConfig) -> AsyncIterator[tuple[BilibiliFeed, Collector]]:
    sink = Collector()
    async with running_feed(BilibiliFeed(cfg, sink)) as f:
        yield f, sink
    assert f.stats.state == "closed"


async def test_auth_then_messages_in_every_version() -> None:
    async with BilibiliServer() as server, running(config(server.url)) as (f, sink):
        await server.wait_connections(1)
        assert server.auth() == {
            "uid": 0, "roomid": ROOM_ID, "protover": 3, "platform": "web", "type": 2, "key": KEY,
        }  # fmt: skip
        await server.push([danmu(1)], wire.VER_JSON)
        await server.push([danmu(2), danmu(3)], wire.VER_ZLIB)
        await server.send(danmu_frame(20, start=4))
        await sink.wait_for(23)
    assert [e.id for e in sink.events] == [id_str(n) for n in range(1, 24)]
    assert all(e.feed == "bilibili" for e in sink.events)
    assert f.stats.connects == 1 and f.stats.garbage == 0 and f.stats.auth_failures == 0


async def test_a_refused_key_counts_as_an_auth_failure_and_is_retried() -> None:
    async with BilibiliServer() as server, running(config(server.url, token="expired")) as (f, _):
        await server.wait_until(lambda: len(server.auths) >= 3)
        assert f.stats.connects == 0
    assert f.stats.auth_failures >= 2
    assert "code -101" in f.stats.last_error


async def test_heartbeat_replies_keep_a_quiet_connection_alive() -> None:
    async with (
        BilibiliServer() as server,
        running(config(server.url, heartbeat_s=0.1, liveness_s=0.4)) as (f, _),
    ):
        await server.wait_connections(1)
        await server.wait_until(lambda: server.heartbeats >= 12)  # 1.2 s: three liveness spans
        assert f.stats.connects == 1 and f.stats.silent_timeouts == 0
        assert f.stats.frames >= 10 and f.popularity == POPULARITY


async def test_reconnects_after_the_server_closes() -> None:
    async with BilibiliServer() as server, running(config(server.url)) as (f, sink):
        await server.wait_connections(1)
        await server.push([danmu(1)])
        await sink.wait_for(1)
        await server.close()
        await server.wait_connections(2)
        await server.push([danmu(2)])
        await sink.wait_for(2)
    assert f.stats.connects == 2 and f.stats.disconnects == 1


async def test_a_silent_connection_is_replaced() -> None:
    async with (
        BilibiliServer() as server,
        SilentProxy(server.port) as proxy,
        running(config(f"ws://127.0.0.1:{proxy.port}/sub", liveness_s=0.4)) as (f, sink),
    ):
        await server.wait_connections(1)
        proxy.freeze()
        proxy.thaw()
        await server.wait_connections(2)
        await server.push([danmu(2)])
        await sink.wait_for(1)
    assert [e.id for e in sink.events] == [id_str(2)]
    assert f.stats.silent_timeouts == 1 and f.stats.connects == 2


async def test_garbage_frames_are_skipped_and_counted() -> None:
    async with BilibiliServer() as server, running(config(server.url)) as (f, sink):
        await server.wait_connections(1)
        await server.send(b"\x00\x01 not a packet")
        await server.send("a text frame")
        await server.send(danmu_frame(3)[:-5])
        await server.send(wire.encode(wire.OP_MESSAGE, b"{not json", 0))
        await server.send(danmu_frame(2, start=10))
        await sink.wait_for(2)
        assert [e.id for e in sink.events] == [id_str(10), id_str(11)]
        assert f.stats.garbage == 4 and f.stats.connects == 1


async def test_the_key_is_fetched_with_the_cookie_and_the_host_list_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    requests: list[tuple[str, str]] = []
    async with BilibiliServer(key="fetched-key") as server, SilentProxy(server.port) as proxy:

        async def info(request: web.Request) -> web.Response:
            requests.append((request.query_string, request.headers.get("Cookie", "")))
            host = {"host": "127.0.0.1", "port": 2243, "wss_port": 443, "ws_port": proxy.port}
            return web.json_response(
                {"code": 0, "message": "0", "data": {"token": "fetched-key", "host_list": [host]}}
            )

        monkeypatch.setenv(
            "TEST_BILI_COOKIE", "SESSDATA=abc%2C123; DedeUserID=4242; buvid3=B-3infoc; bili_jct=x"
        )
        async with serve(info) as base:
            cfg = config(server.url, token="", fetch_token=True, cookie_env="TEST_BILI_COOKIE",
                         info_url=base + "/getDanmuInfo?id={room_id}&type=0")  # fmt: skip
            async with running(cfg) as (f, sink):
                await server.wait_connections(1)
                assert proxy.connections == 1  # the key is fetched first: its host list is used at once
                await server.close()
                await server.wait_connections(2)
                assert proxy.connections == 2
                await server.push([danmu(1)])
                await sink.wait_for(1)
    assert requests[0] == (
        f"id={ROOM_ID}&type=0",
        "SESSDATA=abc%2C123; DedeUserID=4242; buvid3=B-3infoc; bili_jct=x",
    )
    assert server.auth(0) == {
        "uid": 4242, "roomid": ROOM_ID, "protover": 3, "platform": "web", "type": 2, "key": "fetched-key",
        "buvid": "B-3infoc",
    }  # fmt: skip
    assert f.stats.connects == 2


@pytest.mark.parametrize("reply", [{"code": -352, "message": "risk control", "data": None}, "500"])
async def test_a_failed_key_fetch_connects_anonymously(
    reply: dict[str, Any] | str, caplog: pytest.LogCaptureFixture
) -> None:
    async def info(request: web.Request) -> web.Response:
        if reply == "500":
            return web.Response(status=500)
        return web.json_response(reply)

    async with BilibiliServer(key=None) as server, serve(info) as base:
        cfg = config(server.url, token="", fetch_token=True, info_url=base + "/?id={room_id}")
        with caplog.at_level(logging.WARNING, "danmaku.feed"):
            async with running(cfg) as (f, sink):
                await server.wait_connections(1)
                await server.push([danmu(1)])
                await sink.wait_for(1)
    assert server.auth(0)["key"] == "" and server.auth(0)["uid"] == 0
    assert "connecting anonymously" in caplog.text
    assert f.stats.connects == 1


async def test_the_open_platform_sends_its_auth_body_verbatim(monkeypatch: pytest.MonkeyPatch) -> None:
    body = f'{{"roomid":{ROOM_ID},"protoover":2,"key":"{KEY}","group":"open","uid":0}}'
    monkeypatch.setenv("TEST_BILI_AUTH", body)
    async with BilibiliServer() as server:
        cfg = config("ws://127.0.0.1:9/nowhere", urls=[server.url], auth_body_env="TEST_BILI_AUTH", room_id=0)
        async with running(cfg) as (_, sink):
            await server.wait_connections(1)
            await server.push([OPEN_DM])
            await sink.wait_for(1)
    assert server.auths[0] == body.encode()
    assert sink.events[0].id == "dm-1"


async def test_a_missing_open_platform_auth_body_is_an_auth_failure() -> None:
    cfg = config("ws://127.0.0.1:9/sub", auth_body_env="TEST_BILI_AUTH_UNSET", room_id=0)
    feed = BilibiliFeed(cfg, Collector())
    with pytest.raises(FeedAuthError, match="TEST_BILI_AUTH_UNSET"):
        await feed.prepare()  # refused before any connection (run() counts it as an auth failure)


async def test_one_cancel_stops_the_feed_even_as_a_frame_arrives() -> None:
    # a heartbeat reply is often ready as a test cancels: with wait_for (Python 3.11) the cancel was lost
    async with BilibiliServer() as server:
        sink = Collector()
        f = BilibiliFeed(config(server.url), sink)
        task = asyncio.create_task(f.run())
        await server.wait_connections(1)
        await server.push([danmu(1)])
        await server.push([danmu(2)])  # the heartbeat reply and this one are ready as the test cancels
        await sink.wait_for(1)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        while not task.done():  # leave nothing running behind the failure
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        assert done

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import ValidationError

from danmaku.events import ChatEvent, derived_id
from danmaku.feeds.base import GarbageFrame
from danmaku.feeds.json_presets import JsonMapping, compile_path
from danmaku.feeds.json_relay import JsonFeed, JsonFeedConfig, JsonReader
from tests.feeds import Collector, running
from tests.json_relay_server import (
    JsonRelay,
    barrage_fly_danmu,
    barrage_fly_enter,
    barrage_fly_frame,
    barrage_fly_gift,
    barrage_fly_like,
    barrage_fly_social,
    barrage_fly_superchat,
    douyin_chat,
    douyin_chat_frames,
    douyin_enter,
    douyin_fansclub,
    douyin_follow,
    douyin_frame,
    douyin_gift,
    douyin_like,
    douyin_live_ended,
    douyin_share,
    douyin_stats,
    douyin_user,
    plain_frame,
)
from tests.ws_servers import SilentProxy

ALICE = douyin_user(111_222_333, "小爱", fans_level=7, club="铁粉团")
BOB = douyin_user(444_555_666, "阿伯")
RECEIVED = 1_750_000_000_000


def reader(preset: str = "douyin_barrage_grab", **extra: Any) -> JsonReader:
    return JsonReader(*JsonFeedConfig(url="ws://relay", preset=preset, **extra).resolved())


def events(r: JsonReader, *frames: str | bytes) -> list[ChatEvent]:
    out: list[ChatEvent] = []
    for frame in frames:
        read, skipped = r.read(frame, RECEIVED)
        assert skipped == []
        out += read
    return out


def one(r: JsonReader, frame: str | bytes) -> ChatEvent:
    (event,) = events(r, frame)
    return event


def who(event: ChatEvent) -> tuple[str, str, int, tuple[str, ...]]:
    return event.user.id, event.user.name, event.user.level, event.user.roles


def gift(event: ChatEvent) -> tuple[str, int, float]:
    assert event.gift is not None
    return event.gift.name, event.gift.count, event.gift.value


# -- paths -------------------------------------------------------------------------------------------


def test_paths_compile_keys_indexes_and_alternatives() -> None:
    assert compile_path("Data.User.Nickname") == ((("Data", None), ("User", None), ("Nickname", None)),)
    assert compile_path("info[2][1]") == compile_path("info.2.1") == ((("info", None), ("2", 2), ("1", 1)),)
    assert compile_path("a|b.c") == ((("a", None),), (("b", None), ("c", None)))
    for bad in ("a..b", "a[x]", "a[0", "a]", "", "a|"):
        with pytest.raises(ValueError, match="path"):
            compile_path(bad)


# -- DouyinBarrageGrab -------------------------------------------------------------------------------


def test_douyin_chat_becomes_a_comment_with_its_user() -> None:
    frame = douyin_chat(7_300_000_000_000_000_001, ALICE, "主播好，这个多少钱")
    event = one(reader(), frame)
    assert (event.id, event.platform, event.kind, event.text) == (
        "7300000000000000001",
        "douyin",
        "chat",
        "主播好，这个多少钱",
    )
    assert who(event) == ("111222333", "小爱", 7, ("member",))
    assert event.ts == event.received_at == RECEIVED  # the relay gives no time: when we read it
    assert event.raw == frame and event.gift is None
    admin = douyin_user(999, "房管", is_admin=True)
    assert one(reader(), douyin_chat(2, admin, "hi")).user.roles == ("moderator",)


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (douyin_chat(1, ALICE, "你好"), "chat"),
        (douyin_like(2, ALICE, 10, 100), "like"),
        (douyin_enter(3, ALICE), "enter"),
        (douyin_follow(4, ALICE), "follow"),
        (douyin_gift(5, ALICE, combo=False), "gift"),
        (douyin_stats(6, 230, 5000), None),  # statistics, not an event
        (douyin_fansclub(7, ALICE, club_type=2), "follow"),  # joined the fans club
        (douyin_fansclub(8, ALICE, club_type=1), None),  # levelled up in it
        (douyin_share(9, ALICE), "share"),
        (douyin_live_ended(10), None),
    ],
)
def test_douyin_types_map_to_kinds(frame: str, kind: str | None) -> None:
    assert [e.kind for e in events(reader(), frame)] == ([kind] if kind else [])


def test_douyin_gifts_count_the_increment_not_the_running_total() -> None:
    def rose(msg_id: int, user: dict[str, Any], repeat: int, increment: int) -> str:
        return douyin_gift(msg_id, user, name="玫瑰", diamonds=5, repeat=repeat, increment=increment)

    combo = [rose(1, ALICE, 1, 1), rose(2, ALICE, 3, 2), rose(3, BOB, 2, 2), rose(4, ALICE, 4, 1)]
    got = [(e.id, e.user.name, *gift(e)[1:]) for e in events(reader(), *combo)]
    assert got == [("1", "小爱", 1, 0.5), ("2", "小爱", 2, 1.0), ("3", "阿伯", 2, 1.0), ("4", "小爱", 1, 0.5)]
    assert sum(gift(e)[1] for e in events(reader(), *combo) if e.user.name == "小爱") == 4  # not 1+3+4


def test_douyin_gift_value_follows_diamond_value() -> None:
    r = reader(diamond_value=0.2)
    first = one(r, douyin_gift(1, ALICE, name="嘉年华", diamonds=3000, group_id=11, repeat=1, combo=False))
    assert gift(first) == ("嘉年华", 1, 600.0)
    assert first.gift is not None and first.gift.currency == "CNY"
    batch = one(r, douyin_gift(3, BOB, name="小心心", diamonds=1, group_id=0, repeat=66, increment=66))
    assert gift(batch) == ("小心心", 66, 13.2)


def running_totals(**extra: Any) -> JsonMapping:
    """A relay that sends a combo's running total: count_mode "increment" counts each rise."""
    return JsonMapping(
        gift_count="Data.RepeatCount", count_mode="increment", combo_group="Data.GroupId", **extra
    )


def test_increment_mode_counts_only_what_each_message_adds() -> None:
    def rose(msg_id: int, user: dict[str, Any], repeat: int, group: int = 1_717_000_001) -> str:
        return douyin_gift(msg_id, user, name="玫瑰", diamonds=5, group_id=group, repeat=repeat)

    combo = [
        rose(1, ALICE, 1),
        rose(2, ALICE, 3),  # the relay skipped a message: 2 more
        rose(3, ALICE, 3),  # a resend
        rose(4, BOB, 2),  # another user in the same group
        rose(5, ALICE, 4),
        rose(6, ALICE, 2),  # late, out of order
        rose(7, ALICE, 1, group=1_717_000_002),  # a new combo
    ]
    got = [(e.id, e.user.name, *gift(e)[1:]) for e in events(reader(mapping=running_totals()), *combo)]
    assert got == [
        ("1", "小爱", 1, 0.5),
        ("2", "小爱", 2, 1.0),
        ("4", "阿伯", 2, 1.0),
        ("5", "小爱", 1, 0.5),
        ("7", "小爱", 1, 0.5),
    ]


def test_combo_memory_is_per_connection_and_bounded() -> None:
    config = JsonFeedConfig(url="ws://relay", preset="douyin_barrage_grab", mapping=running_totals())
    feed = JsonFeed(config, _ignore)
    roses = douyin_gift(1, ALICE, group_id=9, repeat=3)
    assert [gift(e)[1] for e in feed.handle(roses)] == [3]
    assert feed.handle(roses) == []
    feed.reset()  # a new connection
    assert [gift(e)[1] for e in feed.handle(roses)] == [3]

    small = JsonReader(*config.resolved(), combo_memory=2)
    for group in (1, 2, 3):  # group 1 is forgotten when group 3 arrives
        events(small, douyin_gift(group, ALICE, group_id=group, repeat=1))
    assert [gift(e)[1] for e in events(small, douyin_gift(4, ALICE, group_id=1, repeat=1))] == [1]
    assert events(small, douyin_gift(5, ALICE, group_id=3, repeat=1)) == []


def test_preset_fields_can_be_overridden() -> None:
    mapping = JsonMapping(kinds={"2": "ignore", "6": "system"}, text="Data.User.Nickname")
    r = reader(mapping=mapping, platform="kuaishou")
    assert events(r, douyin_like(1, ALICE, 1, 1)) == []
    stats = one(r, douyin_stats(2, 1, 2))
    assert stats.kind == "system" and stats.platform == "kuaishou"
    assert one(r, douyin_chat(3, ALICE, "hi")).text == "小爱"  # the overridden path


# -- barrage-fly ------------------------------------------------------------------------------------


def test_barrage_fly_types_map_to_kinds() -> None:
    r = reader("barrage_fly", platform="bilibili")
    frames = [
        barrage_fly_danmu(10086, "观众", "晚上好", badge="粉丝团", badge_level=21),
        barrage_fly_gift("10086", "观众", "辣条", count=10, price=100),
        barrage_fly_superchat("10087", "大佬", "主播唱首歌", price_cny=30),
        barrage_fly_enter(10088, "路人"),
        barrage_fly_like("10089", "点赞王", clicks=5),
        barrage_fly_social("10090", "新粉", "SUBSCRIBE"),
        barrage_fly_social("10091", "分享者", "SHARE"),
        barrage_fly_frame("ROOM_STATS", {"watchedCount": 100}),
        barrage_fly_frame("LIVE_STATUS_CHANGE", {"roomLiveStatus": "LIVING"}),
        barrage_fly_frame(None, {"cmd": "STOP_LIVE_ROOM_LIST"}),
    ]
    got = events(r, *frames)
    assert [e.kind for e in got] == ["chat", "gift", "superchat", "enter", "like", "follow", "share"]
    chat, present, superchat = got[:3]
    assert who(chat) == ("10086", "观众", 21, ("member",)) and chat.text == "晚上好"
    assert gift(present) == ("辣条", 10, 1.0)  # 100 gold each
    assert gift(superchat) == ("", 1, 30.0) and superchat.text == "主播唱首歌"
    assert all(e.platform == "bilibili" and len(e.id) == 24 for e in got)  # derived ids: barrage-fly has none


def test_barrage_fly_douyin_gifts_use_diamond_value() -> None:
    r = reader("barrage_fly", platform="douyin")
    assert gift(one(r, barrage_fly_gift("1", "a", "玫瑰", 3, 10, platform="DOUYIN"))) == ("玫瑰", 3, 3.0)


# -- plain and custom ---------------------------------------------------------------------------------


def test_plain_frames() -> None:
    r = reader("plain")
    event = one(r, plain_frame("viewer", "hello"))
    assert (event.kind, event.platform, event.text, who(event)) == (
        "chat",
        "json",
        "hello",
        ("viewer", "viewer", 0, ()),
    )
    assert event.id == derived_id("json", "chat", "viewer", "hello", RECEIVED, 0)
    assert one(r, plain_frame("v", "x", id=42, ts=1_700_000_000)).ts == 1_700_000_000_000  # seconds
    assert one(r, plain_frame("v", "x", id=43, ts=1_700_000_000_123)).ts == 1_700_000_000_123  # milliseconds
    present = one(r, plain_frame("v", "", type="gift", gift="rocket", count=2, value=20.0))
    assert present.kind == "gift" and gift(present) == ("rocket", 2, 20.0)
    nested = one(r, json.dumps({"user": {"id": "u7", "name": "七", "level": 3}, "text": "hi"}))
    assert who(nested) == ("u7", "七", 3, ())
    assert events(r, plain_frame("v", "x", type="unknown")) == []
    same = plain_frame("v", "again", ts=1_700_000_000)
    assert one(r, same).id == one(r, same).id  # a resend dedupes


def test_a_custom_mapping_reads_nested_lists_json_strings_and_units() -> None:
    mapping = JsonMapping(
        data="payload",
        kind="cmd",
        kinds={"DANMU_MSG": "chat", "GIFT": "gift", 7: "enter"},  # a number as TOML cannot write it
        id="payload.meta[0]",
        ts="payload.meta.1",
        ts_unit="s",
        user_id="payload.info[2][0]",
        user_name="payload.info.2.1",
        user_level="payload.info[3][0]|payload.level",
        roles={"moderator": "payload.info.2.2"},
        text="payload.info[1]",
        gift_name="payload.gift.name",
        gift_count="payload.gift.num",
        gift_price="payload.gift.price",
        value_scale=0.001,
        currency="CNY",
    )
    r = reader("custom", mapping=mapping, platform="bilibili")

    def frame(cmd: Any, payload: dict[str, Any]) -> str:
        return json.dumps({"cmd": cmd, "payload": json.dumps(payload)})

    chat = one(
        r, frame("DANMU_MSG", {"meta": ["m1", 1_700_000_001], "info": [[0], "弹幕", [42, "a", 1], [12]]})
    )
    assert (chat.id, chat.ts, chat.kind, chat.text) == ("m1", 1_700_000_001_000, "chat", "弹幕")
    assert who(chat) == ("42", "a", 12, ("moderator",))
    info = {"info": [[], "", [43, "x", 0]], "gift": {"name": "辣条", "num": 5, "price": 100}}
    present = one(r, frame("GIFT", {"meta": ["m2"], **info}))
    assert gift(present) == ("辣条", 5, 0.5) and present.user.roles == ()
    assert one(r, frame(7.0, {"info": [[], "", [44, "y", 0]], "level": 2})).kind == "enter"  # 7.0 matches "7"


def test_batched_frames_and_bad_items() -> None:
    r = reader("plain")
    got, skipped = r.read(json.dumps([{"user": "a", "text": "1"}, {"user": "b", "text": "2"}]), RECEIVED)
    assert [e.text for e in got] == ["1", "2"] and skipped == []
    assert json.loads(got[1].raw) == {"user": "b", "text": "2"}  # each message's own text
    got, skipped = r.read(json.dumps([{"user": "a", "text": "ok"}, 5]), RECEIVED)
    assert [e.text for e in got] == ["ok"] and len(skipped) == 1
    assert r.read("[]", RECEIVED) == ([], [])

    feed = JsonFeed(JsonFeedConfig(url="ws://relay"), _ignore)
    assert [e.text for e in feed.handle(json.dumps([{"user": "a", "text": "ok"}, "x"]))] == ["ok"]
    assert feed.stats.garbage == 1


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        b"\x00\xff\xfe",
        "{broken",
        "42",
        '"a string"',
        "null",
        "[1, 2]",
        douyin_frame(1, {}).replace('"{}"', '"{not json"'),
        json.dumps({"Type": 1, "Data": "12"}),  # JSON in the string, but not an object
        json.dumps({"ProcessName": "x", "Data": "{}"}),  # no type
        "[" * 100_000,
    ],
)
def test_unreadable_frames_are_garbage(frame: str | bytes) -> None:
    with pytest.raises(GarbageFrame):
        reader().read(frame)


def test_bytes_frames_are_read_like_text() -> None:
    assert one(reader(), douyin_chat(1, ALICE, "字节").encode()).text == "字节"


# -- config -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"preset": "custom"}, "needs a mapping"),
        ({"preset": "plain", "mapping": {"kinds": {"chat": "chatt"}}}, "'chatt' is not a kind"),
        ({"preset": "custom", "mapping": {"text": "a..b", "default_kind": "chat"}}, "path 'a..b'"),
        ({"preset": "plain", "mapping": {"txt": "x"}}, "txt"),
        ({"preset": "plain", "mapping": {"roles": {"king": "x"}}}, "king"),
        ({"preset": "barrage_fly"}, "set platform"),
        ({"preset": "barrage_fly", "platform": "huya"}, "value_scale"),
        ({"preset": "custom", "mapping": {"text": "t", "kind": "type"}}, "go together"),
        ({"preset": "custom", "mapping": {"text": "t"}}, "default_kind"),
        ({"preset": "custom", "mapping": {"default_kind": "chat"}}, "maps nothing"),
        (
            {"preset": "custom", "mapping": {"text": "t", "default_kind": "gift", "count_mode": "increment"}},
            "combo",
        ),
        ({"url": "http://relay"}, "ws://"),
    ],
)
def test_bad_configs_say_what_is_wrong(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        JsonFeedConfig.model_validate({"url": "ws://relay", **extra})


def test_configs_from_toml_shapes() -> None:
    table = {"type": "json", "url": "ws://127.0.0.1:8888", "preset": "douyin_barrage_grab"}
    cfg = JsonFeedConfig.model_validate({**table, "mapping": {"kinds": {"2": "ignore"}}})
    platform, mapping = cfg.resolved()
    assert platform == "douyin" and mapping.kinds is not None and mapping.kinds["2"] == "ignore"
    assert mapping.kinds["1"] == "chat" and mapping.value_scale == 0.1


# -- against a relay -----------------------------------------------------------------------------------


async def _ignore(events: Sequence[ChatEvent]) -> None:
    pass


def feed_config(url: str, **extra: Any) -> JsonFeedConfig:
    backoff = {"backoff_initial_s": 0.02, "backoff_max_s": 0.1, "open_timeout_s": 2}
    return JsonFeedConfig(url=url, preset="douyin_barrage_grab", **backoff, **extra)


async def test_events_arrive_and_the_feed_sends_nothing_but_pings() -> None:
    sink = Collector()
    frames = douyin_chat_frames(50)
    async with JsonRelay() as relay:
        feed = JsonFeed(feed_config(relay.url, liveness_s=0.4), sink)
        async with running(feed):
            await relay.wait_for(lambda: relay.clients == 1)
            await relay.push(*frames, douyin_gift(1, ALICE, group_id=3, repeat=2, increment=2))
            await sink.wait_for(51)
            await relay.wait_for(lambda: relay.pings >= 2)  # a quiet room: kept alive by pings
    assert [e.raw for e in sink.events[:50]] == frames
    assert gift(sink.events[-1]) == ("小心心", 2, 0.2)
    assert relay.received == []  # read-only: DouyinBarrageGrab takes client frames as commands
    assert feed.stats.connects == 1 and feed.stats.garbage == 0


async def test_reconnects_after_the_relay_closes() -> None:
    roses = douyin_gift(1, ALICE, group_id=3, repeat=2, increment=2)
    sink = Collector()
    async with JsonRelay(greeting=lambda n: [douyin_chat(100 + n, BOB, f"session {n}"), roses]) as relay:
        feed = JsonFeed(feed_config(relay.url), sink)
        async with running(feed):
            await sink.wait_for(2)
            await relay.close_clients()
            await sink.wait_for(4)
    assert [e.text for e in sink.events if e.kind == "chat"] == ["session 1", "session 2"]
    assert [gift(e)[1] for e in sink.events if e.gift] == [2, 2]
    assert feed.stats.connects == 2 and feed.stats.disconnects == 1


async def test_a_silent_relay_is_dropped_and_replaced() -> None:
    sink = Collector()
    async with (
        JsonRelay(greeting=lambda n: [douyin_chat(n, ALICE, f"hello {n}")]) as relay,
        SilentProxy(relay.port) as proxy,
    ):
        feed = JsonFeed(feed_config(f"ws://127.0.0.1:{proxy.port}", liveness_s=0.4), sink)
        async with running(feed):
            await sink.wait_for(1)
            proxy.freeze()
            proxy.thaw()  # new connections flow; the frozen one stays silent, pongs included
            await sink.wait_for(2)
    assert [e.text for e in sink.events] == ["hello 1", "hello 2"]
    assert feed.stats.silent_timeouts == 1 and relay.received == []


async def test_garbage_is_counted_and_later_frames_still_arrive() -> None:
    sink = Collector()
    async with JsonRelay() as relay:
        feed = JsonFeed(feed_config(relay.url), sink)
        async with running(feed):
            await relay.wait_for(lambda: relay.clients == 1)
            await relay.push(
                douyin_chat(1, ALICE, "before"),
                b"\x00\xff\x10garbage",
                "{not json",
                json.dumps({"Type": 1, "Data": "{broken"}),
                douyin_stats(2, 1, 1),
                douyin_chat(3, ALICE, "after"),
            )
            await sink.wait_for(2)
    assert [e.text for e in sink.events] == ["before", "after"]
    assert feed.stats.garbage == 3 and feed.stats.frames == 6

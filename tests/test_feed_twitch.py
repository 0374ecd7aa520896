from __future__ import annotations

import logging
import re

import pytest
from pydantic import ValidationError

from danmaku.events import ChatEvent, Gift
from danmaku.feeds.base import FeedAuthError, FeedError, GarbageFrame
from danmaku.feeds.irc import (
    IrcMessage,
    MalformedLine,
    escape_tag_value,
    format_line,
    lines,
    parse,
    unescape_tag_value,
)
from danmaku.feeds.twitch import TwitchFeed, TwitchFeedConfig
from tests.feeds import Collector, running
from tests.twitch_server import (
    ACTION,
    ANNOUNCEMENT,
    BAN,
    BITS,
    CLEAR_ALL,
    CLEARMSG,
    DOCS_PRIVMSG,
    FIRST_MSG_VIP,
    MYSTERY,
    MYSTERY_PART,
    NO_TAGS,
    RAID,
    RESUB,
    SUB_PRIME,
    SUBGIFT,
    TIMEOUT,
    TRAILING_SPACE_NAME,
    TwitchServer,
    clearchat_line,
    clearmsg_line,
    privmsg_line,
)
from tests.ws_servers import SilentProxy


def config(url: str = "ws://127.0.0.1:9", **extra: object) -> TwitchFeedConfig:
    fields: dict[str, object] = {
        "channel": "xyz",
        "url": url,
        "backoff_initial_s": 0.02,
        "backoff_max_s": 0.1,
        "open_timeout_s": 2,
        **extra,
    }
    return TwitchFeedConfig.model_validate(fields)


def offline_feed(**extra: object) -> TwitchFeed:
    return TwitchFeed(TwitchFeedConfig.model_validate({"channel": "xyz", **extra}), Collector())


# -- the IRC parser ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "command", "params", "tags", "prefix"),
    [
        ("PING :tmi.twitch.tv", "PING", ["tmi.twitch.tv"], {}, ""),
        (NO_TAGS, "PRIVMSG", ["#xyz", "HeyGuys"], {}, "abc!abc@abc.tmi.twitch.tv"),
        (":tmi.twitch.tv CLEARCHAT #dallas", "CLEARCHAT", ["#dallas"], {}, "tmi.twitch.tv"),
        (":tmi.twitch.tv RECONNECT", "RECONNECT", [], {}, "tmi.twitch.tv"),
        ("PRIVMSG #c :a :b: c::", "PRIVMSG", ["#c", "a :b: c::"], {}, ""),
        ("PRIVMSG #c :", "PRIVMSG", ["#c", ""], {}, ""),
        ("PRIVMSG #c ::-)", "PRIVMSG", ["#c", ":-)"], {}, ""),
        ("PRIVMSG #a:b :x", "PRIVMSG", ["#a:b", "x"], {}, ""),
        (":n.tmi.twitch.tv 353 n = #ch :n", "353", ["n", "=", "#ch", "n"], {}, "n.tmi.twitch.tv"),
        ("CMD  a   b", "CMD", ["a", "b"], {}, ""),
        ("privmsg #c :lower", "PRIVMSG", ["#c", "lower"], {}, ""),
        ("@a=;b;c=1;;d=x=y CMD", "CMD", [], {"a": "", "b": "", "c": "1", "d": "x=y"}, ""),
        ("@id=1  :p  CMD  #c :t", "CMD", ["#c", "t"], {"id": "1"}, "p"),
        (
            "@display-name=Riot\\sGames;system-msg=a\\:b\\\\c\\r\\n;x=end\\ :p!p@p PRIVMSG #r :hi",
            "PRIVMSG",
            ["#r", "hi"],
            {"display-name": "Riot Games", "system-msg": "a;b\\c\r\n", "x": "end"},
            "p!p@p",
        ),
        (
            "@k=\u00e9\u6d4b\u2028 :p CMD :\U0001f600 \u2028",
            "CMD",
            ["\U0001f600 \u2028"],
            {"k": "\u00e9\u6d4b\u2028"},
            "p",
        ),
    ],
)
def test_parse(line: str, command: str, params: list[str], tags: dict[str, str], prefix: str) -> None:
    assert parse(line) == IrcMessage(command, params, tags, prefix)


def test_a_full_twitch_line_parses_with_every_tag() -> None:
    msg = parse(DOCS_PRIVMSG)
    assert msg.command == "PRIVMSG" and msg.params == ["#xyz", "HeyGuys"]
    assert msg.nick == "abc" and msg.trailing == "HeyGuys" and msg.param(0) == "#xyz" and msg.param(5) == ""
    assert len(msg.tags) == 16
    assert msg.tags["flags"] == "0-6:S.7" and msg.tags["user-type"] == "" and msg.tags["badge-info"] == ""


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("plain", "plain"),
        ("", ""),
        ("a\\:b", "a;b"),
        ("a\\sb", "a b"),
        ("a\\\\b", "a\\b"),
        ("\\r\\n", "\r\n"),
        ("ab\\", "ab"),
        ("\\", ""),
        ("\\x\\-", "x-"),
        ("\\\\s", "\\s"),
        ("\\\\\\", "\\"),
        ("\\s\\s", "  "),
    ],
)
def test_tag_values_unescape_per_ircv3(raw: str, value: str) -> None:
    assert unescape_tag_value(raw) == value


@pytest.mark.parametrize("value", ["", "a b;c\\d\r\ne", "\\s", "x\\", ";;  \\\\", "\u6d4b\u8bd5 ok"])
def test_escaping_round_trips(value: str) -> None:
    assert unescape_tag_value(escape_tag_value(value)) == value
    assert not any(c in escape_tag_value(value) for c in " ;\r\n")


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "@tags-only",
        "@a=b :prefix-only",
        ":prefix-only",
        ": CMD",
        '{"cmd": 1}',
        "@=v CMD",
        "12 x",
        "PRIV-MSG #c :x",
        "\u00e9t\u00e9 #c",
    ],
)
def test_malformed_lines_raise(line: str) -> None:
    with pytest.raises(MalformedLine):
        parse(line)
    assert issubclass(MalformedLine, GarbageFrame)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("a\r\nb\r\n", ["a", "b"]),
        ("a\nb", ["a", "b"]),
        ("a\r\n\r\n\r\nb\r\n", ["a", "b"]),
        ("x\u2028y\x1cz\r\n", ["x\u2028y\x1cz"]),
        ("\r\n", []),
    ],
)
def test_frames_split_on_line_feeds_only(frame: str, expected: list[str]) -> None:
    assert list(lines(frame)) == expected


@pytest.mark.parametrize(
    ("args", "tags", "line"),
    [
        (("NICK", "justinfan123"), None, "NICK justinfan123\r\n"),
        (
            ("CAP", "REQ", "twitch.tv/tags twitch.tv/commands"),
            None,
            "CAP REQ :twitch.tv/tags twitch.tv/commands\r\n",
        ),
        (("PONG", ":tmi"), None, "PONG ::tmi\r\n"),
        (("PRIVMSG", "#c", ""), None, "PRIVMSG #c :\r\n"),
        (
            ("PRIVMSG", "#c", "hi"),
            {"reply-parent-msg-id": "a b;c", "flag": ""},
            "@reply-parent-msg-id=a\\sb\\:c;flag PRIVMSG #c hi\r\n",
        ),
    ],
)
def test_format_line(args: tuple[str, ...], tags: dict[str, str] | None, line: str) -> None:
    assert format_line(*args, tags=tags) == line
    msg = parse(line[:-2])
    assert [msg.command, *msg.params] == list(args)
    assert msg.tags == (tags or {})


@pytest.mark.parametrize(
    "args",
    [
        ("PRIVMSG", "#c", "hi\r\nJOIN #evil"),
        ("PASS", "oauth:x\n"),
        ("PRIVMSG", "#a b", "x"),
        ("PRIVMSG", ":c", "x"),
        ("PRIV MSG", "x"),
        ("", "x"),
        ("PRIVMSG", "", "x"),
    ],
)
def test_format_line_refuses_what_would_inject_or_misparse(args: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        format_line(*args)


# -- the config -------------------------------------------------------------------------------------


def test_config_defaults_and_normalised_logins() -> None:
    cfg = TwitchFeedConfig(channel="#SomeStreamer", nick=" MyBot ")
    assert cfg.channel == "somestreamer" and cfg.nick == "mybot"
    assert cfg.url == "wss://irc-ws.chat.twitch.tv:443" and cfg.token_env == "TWITCH_OAUTH_TOKEN"
    assert (
        cfg.bits_per_usd == 100 and cfg.sub_value_usd["3000"] == 24.99 and cfg.sub_value_usd["Prime"] == 4.99
    )
    assert cfg.ping_s == 60 and cfg.liveness_s == 150 and cfg.type == "twitch"
    assert TwitchFeedConfig(channel="a_b9").nick == ""


@pytest.mark.parametrize(
    "fields",
    [
        {"channel": "two words"},
        {"channel": ""},
        {"channel": "#"},
        {"channel": "x" * 26},
        {"channel": "caf\u00e9"},
        {"channel": "ok", "nick": "bad-nick"},
        {"channel": "ok", "bits_per_usd": 0},
        {"channel": "ok", "sub_value_usd": {"1000": -1}},
        {"channel": "ok", "extra": 1},
        {"channel": "ok", "type": "bilibili"},
    ],
)
def test_config_rejects(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TwitchFeedConfig.model_validate(fields)


# -- lines into events ------------------------------------------------------------------------------


def one(feed: TwitchFeed, line: str) -> ChatEvent:
    events = feed.handle(line + "\r\n")
    assert len(events) == 1
    assert events[0].raw == line and events[0].platform == "twitch"
    return events[0]


@pytest.mark.parametrize(
    ("line", "kind", "event_id", "user", "text", "ts"),
    [
        (
            DOCS_PRIVMSG,
            "chat",
            "eb24e920-8065-492a-8aea-266a00fc5126",
            ("713936733", "abc", ("broadcaster",), 0),
            "HeyGuys",
            1642786203573,
        ),
        (
            ACTION,
            "chat",
            "d831d848-b7c7-4559-ae3a-2cb88f4dbfed",
            ("40286300", "randers", ("moderator", "subscriber"), 22),
            "-tags",
            1594555275886,
        ),
        (
            TRAILING_SPACE_NAME,
            "chat",
            "c9b941d9-a0ab-4534-9903-971768fcdf10",
            ("467684514", "CarvedTaleare", (), 0),
            "NaM",
            1594554085753,
        ),
        (
            FIRST_MSG_VIP,
            "chat",
            "5b4f63a9-776f-4fce-bf3c-d9707f52e32d",
            ("133651738", "LeftSwing", ("vip", "first_time"), 0),
            "hi: all :)",
            1673925983585,
        ),
        (
            ANNOUNCEMENT,
            "system",
            "bb1bec25-8f26-4ba3-a084-a6a2ca332f00",
            ("82008718", "pajbot", ("moderator", "subscriber"), 93),
            "$ping xd",
            1695554663565,
        ),
        (
            RAID,
            "system",
            "068be18a-ee52-48bb-961b-c391424b5cc3",
            ("504185570", "ManzDev", (), 0),
            "46 raiders from ManzDev have joined!",
            1637699495632,
        ),
    ],
)
def test_chat_and_system_lines(
    line: str, kind: str, event_id: str, user: tuple[str, str, tuple[str, ...], int], text: str, ts: int
) -> None:
    event = one(offline_feed(), line)
    assert (event.kind, event.id, event.text, event.ts, event.gift, event.removes) == (
        kind,
        event_id,
        text,
        ts,
        None,
        None,
    )
    assert (event.user.id, event.user.name, event.user.roles, event.user.level) == user


@pytest.mark.parametrize(
    ("line", "kind", "gift", "text"),
    [
        (BITS, "superchat", Gift("bits", 1, 0.01, "USD"), "trihard1"),
        (SUB_PRIME, "gift", Gift("sub", 1, 4.99, "USD"), "fallenseraphhh subscribed with Twitch Prime."),
        (RESUB, "gift", Gift("resub", 1, 4.99, "USD"), "xqcL"),
        (
            SUBGIFT,
            "gift",
            Gift("subgift", 1, 24.99, "USD"),
            "AdamAtReflectStudios gifted a Tier 3 sub to qatarking24xd!",
        ),
        (
            MYSTERY,
            "gift",
            Gift("submysterygift", 20, 20 * 4.99, "USD"),
            "Bent_Knee is gifting 20 Tier 1 Subs!",
        ),
    ],
)
def test_paid_lines_carry_a_value_in_usd(line: str, kind: str, gift: Gift, text: str) -> None:
    event = one(offline_feed(), line)
    assert (event.kind, event.gift, event.text) == (kind, gift, text)


def test_value_rates_come_from_the_config() -> None:
    feed = offline_feed(bits_per_usd=50, sub_value_usd={"1000": 3.0})
    assert one(feed, BITS).gift == Gift("bits", 1, 0.02, "USD")
    assert one(feed, SUB_PRIME).gift == Gift("sub", 1, 3.0, "USD")  # an unpriced plan counts as tier 1


def test_a_mystery_gifts_single_subs_are_not_counted_twice() -> None:
    assert offline_feed().handle(MYSTERY_PART) == []


@pytest.mark.parametrize(
    ("line", "removes", "user_id"),
    [
        (CLEARMSG, "3c92014f-340a-4dc3-a9c9-e5cf182f4a84", "alazymeme"),
        (BAN, "user:70948394", "70948394"),
        (TIMEOUT, "user:148973258", "148973258"),
        (CLEAR_ALL, "*", ""),
    ],
)
def test_moderation_removes(line: str, removes: str, user_id: str) -> None:
    event = one(offline_feed(), line)
    assert (event.kind, event.removes, event.user.id, event.text) == ("system", removes, user_id, "")
    assert event.id and one(offline_feed(), line).id == event.id  # a resend dedupes


def test_a_line_without_tags_still_makes_chat() -> None:
    event = one(offline_feed(), NO_TAGS)
    assert (event.kind, event.user.id, event.user.name, event.text) == ("chat", "abc", "abc", "HeyGuys")
    assert event.id and event.ts > 0


@pytest.mark.parametrize(
    "line",
    [
        "@msg-id=slow_on :tmi.twitch.tv NOTICE #xyz :This room is now in slow mode.",
        "@emote-only=0;followers-only=-1;r9k=0;room-id=1;slow=0;subs-only=0 :tmi.twitch.tv ROOMSTATE #xyz",
        "@badge-info=;badges=;color=;display-name=x;emote-sets=0;mod=0;subscriber=0;user-type= "
        ":tmi.twitch.tv USERSTATE #xyz",
        ":ronni!ronni@ronni.tmi.twitch.tv JOIN #xyz",
        ":ronni!ronni@ronni.tmi.twitch.tv PART #xyz",
        ":tmi.twitch.tv 001 justinfan1 :Welcome, GLHF!",
        ":tmi.twitch.tv 372 justinfan1 :You are in a maze of twisty passages, all alike.",
        ":tmi.twitch.tv CAP * ACK :twitch.tv/tags twitch.tv/commands",
        ":tmi.twitch.tv PONG tmi.twitch.tv :tmi.twitch.tv",
        ":tmi.twitch.tv HOSTTARGET #abc :xyz 10",
        "@badge-info=;badges=;color=;display-name=x;emote-sets=0;user-id=1;user-type= "
        ":tmi.twitch.tv GLOBALUSERSTATE",
    ],
)
def test_housekeeping_lines_make_no_events(line: str) -> None:
    feed = offline_feed()
    assert feed.handle(line) == []
    assert feed.stats.garbage == 0


def test_a_bad_line_is_skipped_alone() -> None:
    feed = offline_feed()
    bad_bits = BITS.replace("bits=1;", "bits=lots;")
    frame = "\r\n".join([DOCS_PRIVMSG, "@tags-only", RESUB, bad_bits, ":prefix-only", CLEARMSG]) + "\r\n"
    events = feed.handle(frame)
    assert [e.kind for e in events] == ["chat", "gift", "system"]
    assert feed.stats.garbage == 3


def test_binary_frames() -> None:
    feed = offline_feed()
    assert [e.text for e in feed.handle(NO_TAGS.encode())] == ["HeyGuys"]
    with pytest.raises(GarbageFrame):
        feed.handle(b"\xff\xfe\x00 not text")


@pytest.mark.parametrize(
    "notice", ["Login authentication failed", "Improperly formatted auth", "Invalid NICK"]
)
def test_a_refused_token_is_an_auth_error(notice: str) -> None:
    with pytest.raises(FeedAuthError, match=notice):
        offline_feed().handle(f":tmi.twitch.tv NOTICE * :{notice}\r\n")


def test_a_refused_channel_fails_the_join() -> None:
    line = "@msg-id=msg_channel_suspended :tmi.twitch.tv NOTICE #xyz :This channel has been suspended."
    with pytest.raises(FeedError, match="suspended") as caught:
        offline_feed().handle(line)
    assert not isinstance(caught.value, FeedAuthError)


# -- against a Twitch server ------------------------------------------------------------------------


async def test_anonymous_login_reads_chat() -> None:
    sink = Collector()
    async with TwitchServer() as server:
        feed = TwitchFeed(config(server.url, name="twitch-main"), sink)
        async with running(feed):
            session = await server.joined()
            await server.push(privmsg_line("viewer", "hello there", msg_id="m-1"))
            (event,) = await sink.wait_for(1)
    assert (
        re.fullmatch(r"justinfan\d+", session.nick) and session.password == "" and feed.login == session.nick
    )
    assert [line.split(" ", 1)[0] for line in session.received[:3]] == ["CAP", "NICK", "JOIN"]
    assert set(session.caps.split()) == {"twitch.tv/tags", "twitch.tv/commands"}
    assert session.channel == "#xyz"
    assert (event.id, event.text, event.user.name, event.feed) == (
        "m-1",
        "hello there",
        "Viewer",
        "twitch-main",
    )
    assert feed.stats.connects == 1 and feed.stats.events == 1 and feed.stats.garbage == 0


async def test_token_login_never_logs_the_token(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TWITCH_TEST_TOKEN", "s3cr3t-t0ken")
    sink = Collector()
    async with TwitchServer(token="s3cr3t-t0ken") as server:
        feed = TwitchFeed(config(server.url, nick="MyBot", token_env="TWITCH_TEST_TOKEN"), sink)
        async with running(feed):
            session = await server.joined()
            await server.push(privmsg_line("viewer", "hi"))
            await sink.wait_for(1)
    assert (session.nick, session.password) == ("mybot", "oauth:s3cr3t-t0ken")
    assert [line.split(" ", 1)[0] for line in session.received[:4]] == ["CAP", "PASS", "NICK", "JOIN"]
    ours = [r for r in caplog.records if not r.name.startswith("websockets.server")]
    assert not any("s3cr3t" in r.getMessage() for r in ours)
    # the client's frame log (DEBUG in websockets) stays off even with the root logger at DEBUG
    assert not any(r.name == "danmaku.feed.wire" and r.levelno < logging.INFO for r in ours)
    assert logging.getLogger("danmaku.feed.wire").getEffectiveLevel() == logging.INFO


async def test_a_refused_token_is_retried_until_it_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWITCH_TEST_TOKEN", "oauth:wrong")
    sink = Collector()
    async with TwitchServer(token="right") as server:
        feed = TwitchFeed(config(server.url, nick="mybot", token_env="TWITCH_TEST_TOKEN"), sink)
        async with running(feed):
            await server.until(lambda: server.refused >= 2)
            assert feed.stats.connects == 0
            monkeypatch.setenv("TWITCH_TEST_TOKEN", "right")
            await server.joined()
            await server.push(privmsg_line("viewer", "finally"))
            await sink.wait_for(1)
    assert feed.stats.auth_failures >= 2 and feed.stats.connects == 1
    assert "Login authentication failed" in feed.stats.last_error


async def test_a_nick_without_a_token_is_an_auth_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWITCH_TEST_TOKEN", raising=False)
    async with TwitchServer() as server:
        feed = TwitchFeed(config(server.url, nick="mybot", token_env="TWITCH_TEST_TOKEN"), Collector())
        async with running(feed):
            await server.until(lambda: len(server.sessions) >= 2)
    assert feed.stats.auth_failures >= 1 and feed.stats.connects == 0
    assert "TWITCH_TEST_TOKEN" in feed.stats.last_error
    assert all(not s.saw("PASS") and not s.saw("NICK") for s in server.sessions)


async def test_pings_both_ways() -> None:
    async with TwitchServer() as server:
        feed = TwitchFeed(config(server.url, ping_s=0.05), Collector())
        async with running(feed):
            session = await server.joined()
            await server.ping("tmi.twitch.tv")
            await server.ping("1234 5678")
            await server.until(lambda: len(session.saw("PING")) >= 3)  # the client's own heartbeat
    assert feed.stats.events == 0 and feed.stats.garbage == 0


async def test_several_lines_in_one_frame_arrive_in_order() -> None:
    sink = Collector()
    async with TwitchServer() as server:
        feed = TwitchFeed(config(server.url), sink)
        async with running(feed):
            session = await server.joined()
            await server.push(
                privmsg_line("a", "one", msg_id="1", badges="subscriber/6", badge_info="subscriber/8"),
                "PING :tmi.twitch.tv",
                privmsg_line("b", "\x01ACTION waves\x01", msg_id="2", display_name="B "),
                privmsg_line("c", "take my bits Cheer100", msg_id="3", bits=100, mod=True),
                clearmsg_line("1", "a", "one"),
                clearchat_line("b", user_id="22"),
                clearchat_line(),
            )
            events = await sink.wait_for(6)
            await server.until(lambda: bool(session.saw("PONG")))
    assert [(e.id, e.kind, e.text) for e in events[:3]] == [
        ("1", "chat", "one"),
        ("2", "chat", "waves"),
        ("3", "superchat", "take my bits Cheer100"),
    ]
    assert events[0].user.roles == ("subscriber",) and events[0].user.level == 8
    assert events[1].user.name == "B" and events[2].user.roles == ("moderator",)
    assert events[2].gift == Gift("bits", 100, 1.0, "USD")
    assert [e.removes for e in events[3:]] == ["1", "user:22", "*"]
    assert feed.stats.frames >= 1 and feed.stats.garbage == 0


async def test_reconnect_is_obeyed_after_the_frame_is_delivered() -> None:
    sink = Collector()
    async with TwitchServer() as server:
        feed = TwitchFeed(config(server.url), sink)
        async with running(feed):
            first = await server.joined()
            await server.push(privmsg_line("a", "before", msg_id="1"), ":tmi.twitch.tv RECONNECT")
            await server.joined(2)
            await server.push(privmsg_line("a", "after", msg_id="2"))
            await sink.wait_for(2)
            await server.until(lambda: first.closed)
    assert [e.text for e in sink.events] == ["before", "after"]
    assert feed.stats.connects == 2 and feed.stats.disconnects == 1
    assert "RECONNECT" in feed.stats.last_error


async def test_reconnect_alone_and_after_the_server_closes() -> None:
    sink = Collector()
    async with TwitchServer() as server:
        feed = TwitchFeed(config(server.url), sink)
        async with running(feed):
            await server.joined()
            await server.reconnect()
            await server.joined(2)
            await server.drop()
            await server.joined(3)
            await server.push(privmsg_line("a", "third time", msg_id="3"))
            await sink.wait_for(1)
    assert [e.text for e in sink.events] == ["third time"]
    assert feed.stats.connects == 3 and feed.stats.disconnects == 2


async def test_a_silent_connection_is_replaced() -> None:
    sink = Collector()
    async with TwitchServer() as server, SilentProxy(server.port) as proxy:
        feed = TwitchFeed(config(f"ws://127.0.0.1:{proxy.port}", liveness_s=0.6), sink)
        async with running(feed):
            await server.joined()
            await server.push(privmsg_line("a", "one", msg_id="1"))
            await sink.wait_for(1)
            proxy.freeze()
            proxy.thaw()  # new connections flow again; the frozen one stays silent
            await server.joined(2)
            await server.push(privmsg_line("a", "two", msg_id="2"))
            await sink.wait_for(2)
    assert feed.stats.silent_timeouts == 1 and feed.stats.connects == 2
    assert [e.text for e in sink.events] == ["one", "two"]


async def test_garbage_lines_and_frames_are_counted_and_skipped() -> None:
    sink = Collector()
    async with TwitchServer() as server:
        feed = TwitchFeed(config(server.url), sink)
        async with running(feed):
            await server.joined()
            await server.push(
                privmsg_line("a", "one", msg_id="1"),
                "@garbage-without-command",
                privmsg_line("a", "two", msg_id="2"),
            )
            await server.send_frame(b"\xff\xfe\x00\x01")
            await server.send_frame('{"not": "irc"}')
            await server.push(privmsg_line("a", "three", msg_id="3"))
            await sink.wait_for(3)
    assert [e.text for e in sink.events] == ["one", "two", "three"]
    assert feed.stats.garbage == 3 and feed.stats.connects == 1

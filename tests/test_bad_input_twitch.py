"""Bad input for the Twitch feed: IRC lines that are not, tags of any value, frames of any bytes."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from danmaku.feeds import irc
from danmaku.feeds.base import FeedError, GarbageFrame
from danmaku.feeds.twitch import TwitchFeed, TwitchFeedConfig
from tests.twitch_server import BITS, DOCS_PRIVMSG, SUBGIFT

GOOD = "@id=good-1;tmi-sent-ts=1 :good!good@good.tmi.twitch.tv PRIVMSG #xyz :still here"


async def _sink(events: object) -> None:
    """Unused: the tests call ``handle`` directly."""


def _feed() -> TwitchFeed:
    return TwitchFeed(TwitchFeedConfig(channel="xyz"), _sink)


no_breaks = st.text(st.characters(blacklist_characters="\r\n\0", blacklist_categories=["Cs"]), max_size=30)
middle = no_breaks.filter(lambda p: p and " " not in p and not p.startswith(":"))
commands = st.text(string.ascii_uppercase, min_size=1, max_size=10) | st.from_regex(r"\A[0-9]{3}\Z")
tag_keys = st.text(string.ascii_letters + string.digits + "-/.+", min_size=1, max_size=12)
tag_values = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)


@given(commands, st.lists(middle, max_size=4), no_breaks, st.dictionaries(tag_keys, tag_values, max_size=5))
def test_formatted_lines_parse_back(command: str, params: list[str], last: str, tags: dict[str, str]) -> None:
    line = irc.format_line(command, *params, last, tags=tags)
    assert line.endswith("\r\n")
    (text,) = irc.lines(line)
    msg = irc.parse(text)
    assert (msg.command, msg.params, msg.tags) == (command, [*params, last], tags)


@given(tag_values)
def test_tag_values_unescape_what_escape_made(value: str) -> None:
    assert irc.unescape_tag_value(irc.escape_tag_value(value)) == value


@given(st.text(max_size=200))
def test_any_line_is_a_message_or_malformed(line: str) -> None:
    try:
        msg = irc.parse(line)
    except irc.MalformedLine as exc:
        assert str(exc)
    else:
        assert msg.command.isascii()
        assert msg.command.isalpha() or msg.command.isdigit()


@given(st.binary(max_size=300))
def test_any_frame_is_events_or_garbage(frame: bytes) -> None:
    feed = _feed()
    try:
        feed.handle(frame)
    except GarbageFrame as exc:
        assert "UTF-8" in str(exc)
    except FeedError:  # a NOTICE refusing the login or the channel: the contract's way to end a session
        pass


TAG_NAMES = [
    "bits", "tmi-sent-ts", "badges", "badge-info", "msg-id", "msg-param-sub-plan", "msg-param-gift-months",
    "msg-param-mass-gift-count", "msg-param-community-gift-id", "target-msg-id", "login", "id", "mod",
    "display-name", "user-id",
]  # fmt: skip
tag_value = st.text(max_size=12) | st.integers().map(str) | st.just("1" + "0" * 400) | st.just("²")


@given(
    st.sampled_from(["PRIVMSG #xyz :hi", "USERNOTICE #xyz", "USERNOTICE #xyz :msg", "CLEARMSG #xyz :x",
                     "CLEARCHAT #xyz :someone", "CLEARCHAT #xyz", "PING :tmi.twitch.tv"]),
    st.dictionaries(st.sampled_from(TAG_NAMES), tag_value, max_size=6),
)  # fmt: skip
def test_a_bad_line_costs_only_itself(rest: str, tags: dict[str, str]) -> None:
    """Lines with tags of any value: the good line after them in the frame always counts."""
    line = irc.format_line("X", tags=tags).removesuffix("X\r\n") + f":u!u@u.tmi.twitch.tv {rest}"
    feed = _feed()
    events = feed.handle(f"{line}\r\n{GOOD}\r\n")
    assert events[-1].id == "good-1"
    assert len(events) + feed.stats.garbage in (1, 2)


def test_a_huge_bits_count_is_one_garbage_line() -> None:
    """Regression: ``bits=<400 digits>`` raised OverflowError and the frame's other lines were lost."""
    feed = _feed()
    huge = BITS.replace("bits=1;", "bits=1" + "0" * 400 + ";")
    gift = SUBGIFT.replace("msg-param-gift-months=1;", "msg-param-gift-months=1" + "0" * 400 + ";")
    events = feed.handle("\r\n".join([huge, DOCS_PRIVMSG, gift, GOOD]))
    assert [e.id for e in events] == ["eb24e920-8065-492a-8aea-266a00fc5126", "good-1"]
    assert feed.stats.garbage == 2


@pytest.mark.parametrize("param", ["a\r\nJOIN #other", "a\0b", "b\nc"])
def test_format_line_refuses_a_smuggled_command(param: str) -> None:
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        irc.format_line("PRIVMSG", "#xyz", param)

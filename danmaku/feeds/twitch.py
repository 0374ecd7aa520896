"""Twitch chat over IRC on a WebSocket (``wss://irc-ws.chat.twitch.tv``).

Logs in anonymously (``justinfan`` and digits: read-only, no token) or as ``nick`` with the OAuth token
from the environment variable ``token_env`` (the token is sent as ``PASS oauth:...``, never logged),
asks for the tags and commands capabilities, joins one channel, and maps what arrives:

============================================  =============================================================
line                                          event
============================================  =============================================================
PRIVMSG                                       chat (roles from badges, ``mod``, ``vip``; ``first-msg=1``
                                              adds ``first_time``; level = subscribed months; /me unwrapped)
PRIVMSG with ``bits``                         superchat, Gift("bits", bits, bits / ``bits_per_usd``, USD)
USERNOTICE sub, resub                         gift, Gift(msg-id, 1, ``sub_value_usd[plan]``)
USERNOTICE [anon]subgift                      gift, Gift(msg-id, months, months x plan value); a gift that
                                              is part of a mystery gift (it has ``msg-param-community-
                                              gift-id``) is skipped: the mystery gift carries the total
USERNOTICE [anon]submysterygift               gift, Gift(msg-id, mass-gift-count, count x plan value)
USERNOTICE raid, announcement, anything else  system (its ``msg-id`` is in ``raw``)
CLEARMSG                                      system, ``removes`` = ``target-msg-id``
CLEARCHAT #channel :login                     system, ``removes`` = ``user:<target-user-id>``
CLEARCHAT #channel                            system, ``removes`` = ``*``
PING                                          answered with PONG (no event)
RECONNECT                                     the session ends after this frame's events; the base
                                              reconnects
anything else (NOTICE, ROOMSTATE, USERSTATE,  ignored
JOIN, PART, numerics, ...)
============================================  =============================================================

A USERNOTICE's text is what the viewer wrote with it, else Twitch's ``system-msg`` ("X subscribed at
Tier 1"); a plan missing from ``sub_value_usd`` is valued as tier 1 ("1000"). A line that is not IRC is
counted as garbage on its own; the other lines of its frame still count.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from typing import Annotated, Literal

from pydantic import Field, field_validator
from websockets.asyncio.client import ClientConnection

from danmaku.events import ChatEvent, Gift, Kind, User, derived_id, now_ms
from danmaku.feeds.base import FeedAuthError, FeedConfig, FeedError, GarbageFrame, Sink, SocketFeed
from danmaku.feeds.irc import IrcMessage, MalformedLine, format_line, lines, parse

PLATFORM = "twitch"
CAPABILITIES = "twitch.tv/tags twitch.tv/commands"
# what Twitch answers to a token it does not accept, before closing the connection
AUTH_REFUSALS = (
    "Login authentication failed",
    "Improperly formatted auth",
    "Login unsuccessful",
    "Error logging in",
    "Invalid NICK",
)
# NOTICE msg-ids that answer a JOIN instead of the channel's ROOMSTATE
JOIN_REFUSALS = frozenset({"msg_channel_suspended", "msg_channel_blocked", "tos_ban"})
_LOGIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
_BADGE_ROLES = {
    "broadcaster": "broadcaster",
    "moderator": "moderator",
    "vip": "vip",
    "subscriber": "subscriber",
    "founder": "subscriber",
    "staff": "admin",
    "admin": "admin",
    "global_mod": "admin",
}
_ROLE_ORDER = ("broadcaster", "moderator", "vip", "subscriber", "admin", "first_time")
_SUBS = frozenset({"sub", "resub"})
_GIFTS = frozenset({"subgift", "anonsubgift"})
_MYSTERY_GIFTS = frozenset({"submysterygift", "anonsubmysterygift"})


def _login(value: str, what: str) -> str:
    login = value.strip().removeprefix("#").lower()
    if not 1 <= len(login) <= 25 or not set(login) <= _LOGIN_CHARS:
        raise ValueError(f"{what} must be a Twitch login (letters, digits, _; 25 at most), got {value!r}")
    return login


class TwitchFeedConfig(FeedConfig):
    """A ``[[feeds]]`` table with ``type = "twitch"``."""

    type: Literal["twitch"] = "twitch"
    # the channel's login; "#Name" is accepted and normalised to "name"
    channel: str
    url: str = "wss://irc-ws.chat.twitch.tv:443"
    # empty: anonymous, read-only (justinfan + digits, no token); else the bot account's login
    nick: str = ""
    # the environment variable holding the OAuth token for ``nick`` (with or without "oauth:")
    token_env: str = Field("TWITCH_OAUTH_TOKEN", min_length=1)
    bits_per_usd: float = Field(100.0, gt=0)
    # USD per subscription, by msg-param-sub-plan
    sub_value_usd: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: {"1000": 4.99, "2000": 9.99, "3000": 24.99, "Prime": 4.99}
    )
    # a client PING this often: Twitch's PONG proves the connection alive
    ping_s: float = Field(60.0, ge=0.05, le=600.0)
    liveness_s: float = Field(150.0, ge=0.2, le=3600.0)

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        return _login(value, "channel")

    @field_validator("nick")
    @classmethod
    def _nick(cls, value: str) -> str:
        return _login(value, "nick") if value.strip() else ""


class TwitchFeed(SocketFeed):
    """One Twitch channel's chat (see the module docstring for what becomes what)."""

    type = "twitch"
    cfg: TwitchFeedConfig

    def __init__(self, cfg: TwitchFeedConfig, sink: Sink) -> None:
        super().__init__(cfg, sink)
        self.heartbeat_s = cfg.ping_s
        self.login = ""
        self._welcomed = False
        self._joined = False
        self._handlers: dict[str, Callable[[IrcMessage, str], ChatEvent | None]] = {
            "PRIVMSG": self._privmsg,
            "USERNOTICE": self._usernotice,
            "CLEARMSG": self._clearmsg,
            "CLEARCHAT": self._clearchat,
            "PING": self._ping,
            "RECONNECT": self._reconnect,
            "NOTICE": self._notice,
            "001": self._welcome,
            "JOIN": self._join,
            "ROOMSTATE": self._roomstate,
        }

    # -- the session ----------------------------------------------------------------------------------

    def url(self) -> str:
        """The configured endpoint."""
        return self.cfg.url

    def reset(self) -> None:
        """A new connection logs in from scratch."""
        super().reset()
        self.login = ""
        self._welcomed = self._joined = False

    def heartbeat(self) -> str:
        """A client PING; Twitch's PONG keeps the liveness check fed on a quiet channel."""
        return format_line("PING", "tmi.twitch.tv")

    async def open(self, ws: ClientConnection) -> None:
        """Request capabilities, log in, join; return once welcomed and in the channel.

        Raises FeedAuthError when Twitch refuses the token (or none is set for ``nick``), FeedError
        when it refuses the channel. Events that arrive with the join are delivered before returning.
        """
        nick, password = self._credentials()
        self.login = nick
        await ws.send(format_line("CAP", "REQ", CAPABILITIES))
        if password:
            await ws.send(format_line("PASS", password))  # the base's wire logger never logs frames
        await ws.send(format_line("NICK", nick))
        await ws.send(format_line("JOIN", f"#{self.cfg.channel}"))
        early: list[ChatEvent] = []
        while not (self._welcomed and self._joined):
            frame = await ws.recv()
            self.stats.frames += 1
            try:
                early.extend(self.handle(frame))
            except GarbageFrame as exc:
                self.garbage(frame, str(exc))
        if early:
            await self.deliver(early)

    def _credentials(self) -> tuple[str, str]:
        if not self.cfg.nick:
            return f"justinfan{random.randint(10_000, 99_999_999)}", ""
        token = os.environ.get(self.cfg.token_env, "").strip()
        if not token:
            raise FeedAuthError(f"no OAuth token in ${self.cfg.token_env} for nick {self.cfg.nick}")
        return self.cfg.nick, token if token.startswith("oauth:") else f"oauth:{token}"

    # -- lines into events ----------------------------------------------------------------------------

    def handle(self, frame: str | bytes) -> Sequence[ChatEvent]:
        """A frame's lines into events; a line that is not IRC is counted and skipped on its own."""
        if isinstance(frame, bytes):
            try:
                frame = frame.decode()
            except UnicodeDecodeError as exc:
                raise GarbageFrame(f"binary frame, not UTF-8: {exc.reason}") from None
        events: list[ChatEvent] = []
        for line in lines(frame):
            try:
                msg = parse(line)
                handler = self._handlers.get(msg.command)
                event = handler(msg, line) if handler is not None else None
            except (MalformedLine, ValueError, ArithmeticError) as exc:  # bits=<400 digits>: OverflowError
                self.garbage(line, str(exc))
                continue
            if event is not None:
                events.append(event)
        return events

    def _privmsg(self, msg: IrcMessage, line: str) -> ChatEvent:
        tags = msg.tags
        text = msg.trailing
        if text.startswith("\x01ACTION ") and text.endswith("\x01"):  # /me
            text = text[8:-1]
        user = _user(tags, msg.nick)
        ts = _ts(tags)
        event_id = tags.get("id") or derived_id(PLATFORM, msg.param(0), user.id, ts, text)
        bits = tags.get("bits")
        if bits:
            count = int(bits)
            gift = Gift("bits", count, count / self.cfg.bits_per_usd, "USD")
            return ChatEvent(event_id, PLATFORM, "superchat", ts, user, text, gift, line)
        return ChatEvent(event_id, PLATFORM, "chat", ts, user, text, None, line)

    def _usernotice(self, msg: IrcMessage, line: str) -> ChatEvent | None:
        tags = msg.tags
        kind = tags.get("msg-id", "")
        plan_value = self._plan_value(tags.get("msg-param-sub-plan", ""))
        gift: Gift | None = None
        if kind in _SUBS:
            gift = Gift(kind, 1, plan_value, "USD")
        elif kind in _GIFTS:
            if tags.get("msg-param-community-gift-id"):
                return None  # one of a mystery gift's subs: the mystery gift carried the total
            months = int(tags.get("msg-param-gift-months") or 1)
            gift = Gift(kind, months, months * plan_value, "USD")
        elif kind in _MYSTERY_GIFTS:
            count = int(tags.get("msg-param-mass-gift-count") or 1)
            gift = Gift(kind, count, count * plan_value, "USD")
        ts = _ts(tags)
        user = _user(tags, tags.get("login", ""))
        event_id = tags.get("id") or derived_id(PLATFORM, "USERNOTICE", kind, user.id, ts)
        text = msg.param(1) or tags.get("system-msg", "")
        event_kind: Kind = "gift" if gift is not None else "system"
        return ChatEvent(event_id, PLATFORM, event_kind, ts, user, text, gift, line)

    def _plan_value(self, plan: str) -> float:
        values = self.cfg.sub_value_usd
        return values.get(plan, values.get("1000", 0.0))

    def _clearmsg(self, msg: IrcMessage, line: str) -> ChatEvent:
        tags = msg.tags
        target = tags.get("target-msg-id")
        if not target:
            raise MalformedLine("CLEARMSG without target-msg-id")
        login = tags.get("login", "")
        ts = _ts(tags)
        event_id = derived_id(PLATFORM, "CLEARMSG", target)
        return ChatEvent(event_id, PLATFORM, "system", ts, User(login, login), "", None, line, removes=target)

    def _clearchat(self, msg: IrcMessage, line: str) -> ChatEvent:
        tags = msg.tags
        ts = _ts(tags)
        login = msg.param(1)
        if login:
            # the id is what events carry; a server without the tags capability only names the login
            user = User(tags.get("target-user-id") or login, login)
            removes = f"user:{user.id}"
        else:
            user = User("", "")
            removes = "*"
        event_id = derived_id(PLATFORM, "CLEARCHAT", msg.param(0), removes, ts)
        return ChatEvent(event_id, PLATFORM, "system", ts, user, "", None, line, removes=removes)

    def _ping(self, msg: IrcMessage, line: str) -> None:
        self.send(format_line("PONG", msg.trailing or "tmi.twitch.tv"))

    def _reconnect(self, msg: IrcMessage, line: str) -> None:
        self.end_session("Twitch asked for a reconnect (RECONNECT)")

    def _notice(self, msg: IrcMessage, line: str) -> None:
        text = msg.trailing
        if msg.param(0) == "*" and any(text.startswith(refusal) for refusal in AUTH_REFUSALS):
            raise FeedAuthError(text)
        if not self._joined and msg.tags.get("msg-id") in JOIN_REFUSALS:
            raise FeedError(f"Twitch refused to join #{self.cfg.channel}: {text}")

    def _welcome(self, msg: IrcMessage, line: str) -> None:
        self._welcomed = True

    def _join(self, msg: IrcMessage, line: str) -> None:
        if msg.nick == self.login and msg.param(0) == f"#{self.cfg.channel}":
            self._joined = True

    def _roomstate(self, msg: IrcMessage, line: str) -> None:
        if msg.param(0) == f"#{self.cfg.channel}":
            self._joined = True


def _ts(tags: dict[str, str]) -> int:
    sent = tags.get("tmi-sent-ts", "")
    return int(sent) if sent.isdigit() else now_ms()


def _user(tags: dict[str, str], login: str) -> User:
    """The sender from its tags.

    Display name (else login), roles from badges and flags, and the months subscribed (``badge-info``)
    as its level: the closest Twitch has to a fan level.
    """
    name = tags.get("display-name", "").strip() or login
    roles: set[str] = set()
    badges = tags.get("badges", "")
    if badges:
        for badge in badges.split(","):
            role = _BADGE_ROLES.get(badge.partition("/")[0])
            if role is not None:
                roles.add(role)
    if tags.get("mod") == "1":
        roles.add("moderator")
    if tags.get("vip") == "1":
        roles.add("vip")
    if tags.get("subscriber") == "1":
        roles.add("subscriber")
    if tags.get("first-msg") == "1":
        roles.add("first_time")
    level = 0
    info = tags.get("badge-info", "")
    if info:
        for badge in info.split(","):
            key, _, months = badge.partition("/")
            if key in ("subscriber", "founder") and months.isdigit():
                level = int(months)
    return User(
        tags.get("user-id") or login,
        name,
        tuple(r for r in _ROLE_ORDER if r in roles) if roles else (),
        level,
    )

"""A Twitch chat server for the tests: IRC lines over a real WebSocket, as irc-ws.chat.twitch.tv speaks.

``async with TwitchServer(token="abc") as server`` serves on loopback (``server.url``). Per connection it
acknowledges ``CAP REQ``, accepts ``justinfan`` logins without a password and ``PASS oauth:<token>``
for any other nick (a wrong token gets Twitch's ``NOTICE * :Login authentication failed`` and the
connection closed; a PASS without ``oauth:`` gets ``Improperly formatted auth``), welcomes with
001-004 and the MOTD, answers ``JOIN`` with the echo, NAMES, USERSTATE and ROOMSTATE, and answers
client PINGs with PONG.

Tests drive the latest session: ``push`` sends lines (several in one frame), ``ping`` sends a PING and
waits for its PONG, ``reconnect`` sends RECONNECT, ``drop`` closes, ``send_frame`` sends anything.
``until`` waits for a condition on what the server has seen. The ``*_line`` helpers build realistic
tagged lines (tag sets as Twitch sends them).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from danmaku.feeds.irc import escape_tag_value, lines, parse
from tests.ws_servers import WsServer

HOST = "tmi.twitch.tv"
AUTH_FAILED = "Login authentication failed"
BAD_AUTH = "Improperly formatted auth"
_ts = itertools.count(1_700_000_000_000, 1000)


@dataclass
class Session:
    """One client connection as the server saw it."""

    ws: ServerConnection
    nick: str = ""
    password: str = ""
    caps: str = ""
    channel: str = ""
    welcomed: bool = False
    closed: bool = False
    received: list[str] = field(default_factory=list)

    @property
    def joined(self) -> bool:
        """Logged in and in a channel: ready for chat."""
        return self.welcomed and bool(self.channel)

    def saw(self, command: str) -> list[str]:
        """The lines this client sent with ``command``."""
        return [line for line in self.received if line.split(" ", 1)[0] == command]


class TwitchServer(WsServer):
    """See the module docstring."""

    def __init__(self, token: str = "s3cr3t") -> None:
        self.token = token
        self.sessions: list[Session] = []
        self.refused = 0
        self._changed = asyncio.Condition()
        super().__init__()

    async def handle(self, ws: ServerConnection) -> None:
        """One client's IRC session."""
        await self._serve(ws)

    @property
    def session(self) -> Session:
        """The latest connection."""
        return self.sessions[-1]

    async def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds (checked whenever the server sees something)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def joined(self, count: int = 1, timeout: float = 10.0) -> Session:
        """Wait until ``count`` sessions have joined; the latest."""
        await self.until(lambda: sum(s.joined for s in self.sessions) >= count, timeout)
        return self.session

    async def push(self, *lines_: str) -> None:
        """Send ``lines_`` to the latest session in one frame, as Twitch batches them."""
        await self.send_frame("".join(f"{line}\r\n" for line in lines_))

    async def send_frame(self, frame: str | bytes) -> None:
        """Send one raw frame to the latest session."""
        await self.session.ws.send(frame)

    async def ping(self, payload: str = HOST, timeout: float = 10.0) -> None:
        """PING the latest session and wait for its PONG."""
        session = self.session
        await self.push(f"PING :{payload}")
        await self.until(lambda: any(parse(p).trailing == payload for p in session.saw("PONG")), timeout)

    async def reconnect(self) -> None:
        """Ask the latest session to reconnect, as Twitch does before maintenance."""
        await self.push(f":{HOST} RECONNECT")

    async def drop(self) -> None:
        """Close the latest session's connection."""
        await self.session.ws.close()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _serve(self, ws: ServerConnection) -> None:
        session = Session(ws)
        self.sessions.append(session)
        await self._notify()
        try:
            async for frame in ws:
                if isinstance(frame, bytes):
                    continue
                for line in lines(frame):
                    session.received.append(line)
                    await self._answer(session, line)
                await self._notify()
        except ConnectionClosed:
            pass
        finally:
            session.closed = True
            await self._notify()
        await ws.wait_closed()

    async def _answer(self, s: Session, line: str) -> None:
        msg = parse(line)
        send = s.ws.send
        if msg.command == "CAP" and msg.param(0) == "REQ":
            s.caps = msg.trailing
            await send(f":{HOST} CAP * ACK :{s.caps}\r\n")
        elif msg.command == "PASS":
            s.password = msg.param(0)
        elif msg.command == "NICK":
            s.nick = msg.param(0)
            await self._login(s)
        elif msg.command == "JOIN" and s.welcomed:
            s.channel = msg.param(0)
            await self._join(s)
        elif msg.command == "PING":
            await send(f":{HOST} PONG {HOST} :{msg.trailing}\r\n")

    async def _login(self, s: Session) -> None:
        anonymous = s.nick.startswith("justinfan") and s.nick[9:].isdigit() and not s.password
        if not anonymous:
            refusal = ""
            if not s.password.startswith("oauth:"):
                refusal = BAD_AUTH
            elif s.password != f"oauth:{self.token}":
                refusal = AUTH_FAILED
            if refusal:
                self.refused += 1
                await s.ws.send(f":{HOST} NOTICE * :{refusal}\r\n")
                await s.ws.close()
                return
        s.welcomed = True
        n = s.nick
        motd = [
            f":{HOST} 001 {n} :Welcome, GLHF!",
            f":{HOST} 002 {n} :Your host is {HOST}",
            f":{HOST} 003 {n} :This server is rather new",
            f":{HOST} 004 {n} :-",
            f":{HOST} 375 {n} :-",
            f":{HOST} 372 {n} :You are in a maze of twisty passages, all alike.",
            f":{HOST} 376 {n} :>",
        ]
        await s.ws.send("".join(f"{line}\r\n" for line in motd))

    async def _join(self, s: Session) -> None:
        n, ch = s.nick, s.channel
        replies = [
            f":{n}!{n}@{n}.{HOST} JOIN {ch}",
            f":{n}.{HOST} 353 {n} = {ch} :{n}",
            f":{n}.{HOST} 366 {n} {ch} :End of /NAMES list",
        ]
        await s.ws.send("".join(f"{line}\r\n" for line in replies))
        await s.ws.send(
            f"@badge-info=;badges=;color=;display-name={n};emote-sets=0;mod=0;subscriber=0;user-type= "
            f":{HOST} USERSTATE {ch}\r\n"
            f"@emote-only=0;followers-only=-1;r9k=0;room-id=713936733;slow=0;subs-only=0 "
            f":{HOST} ROOMSTATE {ch}\r\n"
        )


# -- realistic lines (tag sets as Twitch documents them) ---------------------------------------------


def _tags(tags: dict[str, str]) -> str:
    return "@" + ";".join(f"{k}={escape_tag_value(v)}" for k, v in tags.items())


def privmsg_line(
    login: str,
    text: str,
    channel: str = "#xyz",
    *,
    msg_id: str | None = None,
    user_id: str = "713936733",
    display_name: str | None = None,
    badges: str = "",
    badge_info: str = "",
    bits: int | None = None,
    mod: bool = False,
    first_msg: bool = False,
    ts: int | None = None,
) -> str:
    """A PRIVMSG with the tags Twitch sends (dev.twitch.tv/docs/irc/tags, PRIVMSG)."""
    tags = {
        "badge-info": badge_info,
        "badges": badges,
        **({"bits": str(bits)} if bits is not None else {}),
        "client-nonce": uuid.uuid4().hex,
        "color": "#0000FF",
        "display-name": login.capitalize() if display_name is None else display_name,
        "emotes": "",
        "first-msg": "1" if first_msg else "0",
        "flags": "",
        "id": msg_id or str(uuid.uuid4()),
        "mod": "1" if mod else "0",
        "returning-chatter": "0",
        "room-id": "713936733",
        "subscriber": "1" if "subscriber/" in badges else "0",
        "tmi-sent-ts": str(next(_ts) if ts is None else ts),
        "turbo": "0",
        "user-id": user_id,
        "user-type": "mod" if mod else "",
    }
    return f"{_tags(tags)} :{login}!{login}@{login}.{HOST} PRIVMSG {channel} :{text}"


def clearmsg_line(target_msg_id: str, login: str, text: str, channel: str = "#xyz") -> str:
    """A moderator deleted one message (CLEARMSG tags: login, room-id, target-msg-id, tmi-sent-ts)."""
    tags = {"login": login, "room-id": "", "target-msg-id": target_msg_id, "tmi-sent-ts": str(next(_ts))}
    return f"{_tags(tags)} :{HOST} CLEARMSG {channel} :{text}"


def clearchat_line(login: str | None = None, user_id: str = "", channel: str = "#xyz") -> str:
    """A ban or timeout (with ``login``: tags ban-duration, target-user-id) or a cleared chat."""
    tags = {"room-id": "713936733", "tmi-sent-ts": str(next(_ts))}
    if login is None:
        return f"{_tags(tags)} :{HOST} CLEARCHAT {channel}"
    tags = {"ban-duration": "600", **tags, "target-user-id": user_id}
    return f"{_tags(tags)} :{HOST} CLEARCHAT {channel} :{login}"


# -- lines as Twitch sends them ---------------------------------------------------------------------
# From Twitch's documentation and captures published with open-source Twitch clients; where a line was
# edited to cover a case, the comment above it says how.

DOCS_PRIVMSG = (
    "@badge-info=;badges=broadcaster/1;client-nonce=997dcf443c31e258c1d32a8da47b6936;color=#0000FF;"
    "display-name=abc;emotes=;first-msg=0;flags=0-6:S.7;id=eb24e920-8065-492a-8aea-266a00fc5126;mod=0;"
    "room-id=713936733;subscriber=0;tmi-sent-ts=1642786203573;turbo=0;user-id=713936733;user-type= "
    ":abc!abc@abc.tmi.twitch.tv PRIVMSG #xyz :HeyGuys"
)
ACTION = (
    "@badge-info=subscriber/22;badges=moderator/1,subscriber/12;color=#19E6E6;display-name=randers;"
    "emotes=;flags=;id=d831d848-b7c7-4559-ae3a-2cb88f4dbfed;mod=1;room-id=11148817;subscriber=1;"
    "tmi-sent-ts=1594555275886;turbo=0;user-id=40286300;user-type=mod "
    ":randers!randers@randers.tmi.twitch.tv PRIVMSG #pajlada :\x01ACTION -tags\x01"
)
BITS = (
    "@badge-info=;badges=bits/100;bits=1;color=#004B49;display-name=TETYYS;emotes=;flags=;"
    "id=d7f03a35-f339-41ca-b4d4-7c0721438570;mod=0;room-id=11148817;subscriber=0;tmi-sent-ts=1594571566672;"
    "turbo=0;user-id=36175310;user-type= :tetyys!tetyys@tetyys.tmi.twitch.tv PRIVMSG #pajlada :trihard1"
)
TRAILING_SPACE_NAME = (
    "@badge-info=;badges=;client-nonce=815810609edecdf4537bd9586994182b;color=;"
    "display-name=CarvedTaleare\\s;emotes=;flags=;id=c9b941d9-a0ab-4534-9903-971768fcdf10;mod=0;"
    "room-id=22484632;subscriber=0;tmi-sent-ts=1594554085753;turbo=0;user-id=467684514;user-type= "
    ":carvedtaleare!carvedtaleare@carvedtaleare.tmi.twitch.tv PRIVMSG #forsen :NaM"
)
# a reply capture with its reply-* tags dropped, a vip badge, first-msg=1 and another text
FIRST_MSG_VIP = (
    "@badge-info=;badges=vip/1;color=;display-name=LeftSwing;emotes=;first-msg=1;flags=;"
    "id=5b4f63a9-776f-4fce-bf3c-d9707f52e32d;mod=0;returning-chatter=0;room-id=37940952;subscriber=0;"
    "tmi-sent-ts=1673925983585;turbo=0;user-id=133651738;user-type=;vip=1 "
    ":leftswing!leftswing@leftswing.tmi.twitch.tv PRIVMSG #retoon :hi: all :)"
)
NO_TAGS = ":abc!abc@abc.tmi.twitch.tv PRIVMSG #xyz :HeyGuys"
SUB_PRIME = (
    "@badge-info=subscriber/0;badges=subscriber/0,premium/1;color=;display-name=fallenseraphhh;emotes=;"
    "flags=;id=2a9bea11-a80a-49a0-a498-1642d457f775;login=fallenseraphhh;mod=0;msg-id=sub;"
    "msg-param-cumulative-months=1;msg-param-months=0;msg-param-should-share-streak=0;"
    "msg-param-sub-plan-name=Channel\\sSubscription\\s(xqcow);msg-param-sub-plan=Prime;room-id=71092938;"
    "subscriber=1;system-msg=fallenseraphhh\\ssubscribed\\swith\\sTwitch\\sPrime.;"
    "tmi-sent-ts=1582685713242;user-id=224005980;user-type= :tmi.twitch.tv USERNOTICE #xqcow"
)
RESUB = (
    "@badge-info=subscriber/2;badges=subscriber/0,battlerite_1/1;color=#0000FF;display-name=Gutrin;"
    "emotes=1035663:0-3;flags=;id=e0975c76-054c-4954-8cb0-91b8867ec1ca;login=gutrin;mod=0;msg-id=resub;"
    "msg-param-cumulative-months=2;msg-param-months=0;msg-param-should-share-streak=1;"
    "msg-param-streak-months=2;msg-param-sub-plan-name=Channel\\sSubscription\\s(xqcow);"
    "msg-param-sub-plan=1000;room-id=71092938;subscriber=1;system-msg=Gutrin\\ssubscribed\\sat\\sTier\\s1.;"
    "tmi-sent-ts=1581713640019;user-id=21156217;user-type= :tmi.twitch.tv USERNOTICE #xqcow :xqcL"
)
# plan 3000 (the capture was tier 1)
SUBGIFT = (
    "@badge-info=;badges=sub-gifter/50;color=;display-name=AdamAtReflectStudios;emotes=;flags=;"
    "id=e21409b1-d25d-4a1a-b5cf-ef27d8b7030e;login=adamatreflectstudios;mod=0;msg-id=subgift;"
    "msg-param-gift-months=1;msg-param-months=2;msg-param-recipient-display-name=qatarking24xd;"
    "msg-param-recipient-id=236653628;msg-param-recipient-user-name=qatarking24xd;msg-param-sender-count=0;"
    "msg-param-sub-plan=3000;room-id=71092938;subscriber=0;"
    "system-msg=AdamAtReflectStudios\\sgifted\\sa\\sTier\\s3\\ssub\\sto\\sqatarking24xd!;"
    "tmi-sent-ts=1594583782376;user-id=211711554;user-type= :tmi.twitch.tv USERNOTICE #xqcow"
)
# system-msg shortened
MYSTERY = (
    "@badge-info=subscriber/25;badges=subscriber/3012,sub-gifter/550;color=#FF7F50;display-name=Bent_Knee;"
    "emotes=;flags=;id=954b764f-0b73-440f-9528-818fba5eb210;login=bent_knee;mod=0;msg-id=submysterygift;"
    "msg-param-community-gift-id=5596808143494217874;msg-param-mass-gift-count=20;"
    "msg-param-origin-id=5596808143494217874;msg-param-sender-count=570;msg-param-sub-plan=1000;"
    "room-id=204730616;subscriber=1;system-msg=Bent_Knee\\sis\\sgifting\\s20\\sTier\\s1\\sSubs!;"
    "tmi-sent-ts=1730308163912;user-id=183568249;user-type=;vip=0 :tmi.twitch.tv USERNOTICE #cinna"
)
# one of MYSTERY's 20 subs, built from a single subgift capture with the community-gift-id added
MYSTERY_PART = (
    "@badge-info=;badges=;color=;display-name=Bent_Knee;emotes=;flags=;id=0c7ed9d6-1a25-4e16-a3b2-5d8d5b8e6f3a;"
    "login=bent_knee;mod=0;msg-id=subgift;msg-param-community-gift-id=5596808143494217874;"
    "msg-param-gift-months=1;msg-param-recipient-display-name=A;msg-param-recipient-id=1;"
    "msg-param-recipient-user-name=a;msg-param-sub-plan=1000;room-id=204730616;subscriber=0;"
    "system-msg=Bent_Knee\\sgifted\\sa\\sTier\\s1\\ssub\\sto\\sA!;tmi-sent-ts=1730308164000;"
    "user-id=183568249;user-type= :tmi.twitch.tv USERNOTICE #cinna"
)
RAID = (
    "@badge-info=;badges=;color=#8A2BE2;display-name=ManzDev;emotes=;flags=;"
    "id=068be18a-ee52-48bb-961b-c391424b5cc3;login=manzdev;mod=0;msg-id=raid;msg-param-displayName=ManzDev;"
    "msg-param-login=manzdev;msg-param-viewerCount=46;room-id=494686511;subscriber=0;"
    "system-msg=46\\sraiders\\sfrom\\sManzDev\\shave\\sjoined!;tmi-sent-ts=1637699495632;user-id=504185570;"
    "user-type= :tmi.twitch.tv USERNOTICE #s4vitaar"
)
ANNOUNCEMENT = (
    "@emotes=;login=pajbot;vip=0;tmi-sent-ts=1695554663565;flags=;mod=1;subscriber=1;"
    "id=bb1bec25-8f26-4ba3-a084-a6a2ca332f00;badge-info=subscriber/93;system-msg=;user-id=82008718;"
    "user-type=mod;room-id=11148817;badges=moderator/1,subscriber/3072;msg-param-color=PRIMARY;"
    "msg-id=announcement;color=#2E8B57;display-name=pajbot :tmi.twitch.tv USERNOTICE #pajlada :$ping xd"
)
CLEARMSG = (
    "@login=alazymeme;room-id=;target-msg-id=3c92014f-340a-4dc3-a9c9-e5cf182f4a84;tmi-sent-ts=1594561955611 "
    ":tmi.twitch.tv CLEARMSG #pajlada :lole"
)
BAN = (
    "@room-id=11148817;target-user-id=70948394;tmi-sent-ts=1594561360331 "
    ":tmi.twitch.tv CLEARCHAT #pajlada :weeb123"
)
TIMEOUT = (
    "@ban-duration=1;room-id=11148817;target-user-id=148973258;tmi-sent-ts=1594553828245 "
    ":tmi.twitch.tv CLEARCHAT #pajlada :fabzeef"
)
CLEAR_ALL = "@room-id=40286300;tmi-sent-ts=1594561392337 :tmi.twitch.tv CLEARCHAT #randers"

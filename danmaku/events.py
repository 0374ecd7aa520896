"""The normalised comment event: what every feed produces, whatever the platform's wire protocol.

Ids are strings (platforms use 64-bit numbers, UUIDs or hashes); times are integer milliseconds since
the Unix epoch: ``ts`` when the platform says it happened, ``received_at`` when this process read it.
A gift's ``value`` is a currency amount (bilibili gold 1000 = 1 CNY, Douyin diamonds at a configured
rate, Twitch bits 100 = 1 USD), so rooms on different platforms rank gifts alike. ``raw`` is the
message exactly as it came off the wire (one JSON object, one IRC line), kept for audit.

A platform moderator's removal (Twitch CLEARMSG/CLEARCHAT) is a ``system`` event whose ``removes``
names what goes: a message id, ``user:ID`` for everything a user wrote, or ``*`` for the whole chat.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Literal, get_args

Kind = Literal["chat", "gift", "superchat", "enter", "follow", "like", "share", "order", "system"]
KINDS: frozenset[str] = frozenset(get_args(Kind))
HOST_PLATFORM = "voice"  # the platform of what the host said into the console's microphone
HOST_FEED = "mic"  # ...and its feed (no configured feed is named so: feed names are its type and index)
Role = Literal["broadcaster", "moderator", "member", "vip", "subscriber", "admin"]


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch (event times, never the program clock)."""
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class User:
    """Who sent the event; ``roles`` from the platform (moderator, member...), ``level`` its fan level."""

    id: str
    name: str
    roles: tuple[str, ...] = ()
    level: int = 0


@dataclass(slots=True)
class Gift:
    """A gift, superchat or paid message: ``value`` is the total for ``count`` items, in ``currency``."""

    name: str
    count: int = 1
    value: float = 0.0
    currency: str = "CNY"

    def __post_init__(self) -> None:
        if not math.isfinite(self.value):  # "nan" from a hostile frame must not poison the ranking
            self.value = 0.0


@dataclass(slots=True)
class ChatEvent:
    """One thing that happened in the live room."""

    id: str
    platform: str
    kind: Kind
    ts: int
    user: User
    text: str = ""
    gift: Gift | None = None
    raw: str = ""
    received_at: int = field(default_factory=now_ms)
    feed: str = ""
    removes: str | None = None

    def as_dict(self) -> dict[str, object]:
        """The DESIGN's JSON shape (``raw`` as the wire text)."""
        return {
            "id": self.id,
            "platform": self.platform,
            "kind": self.kind,
            "ts": self.ts,
            "received_at": self.received_at,
            "user": {
                "id": self.user.id,
                "name": self.user.name,
                "roles": list(self.user.roles),
                "level": self.user.level,
            },
            "text": self.text,
            "gift": None
            if self.gift is None
            else {
                "name": self.gift.name,
                "count": self.gift.count,
                "value": self.gift.value,
                "currency": self.gift.currency,
            },
            "raw": self.raw,
            "feed": self.feed,
            "removes": self.removes,
        }


def derived_id(platform: str, *parts: object) -> str:
    """A stable id for a message whose platform gives none.

    The same message seen twice (a resend after a reconnect) gets the same id, so dedupe still works.
    """
    digest = hashlib.blake2b("\x1f".join(map(str, (platform, *parts))).encode(), digest_size=12)
    return digest.hexdigest()

"""What a JSON relay's messages mean: the declarative mapping, its path syntax, and the built-in presets.

Relays that grab a platform's chat (DouyinBarrageGrab for Douyin and Kuaishou, barrage-fly for five
platforms, home-made TikTok grabbers) all push JSON, each in its own shape. A ``JsonMapping`` names
where each part of a comment event sits in a frame, so a new relay needs a config table, not code.

A path is dotted keys from the frame's root (``Data.User.Nickname``); a number, or ``[n]`` after a
key, indexes a list (``info.2.1`` or ``info[2][1]``, negative counts from the end); ``a|b`` reads
``b`` when ``a`` is absent, for relays that renamed a field between versions. ``data`` names a field
holding JSON inside a string (DouyinBarrageGrab's ``Data``): it is decoded in place before any other
path is read, so the other paths walk straight through it.

With a preset, a ``mapping`` table overrides only the fields it gives; its ``kinds`` and ``roles``
entries are merged into the preset's (``kinds = {"2" = "ignore"}`` drops Douyin likes).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from danmaku.events import KINDS, Kind, Role

Preset = Literal["douyin_barrage_grab", "barrage_fly", "plain", "custom"]
#: a type that the ``kinds`` table maps to this is dropped, like a type the table does not name
IGNORE = "ignore"
#: a compiled path: alternatives, each a sequence of (key, list index when the key is a number)
Steps = tuple[tuple[str, int | None], ...]
Path = tuple[Steps, ...]

_PATH_FIELDS = (
    "data", "kind", "kind_detail", "id", "ts", "user_id", "user_name", "user_level", "text",
    "gift_name", "gift_id", "gift_count", "gift_price", "gift_value", "combo_group",
)  # fmt: skip


def compile_path(path: str) -> Path:
    """``Data.User.Nickname``, ``info[2].1`` or ``a|b`` as steps; ValueError says what is wrong."""
    alternatives = []
    for alternative in path.split("|"):
        steps: list[tuple[str, int | None]] = []
        for part in alternative.strip().split("."):
            key, bracket, rest = part.partition("[")
            names = [key] if key or not bracket else []
            if bracket:
                if not rest.endswith("]"):
                    raise ValueError(f"path {path!r}: '[' without its ']' in {part!r}")
                indexes = rest[:-1].split("][")
                if any(_index(index) is None for index in indexes):
                    raise ValueError(f"path {path!r}: brackets hold list indexes only, as in a[0]")
                names += indexes
            if not names or not all(names) or "]" in key:
                raise ValueError(f"path {path!r}: empty or broken step (keys as a.b, indexes as a[0] or a.0)")
            steps += [(name, _index(name)) for name in names]
        alternatives.append(tuple(steps))
    return tuple(alternatives)


def _index(name: str) -> int | None:
    try:
        return int(name)
    except ValueError:
        return None


class JsonMapping(BaseModel):
    """Where a comment event's parts sit in a relay's frame (paths as in the module docstring).

    Every field is optional so a table can override a preset field by field; ``resolve`` checks that
    the result maps something and fills the defaults.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str | None = None  # a field whose string value is JSON, decoded in place
    kind: str | None = None  # the message type; numbers and strings are both matched as text
    kind_detail: str | None = None  # read when `kinds` has no entry for the type: key "TYPE:DETAIL"
    kinds: dict[str, str] | None = None  # type -> kind or "ignore"; types not named are dropped
    default_kind: Kind | None = None  # a frame with no type (nor a "null" entry in kinds); None: garbage
    id: str | None = None  # absent: an id derived from the content
    ts: str | None = None  # absent: the time the frame was read
    ts_unit: Literal["s", "ms", "auto"] | None = None  # auto: below 1e11 is seconds
    user_id: str | None = None  # absent: the user's name stands in
    user_name: str | None = None
    user_level: str | None = None
    roles: dict[Role, str] | None = None  # role -> path; a truthy value there grants the role
    text: str | None = None
    gift_name: str | None = None
    gift_id: str | None = None  # names the gift in the combo key (the name does when absent)
    gift_count: str | None = None  # absent: 1
    gift_price: str | None = None  # one item, in platform units: value = count * price * scale
    gift_value: str | None = None  # the whole message, in platform units, when no price is given
    count_mode: Literal["total", "increment"] | None = None  # increment: gift_count is a running total
    combo_group: str | None = None  # increment: the combo the running total belongs to
    value_scale: float | None = Field(None, ge=0)  # gift units -> currency (Douyin: diamond_value)
    superchat_scale: float | None = Field(None, ge=0)  # superchat units -> currency
    currency: str | None = Field(None, min_length=1, max_length=8)

    @field_validator(*_PATH_FIELDS)
    @classmethod
    def _valid_path(cls, value: str | None) -> str | None:
        if value is not None:
            compile_path(value)
        return value

    @field_validator("kinds", mode="before")
    @classmethod
    def _kind_table(cls, table: object) -> object:
        if not isinstance(table, dict):
            return table
        named = sorted((*KINDS, IGNORE))
        for key, kind in table.items():
            if kind not in named:
                raise ValueError(f"kinds[{key!r}] = {kind!r} is not a kind: use one of {', '.join(named)}")
        return {_type_key(key): kind for key, kind in table.items()}

    @field_validator("roles")
    @classmethod
    def _role_paths(cls, table: dict[Role, str] | None) -> dict[Role, str] | None:
        for path in (table or {}).values():
            compile_path(path)
        return table


def _type_key(value: object) -> str:
    """A type as the ``kinds`` table spells it: 5, 5.0 and "5" are all "5"."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


DOUYIN_BARRAGE_GRAB = JsonMapping(
    # BarrageMsgPack {"Type", "ProcessName", "Data": "<JSON string>"}; Data is a Msg subclass
    data="Data",
    kind="Type",
    kind_detail="Data.Type",  # a fans-club message's own Type: 1 level up, 2 joined
    kinds={"1": "chat", "2": "like", "3": "enter", "4": "follow", "5": "gift", "7:2": "follow", "8": "share"},
    id="Data.MsgId",
    user_id="Data.User.Id",
    user_name="Data.User.Nickname",
    user_level="Data.User.FansClub.Level",
    roles={
        "broadcaster": "Data.User.IsAnchor",
        "moderator": "Data.User.IsAdmin",
        "member": "Data.User.FansClub.Level",
    },
    text="Data.Content",
    gift_name="Data.GiftName",
    gift_id="Data.GiftId",
    # GiftCount is what this message adds (本次增量); RepeatCount is the combo's running total and
    # counting it would thank a ten-gift combo for 1+2+...+10
    gift_count="Data.GiftCount",
    count_mode="total",
    gift_price="Data.DiamondCount",  # diamonds for one item
    currency="CNY",
)

BARRAGE_FLY = JsonMapping(
    # BarrageFlyMsgDTO {"platform", "roomId", "type", "msg"}; msg is live-chat-client's IMsg as JSON
    kind="type",
    kind_detail="msg.socialAction",
    kinds={
        "DANMU": "chat",
        "GIFT": "gift",
        "SUPER_CHAT": "superchat",
        "ENTER_ROOM": "enter",
        "LIKE": "like",
        "SOCIAL:SUBSCRIBE": "follow",
        "SOCIAL:SHARE": "share",
        "null": IGNORE,  # a message barrage-fly has no type for
    },
    user_id="msg.uid",
    user_name="msg.username",
    user_level="msg.badgeLevel",
    roles={"member": "msg.badgeLevel"},
    text="msg.content",
    gift_name="msg.giftName",
    gift_id="msg.giftId",
    gift_count="msg.giftCount",  # already the increment: live-chat-client works out combos
    count_mode="total",
    gift_price="msg.giftPrice",  # one item, in the platform's unit
    gift_value="msg.data.price",  # a bilibili superchat's price, in CNY
    superchat_scale=1.0,
    currency="CNY",
)

PLAIN = JsonMapping(
    # {"user": "name", "text": "..."} and optionally id, ts, type, user_id, gift, count, value
    kind="type",
    kinds={kind: kind for kind in KINDS},
    default_kind="chat",
    id="id",
    ts="ts",
    ts_unit="auto",
    user_id="user.id|user_id",
    user_name="user.name|user",
    user_level="user.level|level",
    text="text",
    gift_name="gift.name|gift",
    gift_count="gift.count|count",
    gift_value="gift.value|value",
    value_scale=1.0,
    currency="CNY",
)

#: barrage-fly forwards giftPrice in each platform's own unit; these are the ones known
_BARRAGE_FLY_UNITS = {"bilibili": 0.001}  # gold: 1000 = 1 CNY; douyin's diamonds use diamond_value
_DEFAULT_PLATFORM = {"douyin_barrage_grab": "douyin", "plain": "json", "custom": "json"}


def resolve(
    preset: Preset, platform: str, diamond_value: float, mapping: JsonMapping | None
) -> tuple[str, JsonMapping]:
    """The platform name and complete mapping a feed reads with; ValueError explains a bad config."""
    platform = platform or _DEFAULT_PLATFORM.get(preset, "")
    if not platform:
        raise ValueError(f"preset {preset!r} serves several platforms: set platform (e.g. 'bilibili')")
    if preset == "custom":
        if mapping is None:
            raise ValueError(
                "preset 'custom' needs a mapping table ([feeds.mapping]) saying where the fields are"
            )
        base = JsonMapping()
    else:
        base = {"douyin_barrage_grab": DOUYIN_BARRAGE_GRAB, "barrage_fly": BARRAGE_FLY, "plain": PLAIN}[
            preset
        ]
    defaults: dict[str, object] = {
        "ts_unit": "ms",
        "count_mode": "total",
        "currency": "CNY",
        "superchat_scale": 1.0,
    }
    if preset == "douyin_barrage_grab" or (preset == "barrage_fly" and platform == "douyin"):
        defaults["value_scale"] = diamond_value
    elif preset == "barrage_fly":
        defaults["value_scale"] = _BARRAGE_FLY_UNITS.get(platform)
    else:
        defaults["value_scale"] = 1.0
    merged = _merge(base, mapping)
    filled = {key: value for key, value in defaults.items() if getattr(merged, key) is None}
    result = merged.model_copy(update=filled)
    _check(preset, platform, result)
    return platform, result


def _merge(base: JsonMapping, override: JsonMapping | None) -> JsonMapping:
    if override is None:
        return base
    update = override.model_dump(exclude_unset=True)
    for table in ("kinds", "roles"):
        if table in update:
            update[table] = {**(getattr(base, table) or {}), **update[table]}
    return base.model_copy(update=update)


def _check(preset: str, platform: str, m: JsonMapping) -> None:
    if m.value_scale is None:
        raise ValueError(
            f"preset {preset!r}: the unit of gift prices on {platform!r} is not known; "
            "set mapping.value_scale (currency per unit, 0 to ignore gift values)"
        )
    if (m.kind is None) != (m.kinds is None):
        raise ValueError("mapping: 'kind' (where the type is) and 'kinds' (what each type means) go together")
    if m.kind is None and m.default_kind is None:
        raise ValueError("mapping: give 'kind' and 'kinds', or a 'default_kind' for every frame")
    if not (m.text or m.gift_name or m.gift_price or m.gift_value or m.user_name):
        raise ValueError("mapping maps nothing: give at least one of text, user_name, gift_name, gift_price")
    if m.count_mode == "increment" and not (m.combo_group and m.gift_count):
        raise ValueError("mapping: count_mode 'increment' needs gift_count (a running total) and combo_group")

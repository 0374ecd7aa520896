"""The JSON relay feed: any WebSocket that pushes a room's chat as JSON, read through a mapping.

Grabbers such as DouyinBarrageGrab (Douyin, Kuaishou) or barrage-fly (bilibili, Douyu, Huya, Douyin,
Kuaishou) sit between a platform and us and push one JSON object per message, or an array of them.
``json_presets`` says where each field sits; this module reads frames with it.

The feed is read-only: it never sends a frame (a ping is protocol, not data). DouyinBarrageGrab
takes what a client sends as commands (one of them closes the grabber), and a relay that is shared
by other tools must not hear from us. A quiet room stays connected because relays answer pings.

DouyinBarrageGrab counts each gift message by its ``GiftCount`` (what that message adds), not
``RepeatCount`` (the combo's running total). For relays that send only running totals, with
``count_mode = "increment"`` an event counts only the rise since the group's last message
(duplicates and the combo's closing summary rise by nothing and are dropped); the memory is
bounded and forgotten on reconnect, since a new session can restart the relay's own counters.

``JsonReader`` is the hot path (a busy room is thousands of messages a second): each path becomes
a small function once, so a message costs its ``json.loads`` (two with JSON-in-a-string, which is
most of the time) and a few dict lookups, with no validation models in between.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

from pydantic import Field, field_validator, model_validator

from danmaku.events import ChatEvent, Gift, Kind, User, derived_id, now_ms
from danmaku.feeds.base import FeedConfig, GarbageFrame, Sink, SocketFeed, loads
from danmaku.feeds.json_presets import IGNORE, JsonMapping, Path, Preset, Steps, compile_path, resolve

__all__ = ["JsonFeed", "JsonFeedConfig", "JsonReader"]

Getter = Callable[[Any], Any]
_MISSING = object()
#: combo groups remembered per connection; a combo lasts seconds, so this many spans a busy room
COMBO_MEMORY = 4096


class JsonFeedConfig(FeedConfig):
    """A ``[[feeds]]`` table with ``type = "json"``: a relay URL, a preset, and mapping overrides."""

    type: Literal["json"] = "json"
    url: str
    platform: str = Field("", max_length=32)  # empty: the preset's (douyin for DouyinBarrageGrab)
    preset: Preset = "plain"
    mapping: JsonMapping | None = None  # required by preset "custom"; otherwise overrides the preset
    diamond_value: float = Field(0.1, ge=0, le=100)  # currency per Douyin diamond

    @field_validator("url")
    @classmethod
    def _websocket_url(cls, url: str) -> str:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"a relay URL starts with ws:// or wss://, not {url!r}")
        return url

    @model_validator(mode="after")
    def _mapping_resolves(self) -> JsonFeedConfig:
        self.resolved()
        return self

    def resolved(self) -> tuple[str, JsonMapping]:
        """The platform name and the complete mapping (the preset with this table's overrides)."""
        return resolve(self.preset, self.platform.lower(), self.diamond_value, self.mapping)


class JsonFeed(SocketFeed):
    """A feed from a JSON relay (see the module docstring)."""

    type = "json"

    def __init__(self, cfg: JsonFeedConfig, sink: Sink) -> None:
        super().__init__(cfg, sink)
        platform, mapping = cfg.resolved()
        self.reader = JsonReader(platform, mapping)
        self._url = cfg.url

    def url(self) -> str:
        """The relay's URL."""
        return self._url

    def handle(self, frame: str | bytes) -> Sequence[ChatEvent]:
        """One frame into events; unreadable messages inside a batch are counted as garbage."""
        events, skipped = self.reader.read(frame)
        for why in skipped:
            self.garbage(frame, why)
        return events

    def reset(self) -> None:
        """A new connection: forget the combo totals of the last one."""
        super().reset()
        self.reader.reset()


class JsonReader:
    """Frames into events through one mapping; keeps the per-connection combo memory."""

    def __init__(self, platform: str, mapping: JsonMapping, combo_memory: int = COMBO_MEMORY) -> None:
        m = mapping
        self.platform = platform
        self._data = None if m.data is None else compile_path(m.data)
        self._kind = _getter(m.kind)
        self._detail = _getter(m.kind_detail)
        self._kinds = {
            key: None if kind == IGNORE else cast(Kind, kind) for key, kind in (m.kinds or {}).items()
        }
        self._default_kind = m.default_kind
        self._id = _getter(m.id)
        self._ts = _getter(m.ts)
        self._ts_unit = m.ts_unit or "ms"
        self._user_id = _getter(m.user_id)
        self._user_name = _getter(m.user_name)
        self._level = _getter(m.user_level)
        self._roles = tuple((role, _getter(path)) for role, path in (m.roles or {}).items())
        self._text = _getter(m.text)
        self._gift_name = _getter(m.gift_name)
        self._gift_id = _getter(m.gift_id)
        self._count = _getter(m.gift_count)
        self._price = _getter(m.gift_price)
        self._value = _getter(m.gift_value)
        self._group = _getter(m.combo_group) if m.count_mode == "increment" else None
        self._scale = {"gift": m.value_scale or 0.0, "superchat": m.superchat_scale or 0.0}
        self._currency = m.currency or "CNY"
        self._memory: dict[tuple[str, str, str], float] = {}
        self._memory_size = combo_memory

    def reset(self) -> None:
        """Forget the combo totals (a new connection)."""
        self._memory.clear()

    def read(self, frame: str | bytes, received_at: int | None = None) -> tuple[list[ChatEvent], list[str]]:
        """The events in ``frame`` and why each unreadable message in a batch was skipped.

        Raises GarbageFrame when nothing in the frame can be read (not JSON, not an object, a
        single message of the wrong shape).
        """
        try:
            doc = loads(frame)
        except (ValueError, RecursionError) as exc:
            raise GarbageFrame(f"not JSON: {exc}") from None
        received = now_ms() if received_at is None else received_at
        if type(doc) is dict:
            text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
            event = self._message(doc, text, received)
            return ([event] if event is not None else []), []
        if type(doc) is not list:
            raise GarbageFrame(f"a JSON {type(doc).__name__}, not an object or an array of them")
        events: list[ChatEvent] = []
        skipped: list[str] = []
        for item in doc:
            try:
                if type(item) is not dict:
                    raise GarbageFrame(f"a JSON {type(item).__name__} in a batch, not an object")
                event = self._message(item, json.dumps(item, ensure_ascii=False), received)
            except GarbageFrame as exc:
                skipped.append(str(exc))
                continue
            if event is not None:
                events.append(event)
        if skipped and len(skipped) == len(doc):
            raise GarbageFrame(skipped[0])
        return events, skipped

    def _message(self, doc: dict[str, Any], raw: str, received: int) -> ChatEvent | None:
        if self._data is not None:
            _decode_inner(doc, self._data)
        kind = self._kind_of(doc)
        if kind is None:
            return None
        user_name = _text(self._user_name(doc))
        user_id = _text(self._user_id(doc)) or user_name
        level = _number(self._level(doc))
        roles = tuple([role for role, getter in self._roles if getter(doc)]) if self._roles else ()
        text = _text(self._text(doc))
        ts = self._timestamp(self._ts(doc), received)
        gift = None
        if kind in ("gift", "superchat"):
            gift = self._gift(doc, kind, user_id)
            if gift is None:
                return None
        msg_id = self._id(doc)
        if msg_id is None or msg_id in ("", 0):
            msg_id = derived_id(self.platform, kind, user_id, text, ts, gift.count if gift else 0)
        return ChatEvent(
            _text(msg_id),
            self.platform,
            kind,
            ts,
            User(user_id, user_name, roles, int(level or 0)),
            text,
            gift,
            raw,
            received,
        )

    def _kind_of(self, doc: dict[str, Any]) -> Kind | None:
        if self._kind is _absent:
            return self._default_kind
        value = self._kind(doc)
        if value is None:  # a frame without a type: the table's "null" entry, else the default
            kind = self._kinds.get("null", _MISSING)
            if kind is _MISSING:
                if self._default_kind is None:
                    raise GarbageFrame("no message type where the mapping says it is")
                return self._default_kind
            return kind  # type: ignore[return-value]
        key = _key(value)
        kind = self._kinds.get(key, _MISSING)
        if kind is _MISSING and self._detail is not _absent:
            kind = self._kinds.get(f"{key}:{_key(self._detail(doc))}", _MISSING)
        return None if kind is _MISSING else kind  # type: ignore[return-value]

    def _timestamp(self, value: Any, received: int) -> int:
        number = _number(value)
        if number is None or number <= 0:
            return received
        if self._ts_unit == "s" or (self._ts_unit == "auto" and number < 1e11):
            number *= 1000
        return int(number) if math.isfinite(number) else received

    def _gift(self, doc: dict[str, Any], kind: str, user_id: str) -> Gift | None:
        """The gift a message stands for; None for a combo message that adds nothing."""
        name = _text(self._gift_name(doc))
        total = _number(self._count(doc))
        if total is None or total <= 0:
            total = 1.0
        count = total
        if self._group is not None:
            group = self._group(doc)
            if group is not None and group not in (0, "", "0"):
                key = (user_id, _text(self._gift_id(doc)) or name, _key(group))
                memory = self._memory
                last = memory.pop(key, 0.0)
                memory[key] = max(last, total)  # re-inserted last: the oldest group is first
                if len(memory) > self._memory_size:
                    del memory[next(iter(memory))]
                if total <= last:
                    return None
                count = total - last
        price = _number(self._price(doc))
        if price is not None:
            units = price * count
        else:
            value = _number(self._value(doc))
            units = 0.0 if value is None else value * count / total
        return Gift(name, int(count), round(units * self._scale[kind], 6), self._currency)


def _absent(doc: Any) -> None:
    return None


def _getter(path: str | None) -> Getter:
    """A function reading ``path`` from a message (``_absent`` for an unmapped field)."""
    if path is None:
        return _absent
    getters = [_steps_getter(steps) for steps in compile_path(path)]
    if len(getters) == 1:
        return getters[0]

    def first_present(doc: Any) -> Any:
        for getter in getters:
            value = getter(doc)
            if value is not None:
                return value
        return None

    return first_present


def _steps_getter(steps: Steps) -> Getter:
    """One alternative as a function.

    Paths of up to four keys (nearly every path a relay needs) are unrolled, several times faster
    than walking the steps; paths with list indexes or more steps are walked by ``_dig``.
    """
    if len(steps) > 4 or any(index is not None for _, index in steps):
        return lambda doc: _dig(doc, (steps,))
    a, b, c, d = [key for key, _ in steps] + [""] * (4 - len(steps))
    if len(steps) == 1:
        return lambda doc: doc.get(a)
    if len(steps) == 2:
        return lambda doc: v.get(b) if type(v := doc.get(a)) is dict else None

    def three(doc: Any) -> Any:
        v = doc.get(a)
        if type(v) is not dict:
            return None
        v = v.get(b)
        return v.get(c) if type(v) is dict else None

    if len(steps) == 3:
        return three

    def four(doc: Any) -> Any:
        v = three(doc)
        return v.get(d) if type(v) is dict else None

    return four


def _dig(doc: Any, path: Path) -> Any:
    for steps in path:
        value = doc
        for key, index in steps:
            kind = type(value)
            if kind is dict:
                value = value.get(key)
            elif kind is list and index is not None and -len(value) <= index < len(value):
                value = value[index]
            else:
                value = None
            if value is None:
                break
        if value is not None:
            return value
    return None


def _decode_inner(doc: dict[str, Any], path: Path) -> None:
    """Decode the JSON string at ``path`` in place (the first alternative present)."""
    for steps in path:
        parent: Any = _dig(doc, (steps[:-1],)) if len(steps) > 1 else doc
        key, index = steps[-1]
        if type(parent) is dict:
            slot: Any = key
            value = parent.get(key)
        elif type(parent) is list and index is not None and -len(parent) <= index < len(parent):
            slot = index
            value = parent[index]
        else:
            continue
        if value is None:
            continue
        if isinstance(value, str):
            try:
                value = parent[slot] = loads(value)
            except (ValueError, RecursionError) as exc:
                raise GarbageFrame(f"the JSON in a string is broken: {exc}") from None
        if not isinstance(value, (dict, list)):
            raise GarbageFrame(f"the JSON in a string is a {type(value).__name__}, not an object")
        return


def _key(value: Any) -> str:
    """A type value as the ``kinds`` table spells it (5, 5.0 and "5" alike)."""
    kind = type(value)
    if kind is str:
        return value
    if kind is int:
        return str(value)
    if kind is float and value.is_integer():
        return str(int(value))
    return json.dumps(value) if value is not None else ""


def _text(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value
    if kind is int:
        return str(value)
    if kind is float:
        return str(int(value)) if value.is_integer() else str(value)
    return ""


def _number(value: Any) -> float | None:
    """A finite float from a JSON number or numeric text; None for anything else.

    Integers become floats too, so the gift arithmetic never meets one too large for a float (a
    400-digit "value" would raise OverflowError there).
    """
    kind = type(value)
    if kind is int:
        try:
            return float(value)
        except OverflowError:
            return None
    if kind is str:
        try:
            value = float(value)
        except ValueError:
            return None
    elif kind is not float:
        return None
    return value if math.isfinite(value) else None

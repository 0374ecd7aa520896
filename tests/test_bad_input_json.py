"""Bad input for the JSON relay feed: frames of any bytes or shape, mappings and paths of any text."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from danmaku.feeds.base import GarbageFrame
from danmaku.feeds.json_presets import JsonMapping, Preset, compile_path, resolve
from danmaku.feeds.json_relay import JsonReader
from tests.json_relay_server import douyin_chat, douyin_user

PRESETS: list[tuple[Preset, str]] = [
    ("plain", ""),
    ("douyin_barrage_grab", ""),
    ("barrage_fly", "bilibili"),
    ("barrage_fly", "douyin"),
]
GOOD = {"user": "ok", "text": "still here", "id": "good-1"}
SECONDS = JsonMapping(default_kind="gift", text="t", ts="ts", ts_unit="s", gift_name="g", gift_value="v")


def _readers() -> list[JsonReader]:
    readers = [JsonReader(*resolve(preset, platform, 0.1, None)) for preset, platform in PRESETS]
    return [*readers, JsonReader(*resolve("custom", "", 0.1, SECONDS))]


numbers = (
    st.integers()
    | st.floats()
    | st.sampled_from([10**400, -(10**400), 1e308, -1e308, 1e-320, 2**63, 2**64 + 1])
    | st.floats().map(str)
)
JSON = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)
FIELDS = ["type", "id", "ts", "user", "user_id", "text", "gift", "count", "value", "level", "t", "g", "v",
          "Type", "Data", "msg", "platform"]  # fmt: skip
messages = st.dictionaries(st.sampled_from(FIELDS), JSON | st.builds(json.dumps, JSON), max_size=8)


@given(st.binary(max_size=300) | st.text(max_size=300))
def test_any_frame_is_events_or_garbage(frame: bytes | str) -> None:
    for reader in _readers():
        try:
            events, skipped = reader.read(frame, received_at=1)
        except GarbageFrame as exc:
            assert str(exc)
        else:
            assert all(isinstance(why, str) and why for why in skipped)
            assert all(isinstance(e.ts, int) for e in events)


@given(messages)
def test_a_bad_message_costs_only_itself(doc: dict[str, object]) -> None:
    """Any message, alone and in a batch before a good one: garbage or events, and the good one counts."""
    for reader in _readers():
        for frame in (doc, [doc, {**GOOD, "Data": "{}", "t": "x"}]):
            try:
                events, _ = reader.read(json.dumps(frame), received_at=1)
            except GarbageFrame as exc:
                assert str(exc)
                continue
            assert all(e.gift is None or math.isfinite(e.gift.value) for e in events)
    events, skipped = _readers()[0].read(json.dumps([doc, GOOD]), received_at=1)
    assert events[-1].id == "good-1"
    assert len(events) + len(skipped) in (1, 2)


@given(st.text(min_size=1, max_size=40), st.text(max_size=40), st.integers(1, 2**53))
def test_plain_round_trip(user: str, text: str, ts: int) -> None:
    (event,), _ = _readers()[0].read(json.dumps({"user": user, "text": text, "ts": ts, "id": "m-1"}))
    assert (event.id, event.user.name, event.text) == ("m-1", user, text)
    assert event.ts == (ts * 1000 if ts < 1e11 else ts)


@given(st.text(max_size=30))
def test_a_path_compiles_or_says_why(path: str) -> None:
    try:
        steps = compile_path(path)
    except ValueError as exc:
        assert str(exc).startswith(f"path {path!r}: ")
    else:
        assert all(all(key for key, _ in alternative) for alternative in steps)


@given(st.dictionaries(st.sampled_from([*FIELDS, "kinds", "roles", "data", "kind", "default_kind"]), JSON))
def test_a_mapping_validates_or_says_why(table: dict[str, object]) -> None:
    try:
        mapping = JsonMapping.model_validate(table)
    except ValidationError:
        return
    try:
        resolve("custom", "", 0.1, mapping)
    except ValueError as exc:
        assert str(exc)


def test_a_number_too_large_for_a_float_costs_only_its_message() -> None:
    """Regression: a 400-digit gift value raised OverflowError out of ``read``, losing the batch."""
    reader = _readers()[0]
    huge = {"user": "a", "type": "gift", "gift": "rose", "count": 2, "value": 10**400}
    events, skipped = reader.read(json.dumps([huge, GOOD]), received_at=1)
    assert [e.id for e in events][-1] == "good-1"
    assert not skipped
    assert events[0].gift is not None and events[0].gift.value == 0.0  # a value that is no number: 0


def test_seconds_that_overflow_fall_back_to_the_read_time() -> None:
    """Regression: ``ts = 1e306`` with ``ts_unit = "s"`` raised OverflowError (infinity to int)."""
    reader = _readers()[-1]
    (event,), _ = reader.read('{"t": "x", "ts": 1e306, "g": "rose", "v": 1}', received_at=7)
    assert event.ts == 7


def test_deeply_nested_json_in_a_string_is_garbage() -> None:
    """Regression: DouyinBarrageGrab's Data holding 5000 nested arrays raised RecursionError."""
    reader = _readers()[1]
    deep = json.dumps({"Type": 1, "Data": "[" * 5000 + "]" * 5000})
    user = douyin_user(7_000_001, "观众")
    events, skipped = reader.read(f"[{deep}, {douyin_chat(1, user, 'still here')}]", received_at=1)
    assert [e.text for e in events] == ["still here"]
    assert len(skipped) == 1 and "broken" in skipped[0]
    with pytest.raises(GarbageFrame, match="broken"):
        reader.read(deep)

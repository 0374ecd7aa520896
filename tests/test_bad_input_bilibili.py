"""Bad input for the bilibili feed: packets, compressed bodies, bombs, and messages that are not."""

from __future__ import annotations

import json
import tracemalloc
import zlib

import brotli
import pytest
from hypothesis import given
from hypothesis import strategies as st

from danmaku.feeds import bilibili_packet as wire
from danmaku.feeds.base import GarbageFrame
from danmaku.feeds.bilibili import BilibiliFeed, BilibiliFeedConfig
from danmaku.feeds.bilibili_cmds import MAPPERS
from tests.bilibili_server import compact, danmu, danmu_frame, send_gift


async def _sink(events: object) -> None:
    """Unused: the tests call ``handle`` directly."""


def _feed() -> BilibiliFeed:
    return BilibiliFeed(BilibiliFeedConfig(room_id=1), _sink)


# a packet as the walker yields it: ops and seqs span u32, bodies are plain (ver 0 or 1)
packets = st.lists(
    st.tuples(
        st.integers(0, 2**32 - 1), st.sampled_from([0, 1]), st.integers(0, 2**32 - 1), st.binary(max_size=64)
    ),
    min_size=1,
    max_size=8,
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


@given(packets, st.sampled_from([None, wire.VER_ZLIB, wire.VER_BROTLI]))
def test_encoded_packets_decode_back(items: list[tuple[int, int, int, bytes]], wrap: int | None) -> None:
    frame = b"".join(wire.encode(op, body, ver, seq) for op, ver, seq, body in items)
    if wrap is not None:
        frame = wire.encode(wire.OP_MESSAGE, frame, wrap)
    assert [tuple(p) for p in wire.decode(frame)] == [(op, ver, seq, body) for op, ver, seq, body in items]


@given(st.binary(max_size=512))
def test_arbitrary_bytes_are_packets_or_garbage(frame: bytes) -> None:
    feed = _feed()
    try:
        packets = wire.decode(frame)
    except GarbageFrame as exc:
        assert str(exc)
        with pytest.raises(GarbageFrame):
            feed.handle(frame)
        return
    assert all(p.ver not in (wire.VER_ZLIB, wire.VER_BROTLI) for p in packets)
    feed.handle(frame)  # a frame that decodes is never garbage as a whole


@given(st.data())
def test_damaged_real_frames_never_raise_anything_else(data: st.DataObject) -> None:
    frame = bytearray(data.draw(st.sampled_from([danmu_frame(3), danmu_frame(2, ver=wire.VER_ZLIB)])))
    for _ in range(data.draw(st.integers(1, 4))):
        frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    try:
        _feed().handle(bytes(frame[:cut]))
    except GarbageFrame as exc:
        assert str(exc)


@given(st.sampled_from(sorted(MAPPERS)), JSON, JSON)
def test_messages_of_any_shape_cost_only_themselves(cmd: str, info: object, data: object) -> None:
    """A known cmd with any fields: skipped and counted, and the good message after it still counts."""
    bad = json.dumps({"cmd": cmd, "info": info, "data": data})
    feed = _feed()
    events = feed.handle(wire.encode_messages([bad, compact(danmu(1, text="still here"))], wire.VER_ZLIB))
    assert events[-1].text == "still here"
    assert len(events) + feed.stats.garbage == 2


@given(st.text(min_size=1, max_size=40), st.integers(1, 2**53), st.text(min_size=1, max_size=20))
def test_danmu_round_trip(text: str, uid: int, name: str) -> None:
    (event,) = _feed().handle(
        wire.encode_messages([compact(danmu(5, text, uid=uid, name=name))], wire.VER_ZLIB)
    )
    assert (event.kind, event.text, event.user.id, event.user.name) == ("chat", text, str(uid), name)


# -- the bounds --------------------------------------------------------------------------------------


def _peak_mib(frame: bytes) -> float:
    tracemalloc.start()
    try:
        with pytest.raises(GarbageFrame) as caught:
            _feed().handle(frame)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
        assert str(caught.value)


@pytest.mark.parametrize("ver", [wire.VER_ZLIB, wire.VER_BROTLI])
def test_a_decompression_bomb_stops_at_the_limit(ver: int) -> None:
    zeros = b"\0" * (wire.MAX_INFLATED * 4)  # 64 MiB of zeros in a few kilobytes
    body = zlib.compress(zeros, 9) if ver == wire.VER_ZLIB else brotli.compress(zeros, quality=5)
    frame = wire.HEADER.pack(16 + len(body), 16, ver, wire.OP_MESSAGE, 1) + body
    assert len(frame) < 100_000
    # the decompressors may hold two buffers while they grow: twice the limit, not the bomb's 64 MiB
    assert _peak_mib(frame) < 2 * wire.MAX_INFLATED / 2**20 + 4


def test_a_frame_of_a_million_empty_packets_is_garbage_quickly() -> None:
    """Regression: 32 KB of zlib inflated to a million packets, 2 s and 100 MB; now a bounded count."""
    inner = wire.encode(wire.OP_HEARTBEAT_REPLY) * (wire.MAX_INFLATED // wire.HEADER_LEN)
    frame = wire.encode(wire.OP_MESSAGE, inner, wire.VER_ZLIB)
    assert len(frame) < 64_000
    with pytest.raises(GarbageFrame, match="packets in one frame"):
        wire.decode(frame)
    assert len(wire.decode(wire.encode(wire.OP_MESSAGE, inner[: wire.MAX_PACKETS * 16 - 16], 2))) == (
        wire.MAX_PACKETS - 1  # the limit counts the compressed packet too
    )


def test_nesting_stops_at_max_depth() -> None:
    frame = wire.encode(wire.OP_HEARTBEAT)
    for _ in range(wire.MAX_DEPTH):
        frame = wire.encode(wire.OP_MESSAGE, frame, wire.VER_ZLIB)
    assert len(wire.decode(frame)) == 1
    with pytest.raises(GarbageFrame, match="nested deeper"):
        wire.decode(wire.encode(wire.OP_MESSAGE, frame, wire.VER_BROTLI))


def test_deeply_nested_json_costs_only_its_message() -> None:
    """Regression: json's RecursionError escaped ``handle`` and lost the whole batch."""
    deep = '{"cmd":"DANMU_MSG","info":' + "[" * 5000 + "]" * 5000 + "}"
    gift = compact(send_gift(1))
    feed = _feed()
    events = feed.handle(wire.encode_messages([deep, gift], wire.VER_ZLIB))
    assert [e.kind for e in events] == ["gift"]
    assert feed.stats.garbage == 1

"""The bilibili live danmaku wire format: packets with a 16-byte header, possibly compressed and nested.

Every WebSocket frame holds one or more packets back to back. A packet is a big-endian header
(``pack_len`` u32 counting the header, ``header_len`` u16 = 16, ``ver`` u16, ``op`` u32, ``seq`` u32)
and a body. ``ver`` says what the body is: 0 a JSON message, 1 a plain value (heartbeat, auth), 2 a
zlib stream and 3 a brotli stream whose inflated bytes are again packets (the server batches a busy
room's messages that way). The feed decodes with this module and the test server and the benchmark
encode with it, so both directions share one reading of the protocol.

``decode`` is on the hot path of a busy room: it walks the frame with offsets (no copy but each
body), and it is bounded: nesting deeper than ``MAX_DEPTH``, inflating past ``MAX_INFLATED`` bytes
in one frame (a zip bomb) or holding more than ``MAX_PACKETS`` packets (a few kilobytes of zlib can
inflate to a million empty packets, seconds of work) is a GarbageFrame, like any length that does not
add up.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from typing import NamedTuple

import brotli

from danmaku.feeds.base import GarbageFrame

OP_HEARTBEAT = 2
OP_HEARTBEAT_REPLY = 3
OP_MESSAGE = 5
OP_AUTH = 7
OP_AUTH_REPLY = 8

VER_JSON = 0
VER_PLAIN = 1
VER_ZLIB = 2
VER_BROTLI = 3

HEADER = struct.Struct(">IHHII")
HEADER_LEN = HEADER.size
#: compressed bodies nest packets; real servers nest once, so a few levels is plenty
MAX_DEPTH = 4
#: bytes one frame may inflate to, all compressed bodies together
MAX_INFLATED = 16 * 1024 * 1024
#: packets one frame may hold, compressed and nested ones included; a busy room's batch holds hundreds
MAX_PACKETS = 20_000
_COMPRESSED = frozenset((VER_ZLIB, VER_BROTLI))


class Packet(NamedTuple):
    """One decoded packet: its operation, body version, sequence number and (inflated) body."""

    op: int
    ver: int
    seq: int
    body: bytes


def encode(op: int, body: bytes | str = b"", ver: int = VER_PLAIN, seq: int = 1) -> bytes:
    """One packet. With ``ver`` 2 or 3, ``body`` (usually packets from ``encode``) is compressed."""
    data = body.encode() if isinstance(body, str) else body
    if ver == VER_ZLIB:
        data = zlib.compress(data)
    elif ver == VER_BROTLI:
        data = brotli.compress(data, quality=5)
    return HEADER.pack(HEADER_LEN + len(data), HEADER_LEN, ver, op, seq) + data


def encode_messages(bodies: Iterable[bytes | str], ver: int = VER_BROTLI) -> bytes:
    """Messages (JSON texts) as the server sends them, as one frame.

    Each is a ver 0 packet; for ``ver`` 2 or 3 they are wrapped in one zlib or brotli packet, for
    ``ver`` 0 they simply follow each other.
    """
    packed = b"".join(encode(OP_MESSAGE, body, VER_JSON) for body in bodies)
    return packed if ver == VER_JSON else encode(OP_MESSAGE, packed, ver)


def decode(frame: bytes) -> list[Packet]:
    """Every packet in ``frame``, compressed bodies inflated and their packets listed in order.

    Raises GarbageFrame for an empty frame, a truncated or inconsistent length, a corrupt or
    truncated compressed body, nesting deeper than ``MAX_DEPTH``, inflation past ``MAX_INFLATED``
    or more than ``MAX_PACKETS`` packets.
    """
    if not frame:
        raise GarbageFrame("empty frame")
    out: list[Packet] = []
    _walk(frame, 0, out, [MAX_INFLATED, MAX_PACKETS])
    return out


def _walk(buf: bytes, depth: int, out: list[Packet], budget: list[int]) -> None:
    """Append ``buf``'s packets to ``out``; ``budget`` is [bytes left to inflate, packets left]."""
    unpack = HEADER.unpack_from
    append = out.append
    end = len(buf)
    off = 0
    while off < end:
        if end - off < HEADER_LEN:
            raise GarbageFrame(f"truncated header: {end - off} bytes at offset {off}")
        pack_len, header_len, ver, op, seq = unpack(buf, off)
        if header_len < HEADER_LEN or pack_len < header_len or off + pack_len > end:
            raise GarbageFrame(
                f"bad lengths at offset {off}: packet {pack_len}, header {header_len}, {end - off} left"
            )
        budget[1] -= 1
        if budget[1] < 0:
            raise GarbageFrame(f"more than {MAX_PACKETS} packets in one frame")
        body = buf[off + header_len : off + pack_len]
        off += pack_len
        if ver in _COMPRESSED:
            if depth >= MAX_DEPTH:
                raise GarbageFrame(f"packets nested deeper than {MAX_DEPTH}")
            inner = _inflate(body, ver, budget)
            if not inner:
                raise GarbageFrame("compressed body holds no packets")
            _walk(inner, depth + 1, out, budget)
        else:
            append(Packet(op, ver, seq, body))


def _inflate(body: bytes, ver: int, budget: list[int]) -> bytes:
    """Decompress ``body``, spending ``budget[0]`` bytes; over budget or corrupt is garbage."""
    left = budget[0]
    try:
        if ver == VER_ZLIB:
            z = zlib.decompressobj()
            data = z.decompress(body, left + 1)
            complete = z.eof and not z.unconsumed_tail
        else:
            b = brotli.Decompressor()
            data = b.process(body, output_buffer_limit=left + 1)
            complete = b.is_finished()
    except (zlib.error, brotli.error) as exc:
        raise GarbageFrame(f"corrupt {'zlib' if ver == VER_ZLIB else 'brotli'} body: {exc}") from exc
    if len(data) > left:
        raise GarbageFrame(f"inflates past {MAX_INFLATED} bytes")
    if not complete:
        raise GarbageFrame("truncated compressed body")
    budget[0] = left - len(data)
    return data

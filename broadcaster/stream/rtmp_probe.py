"""Is there an RTMP server at a URL? Connect (TLS for ``rtmps://``) and do the RTMP handshake, nothing more.

The handshake (C0+C1 out, S0+S1+S2 back, C2 out) is the part of RTMP every server speaks the same way,
before any app or stream key is looked at, so it tells a live ingest from a closed port, a firewall that
drops packets, an HTTP or TLS port, or a stalled server, without publishing anything. C1 carries a zero
version field, which asks for the plain handshake: the server's S2 then echoes C1's random bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

RTMP_VERSION = 3
HANDSHAKE_SIZE = 1536
DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443}
SHOWN_BYTES = 24


class RtmpProbeError(Exception):
    """No RTMP server answered; the message says what happened instead, in words a user can act on."""


@dataclass(frozen=True)
class Handshake:
    """A completed handshake: connect time, the handshake's round trip and whether S2 echoed C1."""

    connect_s: float
    round_trip_s: float
    echoed: bool


def endpoint(url: str) -> tuple[str, int, bool]:
    """Host, port and whether TLS is used, from an ``rtmp://`` or ``rtmps://`` URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise RtmpProbeError("not an rtmp:// or rtmps:// URL with a host")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise RtmpProbeError(f"bad port in the URL: {exc}") from exc
    return parts.hostname, port, scheme == "rtmps"


async def probe_rtmp(url: str, timeout_s: float) -> Handshake:
    """Connect to the server of ``url`` and complete the RTMP handshake within ``timeout_s``.

    Raises ``RtmpProbeError`` (naming host and port, never the stream key) when it cannot.
    """
    host, port, tls = endpoint(url)
    where = f"{host}:{port}"
    deadline = time.monotonic() + timeout_s
    started = time.monotonic()
    reader, writer = await _connect(host, port, tls, timeout_s)
    connected = time.monotonic()
    try:
        c1 = bytes(8) + os.urandom(HANDSHAKE_SIZE - 8)  # time 0, version field 0: the plain handshake
        writer.write(bytes([RTMP_VERSION]) + c1)
        await writer.drain()
        sent = time.monotonic()
        s0 = await _read(reader, 1, deadline, where, timeout_s)
        if s0[0] != RTMP_VERSION:
            raise RtmpProbeError(await _not_rtmp(reader, s0, where, tls))
        s1 = await _read(reader, HANDSHAKE_SIZE, deadline, where, timeout_s)
        round_trip = time.monotonic() - sent
        s2 = await _read(reader, HANDSHAKE_SIZE, deadline, where, timeout_s)
        writer.write(s1)  # C2 echoes S1
        await writer.drain()
    except (ConnectionError, ssl.SSLError) as exc:
        raise RtmpProbeError(f"{where} dropped the connection during the handshake: {exc}") from exc
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
    return Handshake(connected - started, round_trip, echoed=s2[8:] == c1[8:])


async def _connect(
    host: str, port: int, tls: bool, timeout_s: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    where = f"{host}:{port}"
    deadline = time.monotonic() + timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError as exc:
        raise RtmpProbeError(
            f"no connection to {where} within {timeout_s:g} s: a firewall drops the packets, or the "
            "host is wrong or down"
        ) from exc
    except ConnectionRefusedError as exc:
        raise RtmpProbeError(
            f"{where} refused the connection: no server listens on that port (is it running, is the "
            "port right?)"
        ) from exc
    except socket.gaierror as exc:
        raise RtmpProbeError(f"cannot resolve {host}: {exc.strerror or exc}") from exc
    except OSError as exc:
        raise RtmpProbeError(f"cannot connect to {where}: {exc.strerror or exc}") from exc
    if tls:
        try:
            await _start_tls(writer, host, where, deadline, timeout_s)
        except BaseException:
            writer.close()
            raise
    return reader, writer


async def _start_tls(
    writer: asyncio.StreamWriter, host: str, where: str, deadline: float, timeout_s: float
) -> None:
    try:
        async with asyncio.timeout_at(_loop_deadline(deadline)):
            await writer.start_tls(ssl.create_default_context(), server_hostname=host)
    except TimeoutError as exc:
        raise RtmpProbeError(
            f"{where} accepted the connection but no TLS handshake followed within {timeout_s:g} s: "
            "is it a plain rtmp:// port?"
        ) from exc
    except ssl.SSLCertVerificationError as exc:
        raise RtmpProbeError(
            f"TLS with {where}: the certificate is not trusted: {exc.verify_message}"
        ) from exc
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise RtmpProbeError(f"TLS with {where} failed ({reason}): is it an rtmps:// port?") from exc


async def _read(
    reader: asyncio.StreamReader, size: int, deadline: float, where: str, timeout_s: float
) -> bytes:
    try:
        async with asyncio.timeout_at(_loop_deadline(deadline)):
            return await reader.readexactly(size)
    except TimeoutError as exc:
        raise RtmpProbeError(
            f"{where} accepted the connection but did not complete the RTMP handshake within "
            f"{timeout_s:g} s: not an RTMP server, or a stalled one"
        ) from exc
    except asyncio.IncompleteReadError as exc:
        got = f"after {len(exc.partial)} bytes of it" if exc.partial else "before answering"
        raise RtmpProbeError(f"{where} closed the connection during the RTMP handshake, {got}") from exc


def _loop_deadline(deadline: float) -> float:
    """A ``time.monotonic`` deadline on the running loop's clock."""
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())


async def _not_rtmp(reader: asyncio.StreamReader, first: bytes, where: str, tls: bool) -> str:
    """What the server said instead of an RTMP handshake, with a hint at what it is."""
    more = b""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(0.2):
            more = await reader.read(SHOWN_BYTES - 1)
    said = first + more
    if said[:1] in (b"\x15", b"\x16") and not tls:
        hint = ": it speaks TLS, use an rtmps:// URL"
    elif said[:4] == b"HTTP":
        hint = ": an HTTP server, not the RTMP port (usually 1935)"
    else:
        hint = ""
    return f"{where} answered {said!r}, not an RTMP handshake (version {RTMP_VERSION}){hint}"

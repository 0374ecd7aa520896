"""The RTMP handshake probe against a real nginx-rtmp, a closed port, a silent server and a wrong one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from broadcaster.stream.rtmp_probe import Handshake, RtmpProbeError, endpoint, probe_rtmp
from tests.conftest import NginxRtmp, free_port

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def tcp_server(handle: Serve) -> AsyncIterator[int]:
    """A TCP server on loopback running ``handle`` for each connection; yields its port."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_a_real_server_completes_the_handshake(nginx: NginxRtmp) -> None:
    handshake = await probe_rtmp(f"rtmp://127.0.0.1:{nginx.port}/live/secret-key", 5)
    assert isinstance(handshake, Handshake)
    assert handshake.echoed  # nginx answers a plain handshake with C1's own bytes
    assert 0 < handshake.round_trip_s < 1
    assert 0 < handshake.connect_s < 1


async def test_a_closed_port_is_refused_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(RtmpProbeError, match="refused the connection: no server listens") as caught:
        await probe_rtmp(f"rtmp://127.0.0.1:{free_port()}/live/secret-key", 5)
    assert time.monotonic() - started < 2
    assert "secret-key" not in str(caught.value)


async def test_a_server_that_says_nothing_times_out() -> None:
    closed = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the probe hangs up
        writer.close()
        closed.set()

    async with tcp_server(silent) as port:
        started = time.monotonic()
        with pytest.raises(RtmpProbeError, match=r"did not complete the RTMP handshake within 0\.5 s"):
            await probe_rtmp(f"rtmp://127.0.0.1:{port}/live/x", 0.5)
        assert 0.4 < time.monotonic() - started < 2
        await asyncio.wait_for(closed.wait(), 2)  # the probe closed its connection


async def test_a_server_answering_garbage_is_named() -> None:
    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    async with tcp_server(http) as port:
        expected = r"answered b'HTTP/1\.1 400.*not an RTMP handshake.*HTTP server"
        with pytest.raises(RtmpProbeError, match=expected):
            await probe_rtmp(f"rtmp://127.0.0.1:{port}/live/x", 2)


async def test_a_server_hanging_up_mid_handshake() -> None:
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(bytes([3]) + bytes(100))  # S0 and a tenth of S1
        await writer.drain()
        writer.close()

    async with tcp_server(short) as port:
        expected = "closed the connection during the RTMP handshake, after 100 bytes"
        with pytest.raises(RtmpProbeError, match=expected):
            await probe_rtmp(f"rtmp://127.0.0.1:{port}/live/x", 2)


async def test_rtmps_to_a_plain_port_says_so(nginx: NginxRtmp) -> None:
    with pytest.raises(RtmpProbeError, match=r"no TLS handshake followed .* plain rtmp:// port"):
        await probe_rtmp(f"rtmps://127.0.0.1:{nginx.port}/live/x", 0.5)


def test_ports_default_by_scheme() -> None:
    assert endpoint("rtmp://live.example.org/app/key") == ("live.example.org", 1935, False)
    assert endpoint("rtmps://live.example.org/app/key") == ("live.example.org", 443, True)
    assert endpoint("RTMP://127.0.0.1:1936/app/key") == ("127.0.0.1", 1936, False)
    with pytest.raises(RtmpProbeError):
        endpoint("http://example.org/x")

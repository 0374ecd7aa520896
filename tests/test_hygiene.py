"""Resource hygiene: every thread, task, socket and child process has an owner that ends it.

Outputs reconnect fifty times against real servers (nginx-rtmp dropping the publisher through its
control module; an aiohttp + aiortc WHIP endpoint dropping the peer), and the process must hold no
more threads, descriptors, tasks, children or open PyAV containers than after the first connect. The
whole app, run in-process and stopped, must leave nothing of its own behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import av
import psutil
import pytest

from bench.voice_show import running_show, until
from broadcaster.config import EncoderConfig, RtmpOutputConfig
from broadcaster.stream import mux
from broadcaster.stream.clock import ProgramClock, Timing
from broadcaster.stream.encoder import Encoder
from broadcaster.stream.outputs import base, rtmp
from broadcaster.stream.outputs.whip import WhipOutput
from broadcaster.stream.program import Program
from broadcaster.stream.rtc.settings import WhipOutputConfig
from broadcaster.voice.speech_track import SpeechTrack
from tests.conftest import NginxRtmp
from tests.rtc_rig import RtcRig, StampedFrames
from tests.whip_endpoint import WhipEndpoint, serve_whip

WARM = 10
# onnxruntime (the voice activity detector) opens its process-wide device database once, at its first
# session, and keeps it (with its WAL and shared-memory files) for the life of the process
ONE_OFF_DB = "onnxruntime.db"
RECONNECTS = int(os.environ.get("HYGIENE_RECONNECTS", "50"))
SIZE = (320, 180)
# constant bitrate with filler: the FLV pipe's 32 KiB buffers fill within a tick, not seconds, and short
# GOPs let each new session start soon
ENCODING = EncoderConfig.model_validate(
    {"video": {"filler": True, "bitrate_kbps": 1000, "preset": "ultrafast", "gop_seconds": 0.5}}
)


@pytest.fixture
def short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every session counts as stable, so each reconnect waits ``backoff_initial_s``, not up to the max."""
    monkeypatch.setattr(base, "STABLE_AFTER_S", 0.0)


@dataclass(frozen=True)
class Census:
    """What the process holds at one moment."""

    threads: int  # Python threads
    native_threads: int  # every OS thread (codec and library threads too)
    fds: int
    tasks: int
    children: int

    @staticmethod
    def take(loops: tuple[asyncio.AbstractEventLoop, ...] = ()) -> Census:
        me = psutil.Process()
        return Census(
            threading.active_count(),
            me.num_threads(),
            me.num_fds(),
            sum(len(asyncio.all_tasks(loop)) for loop in loops),
            len(me.children(recursive=True)),
        )

    def same_but_native(self, other: Census) -> bool:
        return replace(self, native_threads=0) == replace(other, native_threads=0)


def settle(expected: Census, take: Callable[[], Census], within: float = 5.0) -> Census:
    """The census once it equals ``expected`` (a thread or a child may still be on its way out), or the
    last one taken after ``within`` seconds."""
    deadline = time.monotonic() + within
    while (now := take()) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return now


def open_containers() -> list[Any]:
    """PyAV output containers still open (closing one empties its streams)."""
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, av.container.OutputContainer) and len(o.streams)]


def descriptors() -> dict[int, str]:
    """This process's open descriptors and what each one is."""
    out = {}
    for link in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # the listing's own descriptor, gone by now
            out[int(link.name)] = str(link.readlink())
    return out


def wait_for(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.usefixtures("short_backoff")
def test_fifty_rtmp_reconnects_leak_nothing(nginx: NginxRtmp, monkeypatch: pytest.MonkeyPatch) -> None:
    muxers: list[mux.PacketMuxer] = []

    class TrackedMuxer(mux.PacketMuxer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            muxers.append(self)

    monkeypatch.setattr(rtmp, "PacketMuxer", TrackedMuxer)
    containers_before = len(open_containers())
    timing = Timing(25)
    clock = ProgramClock(timing)
    encoder = Encoder(timing, SIZE, ENCODING)
    cfg = RtmpOutputConfig(type="rtmp", url=nginx.url, backoff_initial_s=0.1, backoff_max_s=1.0)
    output = rtmp.RtmpOutput(cfg, encoder.templates, clock, encoder.request_keyframe, capacity=500)
    encoder.add_sink(output)
    speech = SpeechTrack(timing.sample_rate, timing.samples_per_tick)
    program = Program(clock, StampedFrames(SIZE, timing.fps), speech, [encoder], lead_s=0.2)
    started = time.monotonic()
    output.start()
    encoder.start()
    program.start()
    try:
        wait_for(lambda: output.stats.state == "live", 20, "the first connect")
        first = Census.take()
        for n in range(1, RECONNECTS + 1):
            wait_for(lambda: nginx.drop_publisher() > 0, 10, f"nginx to drop publisher {n}")
            wait_for(
                lambda n=n: output.stats.reconnects == n and output.stats.state == "live",  # type: ignore[misc]
                20,
                f"reconnect {n}",
            )
        after = settle(first, Census.take)
        reconnect_s = time.monotonic() - started
    finally:
        program.stop()
        program.join(5)
        encoder.close(10)
        assert output.close(10)
    print(f"RTMP {RECONNECTS} reconnects in {reconnect_s:.1f} s: first connect {first}, after {after}")
    assert after == first
    assert output.stats.reconnects == RECONNECTS and len(muxers) == RECONNECTS + 1
    # every session's container closed with it (the live one at the end), and the encoder's template
    assert [len(m._container.streams) for m in muxers] == [0] * len(muxers)
    assert len(encoder.templates.video.container.streams) == 0
    assert len(open_containers()) == containers_before
    assert nginx.process is not None
    assert [p for p in psutil.Process().children(recursive=True) if p.pid != nginx.process.pid] == []


@pytest.mark.usefixtures("short_backoff", "loopback_ice")
def test_fifty_whip_reconnects_leak_nothing() -> None:
    async def scenario() -> tuple[Census, Census, Census, float, int]:
        endpoint = WhipEndpoint()
        async with serve_whip(endpoint):
            with RtcRig(size=SIZE) as rig:
                loops = (asyncio.get_running_loop(), rig.runtime.loop)

                def census() -> Census:
                    return Census.take(loops)

                async def settled(expected: Census) -> Census:
                    # native threads aside, a dropped peer's last tasks may still be on their way out;
                    # nothing signals a thread's or a descriptor's end, so this polls (5 s at most)
                    for _ in range(100):
                        if (now := census()).same_but_native(expected):
                            break
                        await asyncio.sleep(0.05)
                    return now

                cfg = WhipOutputConfig(
                    type="whip", url=endpoint.url, backoff_initial_s=0.1, backoff_max_s=1.0
                )
                output = WhipOutput(cfg, rig.runtime, rig.encoder, rig.clock)
                started = time.monotonic()
                output.start()
                try:
                    await until(lambda: output.stats.state == "live", 20, "the first connect")
                    first = census()
                    for n in range(1, RECONNECTS + 1):
                        await endpoint.drop()  # the server loses the peer without a DELETE
                        await until(
                            lambda n=n: output.stats.reconnects == n and output.stats.state == "live",  # type: ignore[misc]
                            20,
                            f"reconnect {n}",
                        )
                        if n == WARM:
                            warm = await settled(first)
                    after = await settled(first)
                    took = time.monotonic() - started
                finally:
                    assert await asyncio.to_thread(output.close, 10)
                peers = sum(1 for o in gc.get_objects() if type(o).__name__ == "RTCPeerConnection")
                open_peers = [
                    o
                    for o in gc.get_objects()
                    if type(o).__name__ == "RTCPeerConnection" and o.connectionState != "closed"
                ]
                assert not open_peers, f"{len(open_peers)} of {peers} peer connections still open"
                assert len(endpoint.sessions) == RECONNECTS + 1
                assert all(s.pc.connectionState == "closed" for s in endpoint.sessions.values())
        return first, warm, after, took, output.stats.reconnects

    first, warm, after, took, reconnects = asyncio.run(scenario())
    print(
        f"WHIP {RECONNECTS} reconnects in {took:.1f} s: first connect {first}, {WARM}th {warm}, after {after}"
    )
    assert reconnects == RECONNECTS
    # libraries start their native pools once, lazily (the OpenBLAS servers of numpy and of OpenCV, as
    # the endpoint decodes; libx264's): after the first reconnects their number must not grow any more
    assert after.native_threads <= warm.native_threads
    assert after.same_but_native(first), (first, after)
    names = [t.name for t in threading.enumerate() if t.name in ("rtc", "rtc-encoder", "program")]
    assert not names, f"threads of the rig still alive: {names}"


def test_the_whole_app_stopped_leaves_nothing_behind(
    nginx: NginxRtmp, avatar_root: Path, tmp_path: Path
) -> None:
    me = psutil.Process()
    assert nginx.process is not None
    server = nginx.process.pid
    threads_before = set(threading.enumerate())
    fds_before = descriptors()
    containers_before = len(open_containers())

    async def scenario() -> dict[str, object]:
        overrides = [
            f"avatar.dir={json.dumps(str(avatar_root))}",
            'feeds=[{type="local"}]',
            "voice_in.enabled=true",
            'voice_in.asr.engine="pocketsphinx"',
        ]
        async with running_show(tmp_path, overrides, outputs=[nginx.url]) as show:
            app = show.app
            await until(lambda: app.listener is not None and app.listener.asr is not None, 60, "the ASR")
            await until(lambda: app.outputs[0].stats.state == "live", 30, "the RTMP push")
            children = [p for p in me.children(recursive=True) if p.pid != server]
            assert len(children) >= 2, "the relay and the ASR decoder run as children"
            await app.desk.local_feed().submit("viewer", "hello there")
        return await show.task

    summary = asyncio.run(scenario())
    assert summary["ticks"]
    # the app froze what it built (gc.freeze, for a lighter collector in a long run); in this test
    # process it is gone now: let the collector free it (its avatar pictures are a mapped file)
    gc.unfreeze()
    gc.collect()
    left = [t for t in threading.enumerate() if t not in threads_before]
    assert not left, f"threads still alive: {[t.name for t in left]}"
    others = [p for p in me.children(recursive=True) if p.pid != server]
    assert not others, f"children left: {[p.cmdline() for p in others]}"
    new = {
        fd: target
        for fd, target in descriptors().items()
        if fds_before.get(fd) != target and not target.split("/")[-1].startswith(ONE_OFF_DB)
    }
    assert not new, f"descriptors opened and not closed: {new}"
    assert len(open_containers()) == containers_before

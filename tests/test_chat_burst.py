"""A popular room's chat burst through the real program: 2,000 comments a second for 30 s over a real
bilibili WebSocket (brotli frames), with the program clock ticking and recording. The program must
not notice (tick lateness p99 as in a quiet run), memory must stay flat, and the chat log must hold
every comment.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import psutil

from danmaku.events import now_ms
from danmaku.feeds import bilibili_packet as wire
from tests.bilibili_server import KEY, ROOM_ID, BilibiliServer, compact, danmu
from tests.run_cli import Finished, finish, start

RATE = 2000  # comments a second
SECONDS = 30
PER_FRAME = 20
VIEWERS = 3000


def frames() -> list[bytes]:
    now = now_ms()
    out = []
    for start_n in range(0, RATE * SECONDS, PER_FRAME):
        bodies = [
            compact(danmu(n, ts_ms=now, uid=10_000 + n % VIEWERS))
            for n in range(start_n, start_n + PER_FRAME)
        ]
        out.append(wire.encode_messages(bodies, wire.VER_BROTLI))
    return out


def run_until_stopped(process: subprocess.Popen[str]) -> Finished:
    process.send_signal(signal.SIGTERM)
    return finish(process, timeout=60)


def quiet_run(avatar_root: Path, tmp_path: Path) -> Finished:
    process = start(avatar_root, "--output", str(tmp_path / "quiet.mp4"), "--set", "feeds=[]")
    time.sleep(20)
    return run_until_stopped(process)


async def test_a_chat_burst_does_not_disturb_the_program(avatar_root: Path, tmp_path: Path) -> None:
    quiet = await asyncio.to_thread(quiet_run, avatar_root, tmp_path)
    assert quiet.code == 0, quiet.stderr[-2000:]
    burst = frames()
    store = tmp_path / "chat.sqlite3"
    async with BilibiliServer() as server:
        feed = f'{{type="bilibili", room_id={ROOM_ID}, url="{server.url}", token="{KEY}", fetch_token=false}}'
        process = start(
            avatar_root,
            *("--output", str(tmp_path / "burst.mp4")),
            *("--set", f"feeds=[{feed}]", "--set", f'store.path="{store}"'),
            *("--set", "chat.answer=false"),  # the LLM is not what is measured here
        )
        try:
            connection = await server.wait_connections(1, limit_s=60)
            await asyncio.sleep(2)  # the program settles, as the quiet run did
            rss: list[float] = []
            proc = psutil.Process(process.pid)
            began = time.monotonic()
            for i, frame in enumerate(burst):
                delay = began + i * PER_FRAME / RATE - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await server.send(frame, connection)
                if i % (RATE // PER_FRAME) == 0:
                    rss.append(proc.memory_info().rss / 2**20)
            sent_in = time.monotonic() - began
            await asyncio.sleep(3)
        finally:
            done = await asyncio.to_thread(run_until_stopped, process)
    assert done.code == 0, done.stderr[-3000:]
    assert sent_in < SECONDS * 1.2, f"the server could not keep the rate: {sent_in:.1f} s"
    summary = done.summary
    feed_stats = summary["chat"]["feeds"]["bilibili"]
    assert feed_stats["events"] == RATE * SECONDS and feed_stats["garbage"] == 0, feed_stats
    assert summary["chat"]["log_failures"] == 0
    with sqlite3.connect(store) as conn:
        assert conn.execute("SELECT COUNT(*) FROM chat_events").fetchone()[0] == RATE * SECONDS
    quiet_p99, burst_p99 = quiet.summary["late_p99_ms"], summary["late_p99_ms"]
    print(
        f"tick lateness p99: quiet {quiet_p99} ms, burst {burst_p99} ms; RSS {rss[5]:.0f} -> {rss[-1]:.0f} MB"
    )
    assert burst_p99 <= quiet_p99 + 25, (quiet_p99, burst_p99)
    assert summary["late_max_ms"] < 0, "no tick was late"
    assert summary["repeats"] <= quiet.summary["repeats"] + 2
    assert rss[-1] - rss[5] < 40, f"RSS grew {rss[5]:.0f} -> {rss[-1]:.0f} MB"

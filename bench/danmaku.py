"""Benchmark: chat events per CPU second through parse + triage + the chat log (a real SQLite file).

Realistic frames are built first (bilibili: brotli frames of DANMU_MSG with some SEND_GIFT and
INTERACT_WORD, as a busy room sends them; json: DouyinBarrageGrab frames), then each feed's ``handle``
parses them and the chat desk judges them and commits them to the store, as in a live room. CPU time
is the whole process's (the store's writer thread included), so ``*_events_per_cpu_s`` is what one core
sustains. ``triage`` is the shipped ``[chat]``; ``*_full_*`` lifts the global rate so every comment is
also matched against the blocklists (the worst case for triage).

Each figure is the median of ``--repeat`` runs. Like the running program (see app.py), the objects
made at start-up are frozen out of the garbage collector's scans first.

Usage: python bench/danmaku.py [--events 60000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from broadcaster.store import Store  # noqa: E402
from danmaku.config import ChatConfig  # noqa: E402
from danmaku.desk import ChatDesk  # noqa: E402
from danmaku.events import ChatEvent, now_ms  # noqa: E402
from danmaku.feeds import bilibili_packet as wire  # noqa: E402
from danmaku.feeds.bilibili import BilibiliFeed, BilibiliFeedConfig  # noqa: E402
from danmaku.feeds.json_relay import JsonFeed, JsonFeedConfig  # noqa: E402
from danmaku.triage.text import TextRules, block_rules  # noqa: E402
from tests.bilibili_server import compact, danmu, send_gift  # noqa: E402
from tests.json_relay_server import douyin_chat_frames  # noqa: E402

PER_FRAME = 20


def bilibili_frames(count: int) -> list[bytes]:
    """Brotli frames of ``PER_FRAME`` messages: 90% comments, 5% gifts, 5% viewers entering."""
    now = now_ms()
    frames = []
    for start in range(0, count, PER_FRAME):
        bodies = []
        for n in range(start, min(count, start + PER_FRAME)):
            if n % 20 == 7:
                bodies.append(compact(send_gift(n, uid=30_000 + n % 500)))
            elif n % 20 == 13:
                enter = {"uid": 40_000 + n, "uname": f"路人{n}", "msg_type": 1, "timestamp": now // 1000}
                bodies.append(compact({"cmd": "INTERACT_WORD", "data": enter}))
            else:
                bodies.append(compact(danmu(n, ts_ms=now, uid=10_000 + n % 3000)))
        frames.append(wire.encode_messages(bodies, wire.VER_BROTLI))
    return frames


def desk_for(store: Store, full: bool) -> ChatDesk:
    chat = ChatConfig.model_validate({"limits": {"global_per_s": 1e5, "user_max": 1000}} if full else {})
    rules = TextRules(block_rules(chat.block), chat.block.links, ["小播", "龙井"])
    return ChatDesk(chat, [], store, rules)


async def measure(
    frames: Sequence[bytes | str], handle: Callable[[bytes | str], Sequence[ChatEvent]], full: bool
) -> dict[str, float]:
    """Parse, judge and log every frame; CPU and wall seconds of the whole process."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.sqlite3")
        desk = desk_for(store, full)
        events = 0
        cpu, wall = time.process_time(), time.perf_counter()
        for frame in frames:
            batch = handle(frame)
            events += len(batch)
            await desk.accept(batch)
        await desk.settle()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        rows = store.read_now(lambda c: c.execute("SELECT COUNT(*) FROM chat_events").fetchone()[0])
        store.close()
    assert rows == events, f"{rows} rows for {events} events"
    return {"events": events, "cpu_s": cpu, "wall_s": wall, "per_cpu_s": events / cpu}


def parse_only(frames: Sequence[bytes | str], handle: Callable[[bytes | str], Sequence[ChatEvent]]) -> float:
    """Microseconds of CPU per event for parsing alone."""
    cpu = time.process_time()
    events = sum(len(handle(f)) for f in frames)
    return (time.process_time() - cpu) / events * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    async def sink(events: Sequence[ChatEvent]) -> None:
        return None

    bili = BilibiliFeed(BilibiliFeedConfig(room_id=1), sink)
    bili_frames = bilibili_frames(args.events)
    douyin = JsonFeed(JsonFeedConfig(url="ws://relay", preset="douyin_barrage_grab"), sink)
    douyin_frames = douyin_chat_frames(args.events)
    gc.collect()
    gc.freeze()
    result: dict[str, float] = {}
    for name, feed, frames in (("bilibili", bili, bili_frames), ("json", douyin, douyin_frames)):
        parse = statistics.median(parse_only(frames, feed.handle) for _ in range(args.repeat))
        result[f"{name}_parse_us_per_event"] = round(parse, 2)
        for full in (False, True):
            runs = []
            for _ in range(args.repeat):
                feed.reset()
                runs.append(await measure(frames, feed.handle, full))
            key = f"{name}_full" if full else name
            result[f"{key}_events_per_cpu_s"] = round(statistics.median(m["per_cpu_s"] for m in runs))
            result[f"{key}_events_per_wall_s"] = round(
                statistics.median(m["events"] / m["wall_s"] for m in runs)
            )
            print(f"{key}: {[round(m['per_cpu_s']) for m in runs]} events per CPU second", flush=True)
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())

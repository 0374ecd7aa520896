from __future__ import annotations

import asyncio
import time

from danmaku.events import ChatEvent, User
from danmaku.pacer import Pacer, Removed
from danmaku.triage.candidate import Candidate

NOW = 1_700_000_000_000


def cand(priority: int, name: str, *, value: float = 0.0, at: int = NOW, user: str = "u") -> Candidate:
    e = ChatEvent(name, "twitch", "chat", at, User(user, user), name, received_at=at)
    return Candidate("answer", priority, [(0, e)], value, at)


def pacer(capacity: int = 10, interval: float = 0.0, stale: float = 60.0) -> Pacer:
    return Pacer(interval, capacity, stale, wall_ms=lambda: NOW)


def names(removed: list[Removed]) -> list[tuple[str, str]]:
    return [(c.event.id, why) for c, why in removed]


def test_best_first_then_biggest_value_then_newest() -> None:
    p = pacer()
    for c in (
        cand(0, "o1"),
        cand(200, "q1"),
        cand(300, "sc5", value=5),
        cand(200, "q2"),
        cand(300, "sc50", value=50),
    ):
        p.offer(c)
    assert [c.event.id for c in p.items()] == ["sc50", "sc5", "q2", "q1", "o1"]
    assert [p.pop().event.id for _ in range(5)] == ["sc50", "sc5", "q2", "q1", "o1"]  # type: ignore[union-attr]
    assert p.pop() is None and len(p) == 0


def test_a_full_queue_drops_the_oldest_of_the_lowest_rank() -> None:
    p = pacer(capacity=3)
    assert p.offer(cand(0, "o1")) == [] and p.offer(cand(0, "o2")) == [] and p.offer(cand(200, "q1")) == []
    assert names(p.offer(cand(100, "f1"))) == [("o1", "displaced")]
    assert names(p.offer(cand(0, "o3"))) == [("o2", "displaced")]
    assert names(p.offer(cand(-100, "greet"))) == [("greet", "queue_full")]
    assert len(p) == 3


def test_stale_and_removed_candidates_go_with_their_reason() -> None:
    p = pacer(stale=60)
    p.offer(cand(200, "old", at=NOW - 61_000))
    p.offer(cand(200, "fresh", at=NOW - 1000, user="spammer"))
    p.offer(cand(0, "other"))
    assert names(p.expire()) == [("old", "stale")]
    assert names(p.remove(lambda c: c.event.user.id == "spammer", "removed_by_platform")) == [
        ("fresh", "removed_by_platform")
    ]
    assert [c.event.id for c in p.items()] == ["other"] and len(p) == 1


async def test_next_waits_for_the_interval_and_for_candidates() -> None:
    p = pacer(interval=0.3)
    removed: list[Removed] = []
    p.offer(cand(0, "a"))
    first = await asyncio.wait_for(p.next(removed.extend), 1)
    assert first.event.id == "a"
    started = time.monotonic()
    waiting = asyncio.create_task(p.next(removed.extend))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    p.offer(cand(0, "b"))
    second = await asyncio.wait_for(waiting, 2)
    assert second.event.id == "b"
    assert time.monotonic() - started >= 0.25, "one answer per interval"
    p.offer(cand(0, "stale", at=NOW - 120_000))
    p.offer(cand(0, "c"))
    third = await asyncio.wait_for(p.next(removed.extend), 2)
    assert third.event.id == "c" and names(removed) == [("stale", "stale")]


async def test_a_paused_pacer_holds_its_candidates() -> None:
    p = pacer()
    p.paused = True
    p.offer(cand(0, "a"))
    waiting = asyncio.create_task(p.next(lambda r: None))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    p.paused = False
    p.resume()
    assert (await asyncio.wait_for(waiting, 1)).event.id == "a"

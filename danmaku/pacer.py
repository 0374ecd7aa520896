"""Pacing: the chat lane says at most one thing every ``interval_s`` seconds, the best candidate first.

Candidates wait in one bucket per priority (newest at the right). The best is the right end of the
highest bucket (the paid bucket is ordered by value: the biggest superchat first); when the queue is
full, the oldest of the lowest bucket makes room, or the newcomer is refused if it ranks lower still.
A candidate older than ``stale_s`` when its turn comes is dropped instead. Every removal is returned
to the caller with its reason, so the chat log records it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from danmaku.triage.candidate import Candidate

Removed = tuple[Candidate, str]


class Pacer:
    """A bounded, ranked queue of candidates and the clock of the chat lane."""

    def __init__(
        self,
        interval_s: float,
        capacity: int,
        stale_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.interval_s = interval_s
        self.capacity = capacity
        self.stale_ms = int(stale_s * 1000)
        self.clock = clock
        self.wall_ms = wall_ms
        self._buckets: dict[int, deque[Candidate]] = {}
        self._size = 0
        self._order = 0
        self._last_start = -float("inf")
        self._changed = asyncio.Event()
        self.paused = False

    def __len__(self) -> int:
        return self._size

    def items(self) -> list[Candidate]:
        """Every waiting candidate, best first (for the dashboard)."""
        return sorted((c for b in self._buckets.values() for c in b), key=lambda c: c.rank(), reverse=True)

    def offer(self, candidate: Candidate) -> list[Removed]:
        """Queue ``candidate``; returns what was refused or pushed out to make room."""
        self._order += 1
        candidate.order = self._order
        removed: list[Removed] = []
        if self._size >= self.capacity:
            lowest = min(self._buckets)
            if lowest > candidate.priority:
                return [(candidate, "queue_full")]
            bucket = self._buckets[lowest]
            removed.append((bucket.popleft(), "displaced"))
            self._shrunk(lowest)
        self._buckets.setdefault(candidate.priority, deque()).append(candidate)
        self._size += 1
        self._changed.set()
        return removed

    def _shrunk(self, priority: int) -> None:
        self._size -= 1
        if not self._buckets[priority]:
            del self._buckets[priority]

    def remove(self, match: Callable[[Candidate], bool], reason: str) -> list[Removed]:
        """Take out every candidate ``match`` selects (a platform moderator deleted it)."""
        removed: list[Removed] = []
        for priority in list(self._buckets):
            bucket = self._buckets[priority]
            kept = deque(c for c in bucket if not match(c))
            removed += [(c, reason) for c in bucket if match(c)]
            self._size -= len(bucket) - len(kept)
            if kept:
                self._buckets[priority] = kept
            else:
                del self._buckets[priority]
        return removed

    def stale(self, candidate: Candidate, cutoff: int | None = None) -> bool:
        """Whether ``candidate`` is older than ``stale_s`` (``cutoff``: that time, computed once)."""
        return candidate.at_ms < (self.wall_ms() - self.stale_ms if cutoff is None else cutoff)

    def expire(self) -> list[Removed]:
        """Drop the candidates older than ``stale_s``."""
        cutoff = self.wall_ms() - self.stale_ms
        removed: list[Removed] = []
        for priority in list(self._buckets):
            bucket = self._buckets[priority]
            stale = [c for c in bucket if self.stale(c, cutoff)]
            if stale:
                removed += [(c, "stale") for c in stale]
                for c in stale:
                    bucket.remove(c)
                self._size -= len(stale)
                if not bucket:
                    del self._buckets[priority]
        return removed

    def pop(self) -> Candidate | None:
        """The best candidate, if any (ignores the interval)."""
        if not self._size:
            return None
        top = max(self._buckets)
        bucket = self._buckets[top]
        best = max(bucket, key=lambda c: c.rank())  # a few hundred at most, once every few seconds
        if best is bucket[-1]:
            bucket.pop()
        else:
            bucket.remove(best)
        self._shrunk(top)
        return best

    def wait_s(self) -> float:
        """Seconds until the interval allows the next start."""
        return max(0.0, self._last_start + self.interval_s - self.clock())

    async def next(self, on_removed: Callable[[list[Removed]], None]) -> Candidate:
        """Wait for the interval and a candidate; stale ones met on the way go to ``on_removed``."""
        while True:
            delay = self.wait_s()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            stale = self.expire()
            if stale:
                on_removed(stale)
            candidate = None if self.paused else self.pop()
            if candidate is not None:
                self._last_start = self.clock()
                return candidate
            self._changed.clear()
            await self._changed.wait()

    def resume(self) -> None:
        """Wake ``next`` (after a pause, or to re-check)."""
        self._changed.set()

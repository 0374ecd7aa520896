"""A bounded window of recent latencies (ms) and its median, for the status line and the run summary."""

from __future__ import annotations

from collections import deque

WINDOW = 200


class RecentLatency:
    """The last ``window`` latencies; ``p50`` is their median (None before the first)."""

    def __init__(self, window: int = WINDOW) -> None:
        self._values: deque[float] = deque(maxlen=window)

    def add(self, ms: float) -> None:
        """Record one latency in milliseconds."""
        self._values.append(ms)

    def p50(self) -> float | None:
        """The median of the window, to 0.1 ms."""
        recent = sorted(self._values)
        return round(recent[len(recent) // 2], 1) if recent else None


class Histogram:
    """Counts of values (ms) in 1 ms bins over [lo, hi); percentiles over everything ever added.

    Fixed size whatever the run length (a day of ticks costs the same 4,000 counters); values outside
    the range count in the end bins.
    """

    def __init__(self, lo_ms: int = -2000, hi_ms: int = 2000) -> None:
        self.lo = lo_ms
        self._counts = [0] * (hi_ms - lo_ms)
        self.total = 0

    def add(self, ms: float) -> None:
        """Count one value."""
        i = min(max(int(ms - self.lo), 0), len(self._counts) - 1)
        self._counts[i] += 1
        self.total += 1

    def percentile(self, q: float) -> float | None:
        """The value below which ``q`` percent of the counts lie (to 1 ms; None before the first)."""
        if not self.total:
            return None
        rank = q / 100 * self.total
        seen = 0
        for i, count in enumerate(self._counts):
            seen += count
            if seen >= rank:
                return float(i + self.lo)
        return float(len(self._counts) - 1 + self.lo)

    def copy(self) -> Histogram:
        """A snapshot of the counts so far."""
        out = Histogram.__new__(Histogram)
        out.lo, out._counts, out.total = self.lo, list(self._counts), self.total
        return out

    def since(self, earlier: Histogram) -> Histogram:
        """The values added after ``earlier`` (a ``copy`` of this histogram) was taken."""
        out = self.copy()
        out._counts = [now - then for now, then in zip(self._counts, earlier._counts, strict=True)]
        out.total = self.total - earlier.total
        return out

    def max(self) -> float | None:
        """The highest value's bin (None when empty)."""
        top = next((i for i in range(len(self._counts) - 1, -1, -1) if self._counts[i]), None)
        return None if top is None else float(top + self.lo)

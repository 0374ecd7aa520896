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

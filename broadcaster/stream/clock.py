"""The program clock (invariant 1): tick k is frame k and audio samples [k*S, (k+1)*S).

Time inside the program is an integer tick count. Wall time is used only to pace: `ProgramClock.due(k)`
says when tick k should be on air, from an anchor set once at start (and moved only by a counted resync
after the machine stalled for seconds). The wall source is injected so tests can run a day in a second.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol


class WallSource(Protocol):
    """Where the clock reads wall time and how it waits."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def sleep_until(self, deadline: float, stop: threading.Event) -> bool:
        """Wait until ``deadline`` or until ``stop`` is set; True when stopped."""
        ...


class MonotonicWall:
    """The real wall: `time.monotonic`, waiting on an event so a stop interrupts the wait."""

    def now(self) -> float:
        """Seconds on the monotonic clock."""
        return time.monotonic()

    def sleep_until(self, deadline: float, stop: threading.Event) -> bool:
        """Wait on ``stop`` for the time left."""
        left = deadline - time.monotonic()
        if left <= 0:
            return stop.is_set()
        return stop.wait(left)


class VirtualWall:
    """A wall that jumps to each deadline at once: pacing code runs at CPU speed in tests."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        """The virtual time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move virtual time on (a test simulating a stall)."""
        self._now += seconds

    def sleep_until(self, deadline: float, stop: threading.Event) -> bool:
        """Jump to the deadline."""
        self._now = max(self._now, deadline)
        return stop.is_set()


@dataclass(frozen=True)
class Timing:
    """The program's fixed rates: ``samples_per_tick`` = sample_rate / fps, exactly."""

    fps: int = 25
    sample_rate: int = 48000

    def __post_init__(self) -> None:
        if self.sample_rate % self.fps:
            raise ValueError(
                f"sample_rate {self.sample_rate} is not a whole number of samples per tick at {self.fps} fps"
            )

    @property
    def samples_per_tick(self) -> int:
        """S: audio samples carried by each tick."""
        return self.sample_rate // self.fps

    @property
    def video_time_base(self) -> Fraction:
        """One tick."""
        return Fraction(1, self.fps)

    @property
    def audio_time_base(self) -> Fraction:
        """One sample."""
        return Fraction(1, self.sample_rate)

    def ticks(self, seconds: float) -> int:
        """Whole ticks in ``seconds``."""
        return round(seconds * self.fps)


class ProgramClock:
    """Maps tick numbers to wall deadlines from one anchor."""

    def __init__(self, timing: Timing, wall: WallSource | None = None) -> None:
        self.timing = timing
        self.wall: WallSource = wall or MonotonicWall()
        self._anchor = self.wall.now()
        self._anchor_tick = 0
        self.resyncs = 0

    def start(self, delay: float = 0.0) -> None:
        """Anchor tick 0 ``delay`` seconds from now (the program starts with its full lead)."""
        self._anchor = self.wall.now() + delay
        self._anchor_tick = 0

    def due(self, k: int) -> float:
        """Wall time at which tick k goes on air."""
        return self._anchor + (k - self._anchor_tick) / self.timing.fps

    def sample_at(self, wall_time: float) -> float:
        """The program's audio position (in samples) due on air at ``wall_time``: ``due`` inverted."""
        timing = self.timing
        return (self._anchor_tick + (wall_time - self._anchor) * timing.fps) * timing.samples_per_tick

    def wall_at(self, sample: float) -> float:
        """The wall time at which program sample ``sample`` is due on air: ``sample_at`` inverted."""
        timing = self.timing
        return self._anchor + (sample / timing.samples_per_tick - self._anchor_tick) / timing.fps

    def resync(self, k: int, wall_time: float) -> None:
        """Re-anchor so tick k is due at ``wall_time``; ticks stay contiguous, only the anchor moves."""
        self._anchor, self._anchor_tick = wall_time, k
        self.resyncs += 1

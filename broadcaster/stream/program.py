"""The program: the render loop that turns the clock, the avatar and the speech track into ticks.

It runs in its own thread, at most ``lead`` seconds ahead of the wall clock (invariant 4), and hands each
tick to its sinks without ever waiting on them (invariant 2). When it falls behind it repeats the last
picture rather than delay the audio; when a picture fails it logs, counts and repeats (invariant 3).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from broadcaster.latency import Histogram
from broadcaster.stream.clock import ProgramClock
from broadcaster.stream.tick import Tick, TickSink
from broadcaster.voice.speech_track import SpeechFrame, SpeechTrack

log = logging.getLogger(__name__)


class FrameSource(Protocol):
    """What draws the picture for program time t (the compositor), with the mouth for ``speech``."""

    def frame(self, t: float, speech: SpeechFrame | None = None) -> np.ndarray:
        """A new I420 picture for time ``t`` seconds."""
        ...


@dataclass
class ProgramStats:
    """Counters of the render loop; read by the status line, written only by the render thread."""

    ticks: int = 0
    repeats: int = 0
    render_errors: int = 0
    lead_s: float = 0.0
    late_max_s: float = float("-inf")
    late_max_interval_s: float = float("-inf")
    # lateness of every tick at hand-off (ms; negative: that far ahead of its deadline)
    lateness: Histogram = field(default_factory=Histogram)

    def take_interval_late(self) -> float:
        """The worst lateness since the last call (seconds; negative means always early)."""
        value, self.late_max_interval_s = self.late_max_interval_s, float("-inf")
        return value


class Program:
    """Owns the render thread; ``stop`` ends it at the next tick boundary."""

    def __init__(
        self,
        clock: ProgramClock,
        frames: FrameSource,
        speech: SpeechTrack,
        sinks: Sequence[TickSink],
        lead_s: float = 0.3,
        max_ticks: int | None = None,
        max_behind_s: float = 5.0,
        on_finished: Callable[[], None] | None = None,
    ) -> None:
        self.clock = clock
        self.frames = frames
        self.speech = speech
        self.sinks = list(sinks)
        self.lead_s = lead_s
        self.max_ticks = max_ticks
        self.max_behind_s = max_behind_s
        self.stats = ProgramStats()
        self._on_finished = on_finished
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="program", daemon=True)

    def start(self) -> None:
        """Anchor the clock and start rendering."""
        self.clock.start(self.lead_s)
        self._thread.start()

    def stop(self) -> None:
        """Ask the render loop to end after the tick in hand."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the render thread; True when it has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def run(self) -> None:
        """Run the loop in the calling thread (tests and benchmarks)."""
        self.clock.start(self.lead_s)
        self._run()

    def _picture(
        self, k: int, speech: SpeechFrame | None, previous: np.ndarray | None, late: bool
    ) -> np.ndarray:
        if late and previous is not None:
            self.stats.repeats += 1
            return previous
        try:
            picture = self.frames.frame(k / self.clock.timing.fps, speech)
        except Exception:
            self.stats.render_errors += 1
            if previous is None:
                raise
            if self.stats.render_errors <= 3 or self.stats.render_errors % 1000 == 0:
                log.exception(
                    "render failed at tick %d (%d failures so far); repeating the last frame",
                    k,
                    self.stats.render_errors,
                )
            self.stats.repeats += 1
            return previous
        return picture

    def _run(self) -> None:
        clock, wall, stats = self.clock, self.clock.wall, self.stats
        previous: np.ndarray | None = None
        k = 0
        try:
            while not self._stop.is_set() and (self.max_ticks is None or k < self.max_ticks):
                due = clock.due(k)
                if wall.sleep_until(due - self.lead_s, self._stop):
                    break
                behind = wall.now() - due
                if behind > self.max_behind_s:
                    log.warning(
                        "program fell %.1f s behind the wall clock; re-anchoring at tick %d", behind, k
                    )
                    clock.resync(k, wall.now() + self.lead_s)
                    due = clock.due(k)
                audio, speech = self.speech.pull()
                previous = self._picture(k, speech, previous, late=behind > 0)
                tick = Tick(k, previous, audio, speech is not None)
                for sink in self.sinks:
                    sink.offer(tick)
                late = wall.now() - due
                stats.lead_s = -late
                stats.late_max_s = max(stats.late_max_s, late)
                stats.late_max_interval_s = max(stats.late_max_interval_s, late)
                stats.lateness.add(late * 1000)
                k += 1
                stats.ticks = k
        finally:
            if self._on_finished is not None:
                self._on_finished()

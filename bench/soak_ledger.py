"""The accelerated soak's stand-ins and its ledger of ticks.

``StillPicture`` replaces the compositor (one small picture), ``VideoCounter`` and ``AudioCounter``
replace x264 and AAC inside the real ``TickEncoder``: they count what its framing hands them and check
that the timestamps follow on. ``TickLedger`` is the program's sink: it checks every tick and forwards
it to the encoder without a drop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from broadcaster.stream.encoder import TickEncoder
from broadcaster.stream.tick import Tick
from broadcaster.voice.speech_track import SpeechFrame

QUEUE_TICKS = 500


class StillPicture:
    """The frame source: one small grey I420 picture for every tick (no compositing)."""

    def __init__(self, size: tuple[int, int]) -> None:
        width, height = size
        self.picture = np.full((height * 3 // 2, width), 128, np.uint8)

    def frame(self, t: float, speech: SpeechFrame | None = None) -> np.ndarray:
        """The same picture."""
        return self.picture


@dataclass
class VideoCounter:
    """Stands in for x264: counts the frames and checks that their pts are 0, 1, 2, ..."""

    frames: int = 0
    out_of_order: int = 0

    def encode(self, frame: Any = None) -> list[av.Packet]:
        """Count one frame (None is the flush)."""
        if frame is not None:
            self.out_of_order += frame.pts != self.frames
            self.frames += 1
        return []


@dataclass
class AudioCounter:
    """Stands in for AAC: counts the samples framed for it; each frame must start where the last ended."""

    samples: int = 0
    frames: int = 0
    gaps: int = 0
    end: int = 0  # the sample after the last one framed
    first: int | None = None

    def encode(self, frame: Any = None) -> list[av.Packet]:
        """Count one frame (None is the flush)."""
        if frame is not None:
            if self.first is None:
                self.first = self.end = int(frame.pts)
            self.gaps += int(frame.pts) != self.end
            self.end = int(frame.pts) + frame.samples
            self.samples += frame.samples
            self.frames += 1
        return []


@dataclass
class TickLedger:
    """A program sink: checks each tick (order, sample count) and hands it on without losing any.

    The real encoder drops a tick when its queue is full (the program never waits on an output); at
    CPU speed the program would outrun it, so this sink waits for room instead: the simulation is
    about the arithmetic, and a drop would hide a tick from it.
    """

    encoder: TickEncoder
    samples_per_tick: int
    ticks: int = 0
    samples: int = 0
    bad_ticks: int = 0
    speaking_ticks: int = 0
    refused: int = 0

    def offer(self, tick: Tick) -> bool:
        """Check and forward the tick (render thread)."""
        self.bad_ticks += tick.k != self.ticks or tick.audio.shape != (self.samples_per_tick, 2)
        self.ticks += 1
        self.samples += int(tick.audio.shape[0])
        self.speaking_ticks += tick.speaking
        while self.encoder.queued >= QUEUE_TICKS - 1:
            time.sleep(0.0005)
        if not self.encoder.offer(tick):
            self.refused += 1
        return True

"""The tick: the unit of the program, and the small protocol its consumers implement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class Tick:
    """Tick k: one video frame and the S audio samples that play with it.

    ``video`` is an I420 (yuv420p) picture, shape (H*3/2, W), uint8; ``audio`` is int16, shape (S, 2).
    Both are shared read-only between consumers: nobody writes into them after the tick is offered.
    """

    k: int
    video: np.ndarray
    audio: np.ndarray
    speaking: bool = False


class TickSink(Protocol):
    """Anything the program hands ticks to. ``offer`` never blocks; False means the tick was dropped."""

    def offer(self, tick: Tick) -> bool:
        """Take the tick or drop it (and count the drop)."""
        ...

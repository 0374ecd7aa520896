"""Idle motion: what the avatar does when it is not speaking.

A photo breathes and sways: each frame is a smooth warp of the still, strongest around the subject and
fading to nothing at the photo's edges, so the photo's frame never moves against the background. The
warp is linear in a few motion parameters, so it is precomputed as basis fields and each frame costs
three weighted sums and one remap per plane. A video loops ping-pong (forward, then backward), so the
loop never jumps.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from broadcaster.config import IdleConfig
from broadcaster.face.i420 import planes


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


class _WarpFields:
    """Basis fields of one plane: identity grid plus weight-scaled offsets from the pivot."""

    def __init__(self, w: int, h: int, pivot: tuple[float, float], margin: float) -> None:
        xs = np.arange(w, dtype=np.float32)
        ys = np.arange(h, dtype=np.float32)
        mx, my = max(1.0, margin * w), max(1.0, margin * h)
        wx = _smoothstep(np.minimum(xs, w - 1 - xs) / mx)
        wy = _smoothstep(np.minimum(ys, h - 1 - ys) / my)
        weight = (wy[:, None] * wx[None, :]).astype(np.float32)
        self.grid_x, self.grid_y = np.meshgrid(xs, ys)
        self.fx = weight * (self.grid_x - pivot[0])
        self.fy = weight * (self.grid_y - pivot[1])
        self.weight = weight

    def maps(self, a: np.ndarray, b: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        map_x = cv2.addWeighted(self.fx, float(a[0, 0]), self.fy, float(a[0, 1]), 0.0)
        map_x = cv2.scaleAdd(self.weight, b[0], map_x)
        map_y = cv2.addWeighted(self.fx, float(a[1, 0]), self.fy, float(a[1, 1]), 0.0)
        map_y = cv2.scaleAdd(self.weight, b[1], map_y)
        return cv2.add(map_x, self.grid_x), cv2.add(map_y, self.grid_y)


class PhotoIdle:
    """Breathing and head sway for a still photo (I420), already scaled to its place on the canvas."""

    def __init__(self, still: np.ndarray, pivot: tuple[float, float], idle: IdleConfig) -> None:
        h, w = still.shape[0] * 2 // 3, still.shape[1]
        self.size = (w, h)
        self._idle = idle
        self._still = still
        self._pivot_y = pivot[1]
        self._height = h
        self._full = _WarpFields(w, h, pivot, 0.14)
        self._half = _WarpFields(w // 2, h // 2, (pivot[0] / 2, pivot[1] / 2), 0.14)

    def motion(self, t: float) -> tuple[np.ndarray, tuple[float, float]]:
        """The inverse warp at time t: sample offset = weight * (A @ (p - pivot) + b)."""
        idle = self._idle
        phase = 2 * math.pi * t / idle.sway_period_s
        theta = math.radians(idle.sway_degrees) * (0.8 * math.sin(phase) + 0.2 * math.sin(phase / 2.7 + 1.3))
        breath = 1.0 + idle.breathing_amount * (
            0.5 - 0.5 * math.cos(2 * math.pi * t / idle.breathing_period_s)
        )
        c, s, inv = math.cos(theta), math.sin(theta), 1.0 / breath - 1.0
        a = np.array([[c - 1.0, s], [-s, c - 1.0 + inv]], dtype=np.float64)
        b = (0.0, inv * (self._pivot_y - self._height))
        return a, b

    def picture(self, t: float, source: np.ndarray | None = None) -> np.ndarray:
        """The photo (or ``source``, the photo with a mouth drawn on it), warped for time t."""
        a, b = self.motion(t)
        still = self._still if source is None else source
        out = np.empty_like(still)
        for (src, dst), fields, scale in zip(
            zip(planes(still), planes(out), strict=True),
            (self._full, self._half, self._half),
            (1.0, 0.5, 0.5),
            strict=True,
        ):
            map_x, map_y = fields.maps(a, (b[0] * scale, b[1] * scale))
            cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, dst=dst, borderMode=cv2.BORDER_REPLICATE)
        return out


class VideoLoop:
    """A clip that plays forward then backward forever, at the clip's own frame rate."""

    def __init__(self, frames: int, fps: float) -> None:
        if frames < 2:
            raise ValueError("a video loop needs at least 2 frames")
        self.frames = frames
        self._fps = fps

    def index(self, t: float) -> int:
        """Which frame is shown at time t (ping-pong: 0..n-1, n-2..1, 0..)."""
        n = self.frames
        period = 2 * (n - 1)
        i = int(t * self._fps + 1e-9) % period
        return i if i < n else period - i

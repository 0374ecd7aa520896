"""The compositor: background plus the avatar on air, one I420 program frame per tick.

Several avatars can be preloaded as stages; ``switch`` puts another on air at the next tick.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from broadcaster.config import AvatarConfig
from broadcaster.face.avatar import Avatar
from broadcaster.face.i420 import from_bgr, planes
from broadcaster.face.lipsync.base import LipSync
from broadcaster.face.stage import Stage
from broadcaster.voice.speech_track import SpeechFrame

log = logging.getLogger(__name__)


def make_background(size: tuple[int, int], spec: str, base_dir: Path) -> np.ndarray:
    """A BGR canvas: a #rrggbb colour, or an image scaled to cover the canvas and centre-cropped."""
    w, h = size
    if spec.startswith("#"):
        r, g, b = (int(spec[i : i + 2], 16) for i in (1, 3, 5))
        return np.full((h, w, 3), (b, g, r), np.uint8)
    path = Path(spec) if Path(spec).is_absolute() else base_dir / spec
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(
            f"program.background = {spec!r}: not a #rrggbb colour nor a readable image at {path}"
        )
    scale = max(w / image.shape[1], h / image.shape[0])
    resized = cv2.resize(
        image,
        (max(w, round(image.shape[1] * scale)), max(h, round(image.shape[0] * scale))),
        interpolation=cv2.INTER_AREA,
    )
    y0, x0 = (resized.shape[0] - h) // 2, (resized.shape[1] - w) // 2
    return np.ascontiguousarray(resized[y0 : y0 + h, x0 : x0 + w])


class Compositor:
    """Draws program frames: a copy of the static background with the avatar on air in place."""

    def __init__(
        self,
        size: tuple[int, int],
        background: np.ndarray,
        avatars: Sequence[Avatar],
        cfg: AvatarConfig,
        lipsync: LipSync,
    ) -> None:
        # A frame's warps take a few milliseconds; OpenCV's worker threads cost more CPU than they save
        # (measured: 8.6 vs 6.5 ms of CPU per 720p frame), and the encoder needs the other core.
        cv2.setNumThreads(1)
        if not avatars:
            raise ValueError("the compositor needs at least one avatar")
        self.size = size
        self.lipsync = lipsync
        self._base = from_bgr(background)
        self.stages = {a.name: Stage(a, size, cfg) for a in avatars}
        self._lock = threading.Lock()
        self._pending: str | None = None
        self.stage = self.stages[avatars[0].name]
        lipsync.use_avatar(self.stage.reference())
        for stage in self.stages.values():
            log.info(
                "avatar %r (%s) at x=%d y=%d %dx%d on a %dx%d canvas",
                stage.name,
                stage.kind,
                *stage.rect,
                *size,
            )

    @property
    def rect(self) -> tuple[int, int, int, int]:
        """Where the avatar on air stands."""
        return self.stage.rect

    def switch(self, name: str) -> None:
        """Put preloaded avatar ``name`` on air from the next tick; KeyError names the preloaded ones."""
        if name not in self.stages:
            raise KeyError(f"avatar {name!r} is not preloaded (preloaded: {', '.join(sorted(self.stages))})")
        with self._lock:
            self._pending = name

    def frame(self, t: float, speech: SpeechFrame | None = None) -> np.ndarray:
        """The program picture at time t seconds: a new array, never written again once returned."""
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None and pending != self.stage.name:
            self.stage = self.stages[pending]
            self.lipsync.use_avatar(self.stage.reference())
            log.info("avatar %r on air", pending)
        out = self._base.copy()
        x, y, w, h = self.stage.rect
        patch = self.stage.picture(t, self.lipsync, speech)
        for dst, src, div in zip(planes(out), planes(patch), (1, 2, 2), strict=True):
            dst[y // div : (y + h) // div, x // div : (x + w) // div] = src
        return out

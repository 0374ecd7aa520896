"""The compositor: background plus avatar, one I420 program frame per tick."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from broadcaster.config import AvatarConfig
from broadcaster.face.avatar import Avatar
from broadcaster.face.i420 import from_bgr, planes
from broadcaster.face.idle import AvatarMotion, PhotoIdle, VideoLoop

log = logging.getLogger(__name__)


def _even(x: float) -> int:
    return max(2, round(x / 2) * 2)


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


def placement(
    canvas: tuple[int, int], avatar: tuple[int, int], cfg: AvatarConfig
) -> tuple[int, int, int, int]:
    """Where the avatar stands: (x, y, w, h), even, bottom-anchored, inside the canvas."""
    cw, ch = canvas
    aw, ah = avatar
    h = _even(ch * cfg.scale)
    w = _even(h * aw / ah)
    if w > cw:
        w = cw
        h = min(ch, _even(w * ah / aw))
    x = {"left": 0, "center": (cw - w) // 2 // 2 * 2, "right": cw - w}[cfg.align]
    return x, ch - h, w, h


class Compositor:
    """Draws program frames: a copy of the static background with the avatar's patch in place."""

    def __init__(
        self, size: tuple[int, int], background: np.ndarray, avatar: Avatar, cfg: AvatarConfig
    ) -> None:
        # A frame's warps take a few milliseconds; OpenCV's worker threads cost more CPU than they save
        # (measured: 8.6 vs 6.5 ms of CPU per 720p frame), and the encoder needs the other core.
        cv2.setNumThreads(1)
        self.size = size
        self._base = from_bgr(background)
        x, y, w, h = placement(size, avatar.manifest.size, cfg)
        self.rect = (x, y, w, h)
        scaled = [cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA) for img in avatar.images]
        self.motion: AvatarMotion
        if avatar.manifest.kind == "photo":
            self.motion = PhotoIdle(scaled[0], self._pivot(avatar, w, h), cfg.idle)
        else:
            self.motion = VideoLoop(scaled, avatar.manifest.fps)
        log.info(
            "avatar %r (%s) at x=%d y=%d %dx%d on a %dx%d canvas",
            avatar.name,
            avatar.manifest.kind,
            x,
            y,
            w,
            h,
            *size,
        )

    @staticmethod
    def _pivot(avatar: Avatar, w: int, h: int) -> tuple[float, float]:
        """The neck: below the face's centre when a face was found, else a portrait's usual place."""
        sx, sy = w / avatar.manifest.size[0], h / avatar.manifest.size[1]
        if avatar.manifest.face:
            fx, fy, fw, fh = avatar.manifest.face
            return (fx + fw / 2) * sx, (fy + fh * 1.05) * sy
        return w / 2, h * 0.5

    def frame(self, t: float) -> np.ndarray:
        """The program picture at time t seconds: a new array, never written again once returned."""
        out = self._base.copy()
        x, y, w, h = self.rect
        patch = self.motion.picture(t)
        for dst, src, div in zip(planes(out), planes(patch), (1, 2, 2), strict=True):
            dst[y // div : (y + h) // div, x // div : (x + w) // div] = src
        return out

"""Draw a mouth shape on an avatar picture: a landmark-guided warp of jaw and lips, and a mouth interior.

Below the lip line the jaw drops (lower lip fully, chin rigidly, fading out under the chin and towards
the jaw's sides); above it the upper lip lifts a little; near the lip line the lips spread or round. The
warp is an inverse map that is zero at the edge of the mouth region, so the region drops back into the
picture without a seam. The gap the warp opens is painted as a dark cavity with a hint of upper teeth,
anti-aliased. All of it works on the I420 planes of the region only.
"""

from __future__ import annotations

import cv2
import numpy as np

from broadcaster.face import landmarks as lm
from broadcaster.face.i420 import planes
from broadcaster.face.mouth import MouthGeometry

TOP_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
BOTTOM_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
SUBPIXEL = 4


def _yuv(bgr: tuple[int, int, int]) -> np.ndarray:
    patch = np.zeros((4, 4, 3), np.uint8)
    patch[:] = bgr
    y, u, v = planes(cv2.cvtColor(patch, cv2.COLOR_BGR2YUV_I420))
    return np.array([y[0, 0], u[0, 0], v[0, 0]], np.float32)


CAVITY = _yuv((28, 22, 62))
TEETH = _yuv((172, 182, 194))


def _lip(u: np.ndarray) -> np.ndarray:
    """How far the lips part along the mouth: 1 in the middle, 0 at the corners (a parabola)."""
    return np.clip(1.0 - u * u, 0.0, 1.0).astype(np.float32)


def _taper(u: np.ndarray) -> np.ndarray:
    """1 at 0, falling smoothly to 0 at |u| = 1 (raised cosine)."""
    return np.where(np.abs(u) < 1.0, 0.5 + 0.5 * np.cos(np.pi * np.clip(u, -1.0, 1.0)), 0.0).astype(
        np.float32
    )


class MouthPainter:
    """Precomputed warp fields for one mouth geometry; ``paint`` costs three small remaps and a blend."""

    def __init__(self, g: MouthGeometry, jaw_drop: float = 0.09, teeth: bool = True) -> None:
        x0, y0, w, h = g.region
        self.region = g.region
        self.face_height = g.face_height
        self.jaw_drop = jaw_drop
        self.teeth = teeth
        pts = g.points - np.array([x0, y0], np.float32)
        top, bottom = pts[list(TOP_INNER)], pts[list(BOTTOM_INNER)]
        line_x = (top[:, 0] + bottom[:, 0]) / 2
        line_y = (top[:, 1] + bottom[:, 1]) / 2
        order = np.argsort(line_x)
        self._line_x, self._line_y = line_x[order], line_y[order]
        cx = float(self._line_x.mean())
        self._inner = (float(pts[78][0]), float(pts[308][0]))
        self._cx = cx = (self._inner[0] + self._inner[1]) / 2
        self._half = max(2.0, (self._inner[1] - self._inner[0]) / 2)
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        self._grid = (xs, ys)
        seam = np.interp(xs[0], self._line_x, self._line_y).astype(np.float32)[None, :]
        lip_lower = max(2.0, float(pts[lm.LIP_BOTTOM_OUTER][1] - pts[lm.LIP_BOTTOM_INNER][1]))
        chin = float(pts[lm.CHIN][1])
        wx_lip = _lip((xs - cx) / self._half)
        wx_jaw = _taper((xs - cx) / min(self._half * 2.0, w / 2))
        below = ys >= seam
        t = np.clip((ys - seam) / lip_lower, 0.0, 1.0)
        under_chin = np.clip((h - 1 - ys) / max(2.0, h - 1 - chin), 0.0, 1.0)
        fade = np.where(ys <= chin, 1.0, under_chin * under_chin * (3 - 2 * under_chin))
        self._down = np.where(below, (wx_lip * (1 - t) + wx_jaw * t) * fade, 0.0).astype(np.float32)
        top_y = 0.0
        ramp_up = np.clip((ys - top_y) / np.maximum(seam - top_y, 1.0), 0.0, 1.0)
        self._up = np.where(below, 0.0, wx_lip * ramp_up * ramp_up).astype(np.float32)
        lip_h = max(2.0, float(pts[lm.LIP_BOTTOM_OUTER][1] - pts[lm.LIP_TOP_OUTER][1]))
        band = np.exp(-(((ys - seam) / (0.8 * lip_h)) ** 2))
        self._wide = ((xs - cx) * band * wx_jaw).astype(np.float32)

    def _maps(self, drop: float, lift: float, spread: float) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = self._grid
        map_x = cv2.scaleAdd(self._wide, -spread, xs)
        map_y = cv2.scaleAdd(self._down, -drop, ys)
        map_y = cv2.scaleAdd(self._up, lift, map_y)
        return map_x, map_y

    def _cavity(
        self, drop: float, lift: float, spread: float, shape: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Alpha masks (cavity, teeth) of the opened gap, anti-aliased, region-sized."""
        left, right = self._inner
        left = self._cx + (left - self._cx) * (1 + spread)
        right = self._cx + (right - self._cx) * (1 + spread)
        xs = np.linspace(left, right, 24, dtype=np.float32)
        seam = np.interp(self._cx + (xs - self._cx) / (1 + spread), self._line_x, self._line_y)
        open_w = _lip((xs - self._cx) / max(self._half * (1 + spread), 1.0))
        upper = seam - lift * open_w
        lower = seam + drop * open_w
        scale = 1 << SUBPIXEL
        outline = np.concatenate([np.stack([xs, upper], 1), np.stack([xs, lower], 1)[::-1]])
        cavity = np.zeros(shape, np.uint8)
        cv2.fillPoly(cavity, [np.round(outline * scale).astype(np.int32)], 255, cv2.LINE_AA, SUBPIXEL)
        teeth = np.zeros(shape, np.uint8)
        if self.teeth:
            tooth = np.minimum((drop + lift) * 0.22, 0.02 * self.face_height) * np.sqrt(open_w)
            band = np.concatenate([np.stack([xs, upper], 1), np.stack([xs, upper + tooth], 1)[::-1]])
            cv2.fillPoly(teeth, [np.round(band * scale).astype(np.int32)], 255, cv2.LINE_AA, SUBPIXEL)
        return cavity.astype(np.float32) / 255.0, cv2.GaussianBlur(teeth, (3, 3), 0).astype(
            np.float32
        ) / 255.0

    def paint(self, picture: np.ndarray, openness: float, wide: float) -> None:
        """Draw shape (openness 0..1, wide 0..1 with 0.5 neutral) into the I420 ``picture`` in place."""
        x0, y0, w, h = self.region
        drop = float(np.clip(openness, 0.0, 1.0)) * self.jaw_drop * self.face_height
        lift = 0.2 * drop
        spread = (float(np.clip(wide, 0.0, 1.0)) - 0.5) * 0.3
        map_x, map_y = self._maps(drop, lift, spread)
        cavity, teeth = self._cavity(drop, lift, spread, (h, w))
        half = (w // 2, h // 2)
        half_x = cv2.resize(map_x, half, interpolation=cv2.INTER_LINEAR) * 0.5
        half_y = cv2.resize(map_y, half, interpolation=cv2.INTER_LINEAR) * 0.5
        cavity_half = cv2.resize(cavity, half, interpolation=cv2.INTER_AREA)
        teeth_half = cv2.resize(teeth, half, interpolation=cv2.INTER_AREA)
        for plane, div, mx, my, a_cav, a_teeth, channel in zip(
            planes(picture),
            (1, 2, 2),
            (map_x, half_x, half_x),
            (map_y, half_y, half_y),
            (cavity, cavity_half, cavity_half),
            (teeth, teeth_half, teeth_half),
            range(3),
            strict=True,
        ):
            roi = plane[y0 // div : (y0 + h) // div, x0 // div : (x0 + w) // div]
            warped = cv2.remap(roi.copy(), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            out = warped.astype(np.float32)
            out += a_cav * (CAVITY[channel] - out)
            out += 0.85 * a_teeth * a_cav * (TEETH[channel] - out)
            np.copyto(roi, np.clip(out + 0.5, 0, 255).astype(np.uint8))

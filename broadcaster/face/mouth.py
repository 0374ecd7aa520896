"""Mouth geometry from face-mesh landmarks: where the mouth is, what moves, and the blend mask.

The builder stores a frame's landmarks; this module turns them, at the size the avatar is drawn, into
the region that lip-sync may touch and a feathered mask so whatever is drawn there melts into the face.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from broadcaster.face import landmarks as lm

MASK_SIZE = 128


@dataclass(frozen=True)
class MouthGeometry:
    """One frame's mouth, in the avatar picture's pixels.

    ``region`` (x, y, w, h) bounds everything lip-sync changes: from between nose and lip down past the
    chin, corner to corner plus a margin. ``face_box`` is the square crop a neural backend sees.
    """

    points: np.ndarray
    region: tuple[int, int, int, int]
    face_box: tuple[int, int, int, int]
    face_height: float

    @property
    def centre(self) -> tuple[float, float]:
        """Midpoint of the inner lips."""
        p = (self.points[lm.LIP_TOP_INNER] + self.points[lm.LIP_BOTTOM_INNER]) / 2
        return float(p[0]), float(p[1])

    @property
    def width(self) -> float:
        """Corner to corner."""
        return float(np.linalg.norm(self.points[lm.MOUTH_RIGHT] - self.points[lm.MOUTH_LEFT]))


def _clip_box(x0: float, y0: float, x1: float, y1: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """An even-aligned box inside the picture (even so the half-size chroma planes line up)."""
    w, h = size
    ix0 = max(0, int(np.floor(x0)) // 2 * 2)
    iy0 = max(0, int(np.floor(y0)) // 2 * 2)
    ix1 = min(w, (int(np.ceil(x1)) + 1) // 2 * 2)
    iy1 = min(h, (int(np.ceil(y1)) + 1) // 2 * 2)
    return ix0, iy0, max(2, ix1 - ix0), max(2, iy1 - iy0)


def geometry(points: np.ndarray, size: tuple[int, int]) -> MouthGeometry:
    """The mouth geometry of landmarks ``points`` (468, 2) on a picture of ``size`` (w, h)."""
    fh = max(lm.face_height(points), 8.0)
    mouth_w = float(np.linalg.norm(points[lm.MOUTH_RIGHT] - points[lm.MOUTH_LEFT]))
    cx = float(points[lm.LIP_TOP_INNER][0] + points[lm.LIP_BOTTOM_INNER][0]) / 2
    top = float(points[lm.NOSE_TIP][1] * 0.35 + points[lm.LIP_TOP_OUTER][1] * 0.65)
    bottom = float(points[lm.CHIN][1]) + 0.12 * fh
    half_w = max(mouth_w * 0.95, 0.2 * fh)
    region = _clip_box(cx - half_w, top, cx + half_w, bottom, size)
    face = lm.box_of(points)
    side = max(face[2], face[3]) * 1.1
    fcx, fcy = face[0] + face[2] / 2, face[1] + face[3] / 2 + 0.05 * side
    face_box = _clip_box(fcx - side / 2, fcy - side / 2, fcx + side / 2, fcy + side / 2, size)
    return MouthGeometry(points, region, face_box, fh)


def blend_mask(g: MouthGeometry, feather: float = 0.18) -> np.ndarray:
    """Float32 weights over ``g.region``: 1 around lips and chin, fading smoothly to 0 at the region edge."""
    x, y, w, h = g.region
    mask: np.ndarray = np.zeros((h, w), np.uint8)
    hull = cv2.convexHull(
        np.round(g.points[list(lm.LIPS_OUTER + lm.JAW)] - (x, y)).astype(np.int32).reshape(-1, 1, 2)
    )
    cv2.fillConvexPoly(mask, hull, 255, cv2.LINE_AA)
    kernel = max(3, int(feather * min(w, h)) // 2 * 2 + 1)
    mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel // 2 + 1, kernel // 2 + 1)))
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (kernel, kernel), 0)
    ramp = max(2, kernel // 2)
    ys = np.minimum(np.arange(h), np.arange(h)[::-1])[:, None]
    xs = np.minimum(np.arange(w), np.arange(w)[::-1])[None, :]
    edge = np.clip(np.minimum(ys, xs) / ramp, 0.0, 1.0).astype(np.float32)
    return soft * edge


def mask_image(g: MouthGeometry) -> np.ndarray:
    """The blend mask as an 8-bit picture of MASK_SIZE x MASK_SIZE (what the avatar folder stores)."""
    return cv2.resize(
        (blend_mask(g) * 255).astype(np.uint8), (MASK_SIZE, MASK_SIZE), interpolation=cv2.INTER_AREA
    )

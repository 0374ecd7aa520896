"""The chroma key: the matte and the spill suppression of an avatar filmed on a green or blue screen.

The matte is computed once per avatar frame (at start) from the chroma planes of its I420 picture: the
distance of each pixel's (Cb, Cr) to the key colour, ramped smoothly between ``similarity`` and
``similarity + softness``, then pulled in a little and feathered so the screen's fringe does not show.
Spill suppression takes the key colour's tint out of the subject (the light the screen throws on hair
and edges): the part of each pixel's chroma that points towards the key is removed.
"""

from __future__ import annotations

import cv2
import numpy as np

from broadcaster.face.i420 import from_bgr, planes
from broadcaster.face.look import NAMED_KEYS, ChromaConfig

REFINE_SHARE = 0.02


def _chroma_of(rgb: tuple[int, int, int]) -> tuple[float, float]:
    r, g, b = rgb
    picture = from_bgr(np.full((4, 4, 3), (b, g, r), np.uint8))
    _, u, v = planes(picture)
    return float(u[0, 0]), float(v[0, 0])


class ChromaKey:
    """The key colour of one avatar and what follows from it: mattes and spill suppression."""

    def __init__(self, cfg: ChromaConfig) -> None:
        self.cfg = cfg
        self.key = _chroma_of(cfg.rgb)
        self._direction()

    def _direction(self) -> None:
        du, dv = self.key[0] - 128.0, self.key[1] - 128.0
        norm = max(1e-6, float(np.hypot(du, dv)))
        self._toward = (du / norm, dv / norm)

    def refine(self, picture: np.ndarray) -> tuple[float, float]:
        """Tune a named key ("green", "blue") to the screen as lit in ``picture`` (I420); returns the key.

        The median chroma of the pixels near the nominal colour is the screen as the camera saw it.
        A #rrggbb key is taken as given.
        """
        if self.cfg.key not in NAMED_KEYS:
            return self.key
        _, u, v = planes(picture)
        near = self._distance(u, v) < 2.0 * (self.cfg.similarity + self.cfg.softness)
        if near.mean() >= REFINE_SHARE:
            self.key = (float(np.median(u[near])), float(np.median(v[near])))
            self._direction()
        return self.key

    def _distance(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        du = u.astype(np.float32) - np.float32(self.key[0])
        dv = v.astype(np.float32) - np.float32(self.key[1])
        return cv2.magnitude(du, dv) / np.float32(255.0)

    def matte(self, picture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The alpha (uint8, 255 = subject) of an I420 picture: full size and half size (for chroma)."""
        y, u, v = planes(picture)
        h, w = y.shape
        cfg = self.cfg
        ramp = (self._distance(u, v) - np.float32(cfg.similarity)) / np.float32(max(cfg.softness, 1e-3))
        np.clip(ramp, 0.0, 1.0, out=ramp)
        alpha = ramp * ramp * (3.0 - 2.0 * ramp) * 255.0
        full = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
        if cfg.shrink_px:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * cfg.shrink_px + 1,) * 2)
            full = cv2.erode(full, kernel, borderType=cv2.BORDER_REPLICATE)
        if cfg.feather_px:
            full = cv2.GaussianBlur(full, (0, 0), cfg.feather_px, borderType=cv2.BORDER_REPLICATE)
        alpha_y = np.clip(full + 0.5, 0, 255).astype(np.uint8)
        alpha_c = np.clip(cv2.resize(full, (w // 2, h // 2), interpolation=cv2.INTER_AREA) + 0.5, 0, 255)
        return alpha_y, alpha_c.astype(np.uint8)

    def despill(self, picture: np.ndarray) -> None:
        """Take the key colour's tint out of an I420 picture, in place (chroma planes only)."""
        if self.cfg.spill <= 0:
            return
        _, u_plane, v_plane = planes(picture)
        kx, ky = self._toward
        u: np.ndarray = u_plane.astype(np.float32)
        v: np.ndarray = v_plane.astype(np.float32)
        toward: np.ndarray = cv2.addWeighted(u, kx, v, ky, -128.0 * (kx + ky))
        np.maximum(toward, 0.0, out=toward)
        toward *= self.cfg.spill
        for plane, source, k in ((u_plane, u, kx), (v_plane, v, ky)):
            mixed: np.ndarray = cv2.scaleAdd(toward, -k, source)
            mixed += 0.5
            np.copyto(plane, np.clip(mixed, 0, 255), casting="unsafe")

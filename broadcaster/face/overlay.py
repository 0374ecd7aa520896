"""Overlays: a picture with an alpha matte, prepared once as I420 and blended into program frames.

A caption or a card is drawn once (RGBA, by Pillow) and converted here to I420 planes with alpha at
full and half resolution; each tick then costs one ``cv2.blendLinear`` per plane over its region.
"""

from __future__ import annotations

import cv2
import numpy as np

from broadcaster.face.i420 import from_bgr, planes

Weights = tuple[np.ndarray, np.ndarray]


def _even_down(x: int) -> int:
    return x // 2 * 2


def blend_plane(dst: np.ndarray, src: np.ndarray, weight: tuple[np.ndarray, np.ndarray]) -> None:
    """Mix ``src`` into ``dst`` in place: src * w + dst * (1 - w), with ``weight`` = (w, 1 - w) as float32."""
    np.copyto(dst, cv2.blendLinear(src, dst, weight[0], weight[1]))


def weights(alpha: np.ndarray, opacity: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 matte as float32 blend weights (w, 1 - w), w scaled by ``opacity``."""
    w = alpha.astype(np.float32)
    w *= np.float32(opacity / 255.0)
    return w, np.float32(1.0) - w


class Overlay:
    """An RGBA picture as I420 planes plus mattes, placed with its top-left corner at an even point."""

    def __init__(self, rgba: np.ndarray) -> None:
        if rgba.ndim != 3 or rgba.shape[2] != 4 or not rgba.size:
            raise ValueError("an overlay is a non-empty RGBA picture")
        # padded with transparent pixels to a width of a multiple of 2 and a height of 4 (I420 rows)
        h, w = -(-rgba.shape[0] // 4) * 4, -(-rgba.shape[1] // 2) * 2
        rgba = np.pad(rgba, ((0, h - rgba.shape[0]), (0, w - rgba.shape[1]), (0, 0)))
        self.size = (w, h)
        alpha = np.ascontiguousarray(rgba[:, :, 3])
        bgr = np.ascontiguousarray(rgba[:, :, 2::-1])
        picture = from_bgr(bgr)
        # chroma from colours weighted by their alpha, so transparent pixels do not tint the edges
        af = alpha.astype(np.float32)
        half = (w // 2, h // 2)
        area = cv2.resize(af, half, interpolation=cv2.INTER_AREA)
        premul = cv2.resize(bgr.astype(np.float32) * af[:, :, None], half, interpolation=cv2.INTER_AREA)
        colour = premul / np.maximum(area, 1e-3)[:, :, None]
        upsampled = cv2.resize(
            np.clip(colour + 0.5, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST
        )
        chroma = from_bgr(upsampled)
        picture[h:] = chroma[h:]
        self.picture = picture
        self.alpha = alpha
        self.alpha_half = np.clip(area + 0.5, 0, 255).astype(np.uint8)
        self._weights: tuple[float, Weights, Weights] | None = None

    def _weights_at(self, opacity: float) -> tuple[Weights, Weights]:
        cached = self._weights
        if cached is None or cached[0] != opacity:
            cached = (opacity, weights(self.alpha, opacity), weights(self.alpha_half, opacity))
            self._weights = cached
        return cached[1], cached[2]

    def blend(self, frame: np.ndarray, at: tuple[int, int], opacity: float = 1.0) -> None:
        """Blend into I420 ``frame`` with the top-left corner at ``at`` (clipped to the frame)."""
        if opacity <= 0.0:
            return
        fh, fw = frame.shape[0] * 2 // 3, frame.shape[1]
        x, y = _even_down(at[0]), _even_down(at[1])
        w, h = self.size
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, fw), min(y + h, fh)
        if x1 <= x0 or y1 <= y0:
            return
        full, half = self._weights_at(min(opacity, 1.0))
        for dst, src, weight, div in zip(
            planes(frame), planes(self.picture), (full, half, half), (1, 2, 2), strict=True
        ):
            sx, sy = (x0 - x) // div, (y0 - y) // div
            cw, ch = (x1 - x0) // div, (y1 - y0) // div
            blend_plane(
                dst[y0 // div : y0 // div + ch, x0 // div : x0 // div + cw],
                src[sy : sy + ch, sx : sx + cw],
                (weight[0][sy : sy + ch, sx : sx + cw], weight[1][sy : sy + ch, sx : sx + cw]),
            )

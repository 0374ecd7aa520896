"""I420 (yuv420p) pictures as single numpy arrays of shape (H*3/2, W), and views of their planes."""

from __future__ import annotations

import cv2
import numpy as np


def from_bgr(image: np.ndarray) -> np.ndarray:
    """Convert an even-sided BGR image to one I420 array."""
    return cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)


def to_bgr(picture: np.ndarray) -> np.ndarray:
    """Convert an I420 array back to BGR (tests, previews)."""
    return cv2.cvtColor(picture, cv2.COLOR_YUV2BGR_I420)


def planes(picture: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Writable views (Y, U, V) of an I420 array."""
    rows, w = picture.shape
    h = rows * 2 // 3
    y = picture[:h]
    u = picture[h : h + h // 4].reshape(h // 2, w // 2)
    v = picture[h + h // 4 :].reshape(h // 2, w // 2)
    return y, u, v

"""A stage: one avatar prepared for the canvas, ready to draw any tick in a few milliseconds.

It holds the avatar's frames scaled to where it stands, their mouth geometry and blend masks, and its
idle motion. The mouth is drawn on the avatar's own picture before the idle warp, so lips move with the
head: for a photo on a working copy of the still, for a video on a copy of the current loop frame.

An avatar filmed on a green screen also has a matte per frame (computed at start): a photo's matte is
warped by the same idle motion as its picture, a video's follows its loop. Its spill is taken out of a
photo once and out of each video frame as it is drawn.
"""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np

from broadcaster.config import AvatarConfig
from broadcaster.face.avatar import Avatar
from broadcaster.face.chroma import ChromaKey
from broadcaster.face.i420 import planes, to_bgr
from broadcaster.face.idle import PhotoIdle, VideoLoop
from broadcaster.face.lipsync.base import FaceView, LipSync, ReferenceFace
from broadcaster.face.mouth import MouthGeometry, geometry
from broadcaster.voice.speech_track import SpeechFrame

log = logging.getLogger(__name__)
Matte = tuple[np.ndarray, np.ndarray]


def _even(x: float) -> int:
    return max(2, round(x / 2) * 2)


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


class Stage:
    """One avatar at its place on a canvas of ``canvas`` size."""

    def __init__(
        self, avatar: Avatar, canvas: tuple[int, int], cfg: AvatarConfig, chroma: ChromaKey | None = None
    ) -> None:
        self.name = avatar.name
        self.kind = avatar.manifest.kind
        x, y, w, h = placement(canvas, avatar.manifest.size, cfg)
        self.rect = (x, y, w, h)
        self._pictures = avatar.pictures((w, h))
        self._points = avatar.landmarks_at((w, h))
        self._mask = avatar.mask
        self._faces: dict[int, tuple[MouthGeometry, np.ndarray]] = {}
        self._idle: PhotoIdle | None = None
        self._loop: VideoLoop | None = None
        self.chroma = chroma
        self._mattes: tuple[np.ndarray, np.ndarray] | None = None
        self._matte_idle: PhotoIdle | None = None
        if chroma is not None:
            chroma.refine(self._pictures[0])
        if self.kind == "photo":
            self._still = np.array(self._pictures[0])
            if chroma is not None:
                chroma.despill(self._still)
            self._work = self._still.copy()
            self._idle = PhotoIdle(self._still, self._pivot(), cfg.idle)
        else:
            self._loop = VideoLoop(len(self._pictures), avatar.manifest.fps)
        if chroma is not None:
            self._prepare_mattes(chroma, cfg)

    def _prepare_mattes(self, chroma: ChromaKey, cfg: AvatarConfig) -> None:
        began = time.perf_counter()
        w, h = self.rect[2:]
        full = np.empty((len(self._pictures), h, w), np.uint8)
        half = np.empty((len(self._pictures), h // 2, w // 2), np.uint8)
        for i, picture in enumerate(self._pictures):
            full[i], half[i] = chroma.matte(picture)
        self._mattes = (full, half)
        if self.kind == "photo":
            still = np.empty((h * 3 // 2, w), np.uint8)
            y, u, v = planes(still)
            y[:], u[:], v[:] = full[0], half[0], half[0]
            self._matte_idle = PhotoIdle(still, self._pivot(), cfg.idle)
        log.info(
            "avatar %r: chroma key %s (Cb %.0f, Cr %.0f), %d matte(s) in %.1f s, %.0f MB",
            self.name,
            chroma.cfg.key,
            *chroma.key,
            len(full),
            time.perf_counter() - began,
            (full.nbytes + half.nbytes) / 2**20,
        )

    def _pivot(self) -> tuple[float, float]:
        """The neck: a little below the chin's height, under the face's centre."""
        g = self.face(0)[0]
        fx, fy, fw, fh = g.face_box
        return fx + fw / 2, fy + fh * 0.95

    def face(self, index: int) -> tuple[MouthGeometry, np.ndarray]:
        """Mouth geometry and float blend mask of frame ``index`` (computed once per frame)."""
        found = self._faces.get(index)
        if found is None:
            w, h = self.rect[2:]
            g = geometry(self._points[index], (w, h))
            rw, rh = g.region[2:]
            mask = cv2.resize(self._mask, (rw, rh), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
            found = (g, mask)
            self._faces[index] = found
        return found

    def reference(self) -> ReferenceFace:
        """The first frame's face crop (BGR), for backends that animate a face."""
        g = self.face(0)[0]
        x, y, w, h = g.face_box
        bgr = to_bgr(np.ascontiguousarray(self._pictures[0]))
        return ReferenceFace(self.name, np.ascontiguousarray(bgr[y : y + h, x : x + w]), g.face_box)

    def frame_index(self, t: float) -> int:
        """Which avatar frame shows at program time t."""
        return 0 if self._loop is None else self._loop.index(t)

    def matte(self, t: float) -> Matte | None:
        """The avatar's alpha at time t (full and half size, uint8), or None when it is not keyed."""
        if self._mattes is None:
            return None
        if self._matte_idle is not None:
            y, u, _ = planes(self._matte_idle.picture(t))
            return y, u
        index = self.frame_index(t)
        return self._mattes[0][index], self._mattes[1][index]

    def picture(self, t: float, lipsync: LipSync, speech: SpeechFrame | None) -> np.ndarray:
        """The avatar's I420 patch for time t with its mouth drawn for ``speech``."""
        index = self.frame_index(t)
        g, mask = self.face(index)
        if self._idle is not None:
            np.copyto(self._work, self._still)
            lipsync.draw(FaceView(self._work, g, mask, self.name, index), speech)
            return self._idle.picture(t, self._work)
        picture = np.array(self._pictures[index])
        if self.chroma is not None:
            self.chroma.despill(picture)
        lipsync.draw(FaceView(picture, g, mask, self.name, index), speech)
        return picture

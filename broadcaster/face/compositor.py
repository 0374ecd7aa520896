"""The compositor: background, the avatar on air, captions and a product card; one I420 frame per tick.

Several avatars can be preloaded as stages; ``switch`` puts another on air at the next tick. An avatar
filmed on a green screen is blended over the background through its matte; any other is pasted. The
background may be a looping video; captions and cards are drawn once and only blended per tick.
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
from broadcaster.face.backdrop import Backdrop, make_background
from broadcaster.face.caption import Captions
from broadcaster.face.card import Cards, ProductLike
from broadcaster.face.chroma import ChromaKey
from broadcaster.face.fonts import overlay_font
from broadcaster.face.i420 import planes
from broadcaster.face.lipsync.base import LipSync
from broadcaster.face.look import ChromaConfig, OverlayConfig
from broadcaster.face.overlay import blend_plane, weights
from broadcaster.face.stage import Stage
from broadcaster.voice.speech_track import SpeechFrame

__all__ = ["Compositor", "make_background"]

log = logging.getLogger(__name__)


class Compositor:
    """Draws program frames: the background, the avatar on air in place, the caption and the card.

    ``background`` is a BGR picture (a still) or a ``Backdrop`` (a still or a looping video).
    ``overlay`` sets captions and cards (their font is found at start: a configured font file that
    does not exist is a ValueError); ``chroma`` keys avatars filmed on a green or blue screen;
    ``products_dir`` is where product pictures are (their paths are relative to it).
    """

    def __init__(
        self,
        size: tuple[int, int],
        background: np.ndarray | Backdrop,
        avatars: Sequence[Avatar],
        cfg: AvatarConfig,
        lipsync: LipSync,
        *,
        overlay: OverlayConfig | None = None,
        chroma: ChromaConfig | None = None,
        products_dir: Path | None = None,
        base_dir: Path | None = None,
    ) -> None:
        # A frame's warps take a few milliseconds; OpenCV's worker threads cost more CPU than they save
        # (measured: 8.6 vs 6.5 ms of CPU per 720p frame), and the encoder needs the other core.
        cv2.setNumThreads(1)
        if not avatars:
            raise ValueError("the compositor needs at least one avatar")
        overlay = overlay or OverlayConfig()
        chroma = chroma or ChromaConfig()
        self.size = size
        self.lipsync = lipsync
        self.backdrop = background if isinstance(background, Backdrop) else Backdrop.still(background)
        if self.backdrop.size != size:
            raise ValueError(f"the background is {self.backdrop.size}, the program {size}")
        self.stages = {
            a.name: Stage(a, size, cfg, ChromaKey(chroma) if chroma.applies_to(a.name) else None)
            for a in avatars
        }
        wanted = overlay.font or overlay.captions.enabled or overlay.card.enabled
        face = overlay_font(overlay.font, overlay.font_index, base_dir or Path()) if wanted else None
        self.captions = Captions(overlay.captions, face, size)
        self.cards = Cards(overlay.card, face, size, products_dir)
        self._lock = threading.Lock()
        self._pending: str | None = None
        self.stage = self.stages[avatars[0].name]
        lipsync.use_avatar(self.stage.reference())
        for stage in self.stages.values():
            log.info(
                "avatar %r (%s%s) at x=%d y=%d %dx%d on a %dx%d canvas",
                stage.name,
                stage.kind,
                ", chroma-keyed" if stage.chroma is not None else "",
                *stage.rect,
                *size,
            )

    @property
    def rect(self) -> tuple[int, int, int, int]:
        """Where the avatar on air stands."""
        return self.stage.rect

    def add(self, avatar: Avatar, cfg: AvatarConfig, chroma: ChromaConfig | None = None) -> None:
        """Make ``avatar`` a stage that ``switch`` can put on air (built here, on the caller's thread)."""
        chroma = chroma or ChromaConfig()
        stage = Stage(avatar, self.size, cfg, ChromaKey(chroma) if chroma.applies_to(avatar.name) else None)
        with self._lock:
            self.stages = {**self.stages, avatar.name: stage}
        log.info("avatar %r (%s) loaded at x=%d y=%d %dx%d", stage.name, stage.kind, *stage.rect)

    def switch(self, name: str) -> None:
        """Put preloaded avatar ``name`` on air from the next tick; KeyError names the preloaded ones."""
        if name not in self.stages:
            raise KeyError(f"avatar {name!r} is not preloaded (preloaded: {', '.join(sorted(self.stages))})")
        with self._lock:
            self._pending = name

    def show_card(self, product: ProductLike | None) -> None:
        """Show ``product``'s card from the next tick (None takes it down); callable from any thread."""
        self.cards.show(product)

    def frame(self, t: float, speech: SpeechFrame | None = None) -> np.ndarray:
        """The program picture at time t seconds: a new array, never written again once returned."""
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None and pending != self.stage.name:
            self.stage = self.stages[pending]
            self.lipsync.use_avatar(self.stage.reference())
            log.info("avatar %r on air", pending)
        out = self.backdrop.picture(t).copy()
        x, y, w, h = self.stage.rect
        patch = self.stage.picture(t, self.lipsync, speech)
        matte = self.stage.matte(t)
        if matte is None:
            for dst, src, div in zip(planes(out), planes(patch), (1, 2, 2), strict=True):
                dst[y // div : (y + h) // div, x // div : (x + w) // div] = src
        else:
            full, half = weights(matte[0]), weights(matte[1])
            for dst, src, weight, div in zip(
                planes(out), planes(patch), (full, half, half), (1, 2, 2), strict=True
            ):
                blend_plane(dst[y // div : (y + h) // div, x // div : (x + w) // div], src, weight)
        self.captions.draw(out, t, speech)
        self.cards.draw(out, t)
        return out

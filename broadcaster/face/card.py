"""The product card: the product on sale (its picture, name and price) in a corner of the program.

The director says which product is on (``Cards.show``, from any thread) when a product's script starts
and ends. The card is drawn once per product, cached, and blended every tick, fading in and out.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from broadcaster.face.caption import wrap
from broadcaster.face.fonts import FontFace
from broadcaster.face.look import CardConfig
from broadcaster.face.overlay import Overlay
from broadcaster.show.products import figure

log = logging.getLogger(__name__)

SYMBOLS = {"CNY": "¥", "USD": "$"}
PRICE = (255, 77, 79, 255)
TEXT = (255, 255, 255, 255)
MUTED = (170, 170, 180, 255)
CACHED = 16


class ProductLike(Protocol):
    """What a card shows of a product (broadcaster.show.products.Product has it)."""

    name: str
    price: float
    original_price: float | None
    currency: str


@dataclass(frozen=True)
class CardContent:
    """What one card shows: texts as written on it and the product picture (None: no picture)."""

    name: str
    price: str
    original: str = ""
    image: Path | None = None

    @classmethod
    def of(cls, product: ProductLike, folder: Path | None) -> CardContent:
        """A product's card; its ``image`` (if it has one) is a path relative to ``folder``."""
        symbol = SYMBOLS.get(product.currency, "")
        original = product.original_price
        image = str(getattr(product, "image", "") or "")
        path: Path | None = None
        if image:
            path = Path(image) if Path(image).is_absolute() or folder is None else folder / image
        return cls(
            product.name,
            symbol + figure(product.price),
            symbol + figure(original) if original is not None and original > product.price else "",
            path,
        )


def _picture(path: Path, box: tuple[int, int]) -> Image.Image | None:
    try:
        with Image.open(path) as raw:
            image = ImageOps.exif_transpose(raw).convert("RGBA")
    except (OSError, ValueError) as exc:
        log.warning("product card: cannot read the picture %s (%s); the card shows without it", path, exc)
        return None
    image.thumbnail(box, Image.Resampling.LANCZOS)
    return image


def render_card(content: CardContent, face: FontFace, canvas: tuple[int, int], cfg: CardConfig) -> np.ndarray:
    """The card as an RGBA image, ``cfg.width`` of the canvas wide."""
    width = max(64, round(canvas[0] * cfg.width))
    pad = round(width * 0.06)
    inner = width - 2 * pad
    name_font = face.at(round(width * 0.085))
    price_font = face.at(round(width * 0.13))
    was_font = face.at(round(width * 0.07))
    picture = _picture(content.image, (inner, round(inner * 0.75))) if content.image else None
    names = wrap(content.name, name_font, inner)[:2]
    name_h = sum(name_font.getmetrics())
    price_h = sum(price_font.getmetrics())
    height = pad + (picture.height + pad if picture else 0) + name_h * len(names) + pad // 2 + price_h + pad
    card = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(card)
    draw.rounded_rectangle(
        (0, 0, width - 1, height - 1), radius=round(width * 0.05), fill=(22, 24, 32, round(255 * cfg.opacity))
    )
    y = pad
    if picture is not None:
        card.alpha_composite(picture, ((width - picture.width) // 2, y))
        y += picture.height + pad
    for line in names:
        draw.text((pad, y), line, font=name_font, fill=TEXT)
        y += name_h
    y += pad // 2
    draw.text((pad, y), content.price, font=price_font, fill=PRICE)
    if content.original:
        x = pad + round(price_font.getlength(content.price)) + pad // 2
        baseline = y + price_font.getmetrics()[0]
        draw.text((x, baseline), content.original, font=was_font, fill=MUTED, anchor="ls")
        left, top, right, bottom = draw.textbbox((x, baseline), content.original, font=was_font, anchor="ls")
        mid = (top + bottom) // 2
        draw.line((left - 1, mid, right + 1, mid), fill=MUTED, width=max(1, round(was_font.size / 12)))
    return np.asarray(card)


class Cards:
    """The card on air: set from any thread with ``show``, drawn by the render thread with ``draw``."""

    def __init__(
        self, cfg: CardConfig, face: FontFace | None, canvas: tuple[int, int], folder: Path | None = None
    ) -> None:
        self.cfg = cfg
        self.face = face if cfg.enabled else None
        self.canvas = canvas
        self.folder = folder
        self._lock = threading.Lock()
        self._pending: tuple[CardContent | None] | None = None
        self._cache: dict[CardContent, Overlay] = {}
        self._content: CardContent | None = None  # what is on air (or fading out when None)
        self._on: Overlay | None = None
        self._off: Overlay | None = None
        self._since = 0.0

    def show(self, product: ProductLike | None) -> None:
        """Show ``product``'s card from the next tick, or take the card down (None). Thread-safe."""
        content = None if product is None else CardContent.of(product, self.folder)
        with self._lock:
            self._pending = (content,)

    def overlay(self, content: CardContent) -> Overlay | None:
        """The card of ``content`` (drawn on first use, then cached)."""
        if self.face is None:
            return None
        found = self._cache.get(content)
        if found is None:
            found = Overlay(render_card(content, self.face, self.canvas, self.cfg))
            if len(self._cache) >= CACHED:
                self._cache.pop(next(iter(self._cache)))
            self._cache[content] = found
        return found

    def _place(self, overlay: Overlay) -> tuple[int, int]:
        cw, ch = self.canvas
        w, h = overlay.size
        m = round(ch * self.cfg.margin)
        x = m if self.cfg.corner.endswith("left") else cw - m - w
        y = m if self.cfg.corner.startswith("top") else ch - m - h
        return x, y

    def draw(self, frame: np.ndarray, t: float) -> None:
        """Blend the card on air at time t into I420 ``frame`` (fading in or out)."""
        if self.face is None:
            return
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None and pending[0] != self._content:  # the same card again changes nothing
            content = self._content = pending[0]
            self._off = self._on if content is None else None
            self._on = None if content is None else self.overlay(content)
            self._since = t
        fade = self.cfg.fade_s
        ramp = 1.0 if fade <= 0 else min(1.0, max(0.0, t - self._since) / fade)
        if self._on is not None:
            self._on.blend(frame, self._place(self._on), ramp)
        elif self._off is not None:
            if ramp >= 1.0:
                self._off = None
            else:
                self._off.blend(frame, self._place(self._off), 1.0 - ramp)

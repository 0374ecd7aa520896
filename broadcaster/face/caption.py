"""Captions: the sentence on air, drawn at the bottom of the program.

Each sentence is laid out and drawn once (white text, dark outline, a translucent band) and kept as an
overlay, cached by its text; every tick only blends it. It shows while its utterances play, stays
``hold_s`` after speech stops (so the short gaps between sentences do not flicker) and then fades out.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from broadcaster.face.fonts import FontFace
from broadcaster.face.look import CaptionConfig
from broadcaster.face.overlay import Overlay
from broadcaster.voice.speech_track import SpeechFrame

_CJK = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\u3000-\u303f"
_TOKEN = re.compile(rf"[^\s{_CJK}]+\s*|\s+|.")
_CLOSING = set("，。！？、；：”’）》」』】…,.!?;:)]%")
_OPENING = set("“‘（《「『【([")
SHRINK_STEPS = (1.0, 0.9, 0.8, 0.7)
CACHED = 32


def _tokens(text: str) -> list[str]:
    """Breakable pieces: Latin words with their trailing space, single CJK characters.

    Punctuation that may not start a line sticks to the piece before it, that which may not end one to
    the piece after it.
    """
    out: list[str] = []
    carry = ""
    for found in _TOKEN.findall(" ".join(text.split())):
        if found in _OPENING:
            carry += found
            continue
        token, carry = carry + found, ""
        if out and token[0] in _CLOSING:
            out[-1] += token
        else:
            out.append(token)
    if carry:
        out.append(carry)
    return out


def wrap(text: str, font: ImageFont.FreeTypeFont, max_width: float) -> list[str]:
    """Lines of ``text`` no wider than ``max_width`` pixels (a single wider character still gets a line)."""
    lines: list[str] = []
    line = ""
    for token in _tokens(text):
        pieces = [token] if font.getlength(token.rstrip()) <= max_width else list(token)
        for piece in pieces:
            candidate = line + piece
            if not line or font.getlength(candidate.rstrip()) <= max_width:
                line = candidate
            else:
                lines.append(line.rstrip())
                line = piece.lstrip()
    if line.strip():
        lines.append(line.rstrip())
    return lines


def _ellipsize(line: str, font: ImageFont.FreeTypeFont, max_width: float) -> str:
    while line and font.getlength(line + "…") > max_width:
        line = line[:-1]
    return line.rstrip() + "…"


def layout(
    text: str, face: FontFace, size: int, max_width: float, max_lines: int
) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The font and lines for ``text``: shrunk a little if that fits ``max_lines``, else cut short."""
    font, lines = face.at(size), []
    for step in SHRINK_STEPS:
        font = face.at(round(size * step))
        lines = wrap(text, font, max_width)
        if len(lines) <= max_lines:
            return font, lines
    kept = lines[:max_lines]
    kept[-1] = _ellipsize(kept[-1], font, max_width)
    return font, kept


def render_caption(text: str, face: FontFace, canvas: tuple[int, int], cfg: CaptionConfig) -> np.ndarray:
    """The caption of ``text`` as an RGBA image sized to fit it."""
    cw, ch = canvas
    size = max(8, round(ch * cfg.size))
    font, lines = layout(text, face, size, cw * cfg.width, cfg.max_lines)
    stroke = round(font.size * cfg.outline)
    ascent, descent = font.getmetrics()
    line_h = ascent + descent + round(font.size * 0.12)
    pad_x, pad_y = round(font.size * 0.5) + stroke, round(font.size * 0.2) + stroke
    width = max(round(font.getlength(line)) for line in lines) + 2 * pad_x
    height = line_h * len(lines) + 2 * pad_y
    band = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    if cfg.band_opacity > 0:
        ImageDraw.Draw(band).rounded_rectangle(
            (0, 0, width - 1, height - 1),
            radius=round(font.size * 0.3),
            fill=(0, 0, 0, round(255 * cfg.band_opacity)),
        )
    ink = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(ink)
    for i, line in enumerate(lines):
        draw.text(
            (width / 2, pad_y + i * line_h),
            line,
            font=font,
            fill=(255, 255, 255, 255),
            anchor="ma",
            stroke_width=stroke,
            stroke_fill=(0, 0, 0, 255),
        )
    return np.asarray(Image.alpha_composite(band, ink))


class Captions:
    """Which caption is on air at each tick, and how opaque; drawn once per sentence."""

    def __init__(self, cfg: CaptionConfig, face: FontFace | None, canvas: tuple[int, int]) -> None:
        self.cfg = cfg
        self.face = face if cfg.enabled else None
        self.canvas = canvas
        self._cache: OrderedDict[str, Overlay] = OrderedDict()
        self._text = ""
        self._last_t = 0.0
        self._posted: str | None = None
        self._subtitle = False  # the caption is posted words, not a sentence of the speech

    def post(self, text: str) -> None:
        """Show ``text`` from the next frame on (the host's words), until speech with a sentence.

        Called from any thread: one reference is handed to the render thread.
        """
        self._posted = text

    def overlay(self, text: str) -> Overlay | None:
        """The caption of ``text`` (drawn on first use, then cached)."""
        if self.face is None or not text.strip():
            return None
        found = self._cache.get(text)
        if found is None:
            found = Overlay(render_caption(text, self.face, self.canvas, self.cfg))
            self._cache[text] = found
            while len(self._cache) > CACHED:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(text)
        return found

    def opacity(self, t: float) -> float:
        """How visible the current caption is at time t: 1 while held, then a linear fade to 0."""
        if not self._text:
            return 0.0
        since = max(0.0, t - self._last_t - self.cfg.hold_s)
        if since <= 0.0:
            return 1.0
        if since >= self.cfg.fade_s:
            self._text = ""
            return 0.0
        return 1.0 - since / self.cfg.fade_s

    def draw(self, frame: np.ndarray, t: float, speech: SpeechFrame | None) -> None:
        """Blend the caption on air at time t (for ``speech``, the tick's speech) into I420 ``frame``."""
        if self.face is None:
            return
        posted, self._posted = self._posted, None
        if posted is not None:
            self._text, self._last_t, self._subtitle = posted.strip(), t, True
        if speech is not None:
            sentence = speech.utterance.text.strip()
            if sentence or not self._subtitle:
                self._text, self._last_t, self._subtitle = sentence, t, False
            else:  # a live voice (no sentence of its own) holds the words posted for it
                self._last_t = t
        opacity = self.opacity(t)
        overlay = self.overlay(self._text) if opacity > 0 else None
        if overlay is None:
            return
        w, h = overlay.size
        cw, ch = self.canvas
        overlay.blend(frame, ((cw - w) // 2, ch - round(ch * self.cfg.bottom) - h), opacity)

"""Settings of what the program shows besides the avatar: captions, cards, chroma key, video background.

Captions, the product card, the chroma key of an avatar filmed on a green screen and a looping
background video.

Validated once at start like the rest of the config (invariant 8); every field has a working default.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAMED_KEYS = {"green": "#00b140", "blue": "#0047bb"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaptionConfig(_Section):
    """`[overlay.captions]`: the sentence on air, drawn at the bottom of the program."""

    enabled: bool = True
    size: float = Field(0.05, ge=0.02, le=0.12)  # text height, share of the picture height
    max_lines: int = Field(2, ge=1, le=4)
    width: float = Field(0.86, ge=0.3, le=1.0)  # widest line, share of the picture width
    bottom: float = Field(0.05, ge=0.0, le=0.5)  # gap under the caption, share of the picture height
    hold_s: float = Field(0.6, ge=0.0, le=10.0)  # how long it stays after speech stops
    fade_s: float = Field(0.25, ge=0.0, le=2.0)  # then fades out over this long
    band_opacity: float = Field(0.45, ge=0.0, le=1.0)  # the dark band behind the text; 0: outline only
    outline: float = Field(0.08, ge=0.0, le=0.25)  # dark outline width, share of the text height


class CardConfig(_Section):
    """`[overlay.card]`: the product on sale (picture, name, price) in a corner while its script plays."""

    enabled: bool = True
    corner: Literal["top-left", "top-right", "bottom-left", "bottom-right"] = "top-right"
    width: float = Field(0.24, ge=0.1, le=0.6)  # share of the picture width
    margin: float = Field(0.03, ge=0.0, le=0.2)  # gap to the picture's edges, share of its height
    opacity: float = Field(0.85, ge=0.2, le=1.0)  # of the card's panel
    fade_s: float = Field(0.3, ge=0.0, le=2.0)  # fade in and out


class OverlayConfig(_Section):
    """`[overlay]`: the font of captions and cards, and their settings.

    ``font`` names a font file (TrueType/OpenType, or a .ttc collection with ``font_index``); empty
    finds a CJK font in the usual places (fonts-noto-cjk, wqy, droid, fontconfig).
    """

    font: str = ""
    font_index: int = Field(-1, ge=-1, le=255)  # -1: the Simplified Chinese face of a collection, else 0
    captions: CaptionConfig = CaptionConfig()
    card: CardConfig = CardConfig()


class ChromaConfig(_Section):
    """`[avatar.chroma]`: keying out the green (or blue) screen an avatar was filmed on.

    Distances are in the picture's chroma plane (Cb, Cr), as a share of its full range: a pixel
    closer than ``similarity`` to the key colour is background, one farther than ``similarity +
    softness`` is the subject, and between them the matte is soft.
    """

    key: str = ""  # "" off, "green", "blue" or "#rrggbb"
    avatars: tuple[str, ...] = ()  # which avatars were filmed on the screen; empty: every avatar
    similarity: float = Field(0.14, ge=0.01, le=0.5)
    softness: float = Field(0.08, ge=0.0, le=0.5)
    spill: float = Field(1.0, ge=0.0, le=1.0)  # how much of the key's tint is taken out of the subject
    shrink_px: int = Field(1, ge=0, le=8)  # the matte's edge is pulled in by this much (kills the fringe)
    feather_px: int = Field(1, ge=0, le=8)  # then softened over this much

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if value and value not in NAMED_KEYS and not re.fullmatch(r"#[0-9a-fA-F]{6}", value):
            raise ValueError('"" (off), "green", "blue" or a #rrggbb colour')
        return value

    def applies_to(self, avatar: str) -> bool:
        """Whether avatar ``avatar`` is keyed."""
        return bool(self.key) and (not self.avatars or avatar in self.avatars)

    @property
    def rgb(self) -> tuple[int, int, int]:
        """The nominal key colour."""
        spec = NAMED_KEYS.get(self.key, self.key)
        r, g, b = (int(spec[i : i + 2], 16) for i in (1, 3, 5))
        return r, g, b


class BackgroundVideoConfig(_Section):
    """`[program.background_video]`: a background video is decoded once at start and kept in memory."""

    max_seconds: float = Field(20.0, ge=1.0, le=300.0)
    max_mb: int = Field(512, ge=16, le=8192)  # whichever limit comes first
    loop: Literal["wrap", "pingpong"] = "wrap"
    crossfade_s: float = Field(0.5, ge=0.0, le=5.0)  # wrap: the end dissolves into the start

"""Finding a font that draws Chinese as well as Latin text, for captions and product cards.

An explicitly configured font file must exist (a config error otherwise). Without one, the usual
places are searched: Debian's fonts-noto-cjk (a .ttc collection whose Simplified Chinese face is
picked by name, not by a guessed index), WenQuanYi, Droid Sans Fallback, and fontconfig's choice
for ``zh-cn``. A candidate counts only if it really has Chinese glyphs.
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fontTools.ttLib import TTFont
from PIL import ImageFont

log = logging.getLogger(__name__)

KNOWN_CJK_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Medium.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",
    "/usr/share/fonts/wqy-zenhei/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/droid/DroidSansFallback.ttf",
)
PROBE = "中文"
MAX_FACES = 32


@dataclass(frozen=True)
class FontFace:
    """A font file and the face in it to use; ``at`` loads it at a pixel size."""

    path: Path
    index: int
    name: str

    def at(self, size: int) -> ImageFont.FreeTypeFont:
        """The face at ``size`` pixels (FreeType); loaded once per size."""
        return _load(self.path, self.index, max(1, size))


@functools.lru_cache(maxsize=32)
def _load(path: Path, index: int, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size, index=index)


def _faces(path: Path) -> list[str]:
    """The family names of the faces in a font file (one for a .ttf/.otf, several for a .ttc)."""
    names: list[str] = []
    for index in range(MAX_FACES):
        try:
            family, _style = ImageFont.truetype(str(path), 12, index=index).getname()
        except OSError:
            break
        names.append(family or "")
    return names


def draws_chinese(path: Path, index: int) -> bool:
    """Whether the face at ``path`` (face ``index``) has glyphs for common Chinese characters."""
    try:
        with TTFont(str(path), fontNumber=index, lazy=True) as font:
            cmap = font.getBestCmap() or {}
    except Exception:  # a file FreeType reads but fontTools does not: trust FreeType's loading
        return True
    return all(ord(c) in cmap for c in PROBE)


def _pick_face(path: Path, index: int) -> FontFace | None:
    names = _faces(path)
    if not names:
        return None
    if index < 0:
        simplified = [i for i, n in enumerate(names) if n.endswith(" SC") or "CJK SC" in n]
        index = simplified[0] if simplified else 0
    if index >= len(names):
        return None
    return FontFace(path, index, names[index])


def _fontconfig_choice() -> tuple[Path, int] | None:
    exe = shutil.which("fc-match")
    if exe is None:
        return None
    try:
        found = subprocess.run(
            [exe, "-f", "%{file}\n%{index}", ":lang=zh-cn"],
            check=False,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = found.stdout.splitlines()
    if found.returncode != 0 or not lines or not lines[0]:
        return None
    index = int(lines[1]) if len(lines) > 1 and lines[1].strip().isdigit() else -1
    return Path(lines[0]), index


def configured_font(path: str, index: int, base_dir: Path) -> FontFace:
    """The configured font file; ValueError names the key when it is missing or not a usable font."""
    file = Path(path).expanduser()
    file = file if file.is_absolute() else base_dir / file
    if not file.is_file():
        raise ValueError(f"overlay.font = {path!r}: no such font file ({file})")
    face = _pick_face(file, index)
    if face is None:
        raise ValueError(f"overlay.font = {path!r}: not a font FreeType can read, or no face {index} in it")
    if not draws_chinese(face.path, face.index):
        log.warning(
            "overlay.font %s (%s) has no Chinese glyphs; Chinese text shows as boxes", file, face.name
        )
    return face


def find_cjk_font(candidates: tuple[str, ...] = KNOWN_CJK_FONTS, fontconfig: bool = True) -> FontFace | None:
    """The first usable font that draws Chinese, or None when there is none on this machine."""
    tries: list[tuple[Path, int]] = [(Path(p), -1) for p in candidates]
    if fontconfig:
        choice = _fontconfig_choice()
        if choice is not None:
            tries.append(choice)
    for file, index in tries:
        if not file.is_file():
            continue
        face = _pick_face(file, index)
        if face is not None and draws_chinese(face.path, face.index):
            return face
    return None


def overlay_font(path: str, index: int, base_dir: Path) -> FontFace | None:
    """The font of captions and cards: the configured one, else one found; None (warned) if none is."""
    if path:
        return configured_font(path, index, base_dir)
    face = find_cjk_font()
    if face is None:
        log.warning(
            "no font with Chinese glyphs found (install fonts-noto-cjk, or set overlay.font): "
            "captions and product cards are not drawn"
        )
    else:
        log.info("overlay font: %s (face %d, %s)", face.path, face.index, face.name)
    return face

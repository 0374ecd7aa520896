"""Avatar assets on disk, and loading them fast.

A folder ``avatars/NAME/`` holds ``avatar.json`` (the manifest), ``photo.png`` or ``frames/*.jpg``,
``landmarks.npy`` (face-mesh points per frame, smoothed) and ``mouth_mask.png`` (the blend mask of the
mouth region). Decoding and scaling a video's frames is the expensive part of a start, so the scaled
I420 frames are cached once per drawn size in ``.cache/`` and memory-mapped on later starts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from broadcaster.face.i420 import from_bgr

log = logging.getLogger(__name__)

FORMAT = 2
MANIFEST = "avatar.json"
LANDMARKS = "landmarks.npy"
MASK = "mouth_mask.png"
CACHE = ".cache"
AvatarKind = Literal["photo", "video"]
Box = tuple[int, int, int, int]


class AvatarError(Exception):
    """An avatar that is missing or unreadable; the message says which and what to do."""


@dataclass(frozen=True)
class AvatarManifest:
    """What an avatar folder holds. Boxes are (x, y, w, h) in source pixels, of the first frame."""

    kind: AvatarKind
    size: tuple[int, int]
    fps: float
    frames: int
    face: Box
    mouth: Box
    no_face_frames: tuple[int, ...] = ()
    source: str = ""
    detector: str = ""
    built_by: str = ""
    built_at: str = ""

    def to_json(self) -> str:
        """The manifest as written to disk."""
        return json.dumps(
            {
                "format": FORMAT,
                "kind": self.kind,
                "size": list(self.size),
                "fps": self.fps,
                "frames": self.frames,
                "face": list(self.face),
                "mouth": list(self.mouth),
                "no_face_frames": list(self.no_face_frames),
                "source": self.source,
                "detector": self.detector,
                "built_by": self.built_by,
                "built_at": self.built_at,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> AvatarManifest:
        """Parse a manifest; KeyError/ValueError/TypeError on a malformed one."""
        kind = raw["kind"]
        if kind not in ("photo", "video"):
            raise ValueError(f"kind must be 'photo' or 'video', not {kind!r}")

        def box(key: str) -> Box:
            x, y, w, h = (int(v) for v in raw[key])
            return x, y, w, h

        return cls(
            kind=kind,
            size=(int(raw["size"][0]), int(raw["size"][1])),
            fps=float(raw["fps"]),
            frames=int(raw["frames"]),
            face=box("face"),
            mouth=box("mouth"),
            no_face_frames=tuple(int(i) for i in raw.get("no_face_frames", ())),
            source=str(raw.get("source", "")),
            detector=str(raw.get("detector", "")),
            built_by=str(raw.get("built_by", "")),
            built_at=str(raw.get("built_at", "")),
        )


@dataclass(frozen=True)
class Avatar:
    """A loaded avatar: its manifest, landmarks and mask; pictures come scaled by ``pictures``."""

    name: str
    folder: Path
    manifest: AvatarManifest
    landmarks: np.ndarray
    mask: np.ndarray
    _pictures: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def sources(self) -> list[Path]:
        """The image files, in loop order."""
        if self.manifest.kind == "photo":
            return [self.folder / "photo.png"]
        return sorted((self.folder / "frames").glob("*.jpg"))

    def landmarks_at(self, size: tuple[int, int]) -> np.ndarray:
        """Landmarks scaled to pictures of ``size`` (w, h)."""
        sx, sy = size[0] / self.manifest.size[0], size[1] / self.manifest.size[1]
        return (self.landmarks * np.array([sx, sy], np.float32)).astype(np.float32)

    def pictures(self, size: tuple[int, int]) -> np.ndarray:
        """Every frame as I420 at ``size`` (w, h): array (frames, h*3/2, w), read-only, cached on disk."""
        if size in self._pictures:
            return self._pictures[size]
        w, h = size
        cache = self.folder / CACHE / f"i420-{w}x{h}.npy"
        pictures: np.ndarray | None = None
        if cache.is_file():
            try:
                pictures = np.load(cache, mmap_mode="r")
            except (OSError, ValueError) as exc:
                log.warning("avatar %r: ignoring an unreadable cache %s (%s)", self.name, cache, exc)
            if pictures is not None and pictures.shape != (self.manifest.frames, h * 3 // 2, w):
                pictures = None
        if pictures is None:
            pictures = self._decode(size)
            self._store(cache, pictures)
        self._pictures[size] = pictures
        return pictures

    def _decode(self, size: tuple[int, int]) -> np.ndarray:
        paths = self.sources()
        if self.manifest.kind == "video":
            log.info(
                "avatar %r: preparing %d frames at %dx%d (first start only)", self.name, len(paths), *size
            )
        out = np.empty((len(paths), size[1] * 3 // 2, size[0]), np.uint8)
        for i, path in enumerate(paths):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise AvatarError(f"avatar {self.name!r}: cannot read {path}")
            out[i] = from_bgr(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        out.setflags(write=False)
        return out

    def _store(self, cache: Path, pictures: np.ndarray) -> None:
        try:
            cache.parent.mkdir(exist_ok=True)
            partial = cache.with_suffix(".partial.npy")
            np.save(partial, pictures)
            partial.replace(cache)
        except OSError as exc:
            log.warning(
                "avatar %r: cannot cache frames in %s (%s); next start decodes again", self.name, cache, exc
            )


def avatar_dir(root: Path, name: str) -> Path:
    """Where avatar ``name`` lives."""
    return root / name


def load_avatar(root: Path, name: str) -> Avatar:
    """Load avatar ``name`` from ``root``; AvatarError says precisely what is missing."""
    folder = avatar_dir(root, name)
    manifest_path = folder / MANIFEST
    rebuild = f"(build it with: python -m broadcaster avatar build PHOTO_OR_VIDEO --name {name})"
    if not manifest_path.is_file():
        raise AvatarError(f"avatar {name!r} not found: {manifest_path} does not exist {rebuild}")
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
        if raw.get("format") != FORMAT:
            raise AvatarError(
                f"avatar {name!r} was built by an older version (format {raw.get('format', 1)}, "
                f"this version reads {FORMAT}); rebuild it {rebuild}"
            )
        manifest = AvatarManifest.from_json(raw)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise AvatarError(f"avatar {name!r}: {manifest_path} is not a valid manifest: {exc}") from exc
    try:
        points = np.load(folder / LANDMARKS)
    except (OSError, ValueError) as exc:
        raise AvatarError(f"avatar {name!r}: cannot read {folder / LANDMARKS}: {exc} {rebuild}") from exc
    mask = cv2.imread(str(folder / MASK), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise AvatarError(f"avatar {name!r}: cannot read {folder / MASK} {rebuild}")
    avatar = Avatar(name, folder, manifest, points.astype(np.float32), mask)
    count = len(avatar.sources())
    if count != manifest.frames or points.shape[0] != manifest.frames:
        raise AvatarError(
            f"avatar {name!r}: the manifest lists {manifest.frames} frame(s) but the folder has {count} "
            f"picture(s) and {points.shape[0]} landmark set(s) {rebuild}"
        )
    return avatar

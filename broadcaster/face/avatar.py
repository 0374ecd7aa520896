"""Avatar assets on disk: ``avatars/NAME/avatar.json`` plus a photo or a folder of video frames."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

MANIFEST = "avatar.json"


class AvatarError(Exception):
    """An avatar that is missing or unreadable; the message says which and what to do."""


@dataclass(frozen=True)
class AvatarManifest:
    """What an avatar folder holds. ``face`` is (x, y, w, h) in source pixels, when one was found."""

    kind: Literal["photo", "video"]
    size: tuple[int, int]
    fps: float = 25.0
    face: tuple[int, int, int, int] | None = None
    source: str = ""

    def to_json(self) -> str:
        """The manifest as written to disk."""
        return json.dumps(
            {
                "version": 1,
                "kind": self.kind,
                "size": list(self.size),
                "fps": self.fps,
                "face": list(self.face) if self.face else None,
                "source": self.source,
            },
            indent=2,
        )


@dataclass(frozen=True)
class Avatar:
    """A loaded avatar: BGR images (one for a photo, the loop's frames for a video)."""

    name: str
    manifest: AvatarManifest
    images: tuple[np.ndarray, ...]


def avatar_dir(root: Path, name: str) -> Path:
    """Where avatar ``name`` lives."""
    return root / name


def load_avatar(root: Path, name: str) -> Avatar:
    """Load avatar ``name`` from ``root``; AvatarError says precisely what is missing."""
    folder = avatar_dir(root, name)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise AvatarError(
            f"avatar {name!r} not found: {manifest_path} does not exist "
            f"(build one with: python -m broadcaster avatar build PHOTO_OR_VIDEO --name {name})"
        )
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest = AvatarManifest(
            kind=raw["kind"],
            size=(int(raw["size"][0]), int(raw["size"][1])),
            fps=float(raw.get("fps", 25)),
            face=tuple(raw["face"]) if raw.get("face") else None,
            source=str(raw.get("source", "")),
        )
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise AvatarError(f"avatar {name!r}: {manifest_path} is not a valid manifest: {exc}") from exc
    if manifest.kind == "photo":
        paths = [folder / "photo.png"]
    elif manifest.kind == "video":
        paths = sorted((folder / "frames").glob("*.jpg"))
        if len(paths) < 2:
            raise AvatarError(
                f"avatar {name!r}: a video avatar needs at least 2 frames in {folder / 'frames'}"
            )
    else:
        raise AvatarError(f"avatar {name!r}: kind must be 'photo' or 'video', not {manifest.kind!r}")
    images = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise AvatarError(f"avatar {name!r}: cannot read {path}")
        images.append(image)
    return Avatar(name, manifest, tuple(images))

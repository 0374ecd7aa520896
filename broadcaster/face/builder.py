"""`avatar build`: turn a photo, a video or a folder of frames into an avatar folder."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np

from broadcaster.face.avatar import MANIFEST, AvatarError, AvatarManifest, avatar_dir

log = logging.getLogger(__name__)

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
MAX_HEIGHT = 1080


def _fit(image: np.ndarray, max_height: int = MAX_HEIGHT) -> np.ndarray:
    """Scale down to at most ``max_height`` rows, with even sides (I420 needs them)."""
    h, w = image.shape[:2]
    scale = min(1.0, max_height / h)
    size = (max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2))
    if size == (w, h):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def find_face(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """The largest frontal face (x, y, w, h), by OpenCV's Haar cascade; None when there is none."""
    cascades = Path(cv2.data.haarcascades)  # type: ignore[attr-defined]
    cascade = cv2.CascadeClassifier(str(cascades / "haarcascade_frontalface_default.xml"))
    gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    min_side = max(24, min(gray.shape) // 10)
    faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=6, minSize=(min_side, min_side))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: int(f[2]) * int(f[3]))
    return int(x), int(y), int(w), int(h)


def _video_frames(source: Path, max_seconds: float) -> tuple[list[np.ndarray], float]:
    with av.open(str(source)) as container:
        if not container.streams.video:
            raise AvatarError(f"{source}: no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        frames = []
        for frame in container.decode(stream):
            frames.append(_fit(frame.to_ndarray(format="bgr24")))
            if len(frames) >= max_seconds * fps:
                break
    return frames, fps


def _folder_frames(source: Path, max_frames: int) -> list[np.ndarray]:
    paths = sorted(p for p in source.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)[:max_frames]
    frames = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise AvatarError(f"{path}: not a readable image")
        frames.append(_fit(image))
    return frames


def build_avatar(source: Path, name: str, root: Path, fps: float = 25.0, max_seconds: float = 20.0) -> Path:
    """Build avatar ``name`` under ``root`` from ``source``; returns the avatar folder."""
    if not source.exists():
        raise AvatarError(f"{source}: no such file or folder")
    kind: Literal["photo", "video"]
    if source.is_dir():
        frames, kind = _folder_frames(source, int(max_seconds * fps)), "video"
    elif source.suffix.lower() in PHOTO_SUFFIXES:
        image = cv2.imread(str(source), cv2.IMREAD_COLOR)
        if image is None:
            raise AvatarError(f"{source}: not a readable image")
        frames, kind = [_fit(image)], "photo"
    else:
        frames, fps = _video_frames(source, max_seconds)
        kind = "video"
    if kind == "video" and len(frames) < 2:
        raise AvatarError(f"{source}: a video avatar needs at least 2 frames, found {len(frames)}")
    if any(f.shape != frames[0].shape for f in frames):
        raise AvatarError(f"{source}: frames differ in size")
    h, w = frames[0].shape[:2]
    manifest = AvatarManifest(kind=kind, size=(w, h), fps=fps, face=find_face(frames[0]), source=source.name)
    folder = avatar_dir(root, name)
    staging = folder.with_name(f".{name}.building")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if kind == "photo":
        cv2.imwrite(str(staging / "photo.png"), frames[0])
    else:
        (staging / "frames").mkdir()
        for i, frame in enumerate(frames):
            cv2.imwrite(str(staging / "frames" / f"{i:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 94])
    (staging / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    log.info(
        "avatar %r built in %s: %s %dx%d, %d frame(s), face %s",
        name,
        folder,
        kind,
        w,
        h,
        len(frames),
        manifest.face or "not found",
    )
    return folder

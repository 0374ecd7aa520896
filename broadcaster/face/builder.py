"""`avatar build`: turn a photo, a video or a folder of frames into an avatar folder.

Every frame gets face-mesh landmarks. In a video they are tracked, frames where no face is found are
filled by interpolating their neighbours (and listed in the manifest), and the whole track is smoothed
over time so the mouth region does not jitter. The build writes into a staging folder and renames it at
the end, so a failed build never leaves half an avatar.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import av
import cv2
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from broadcaster import __version__
from broadcaster.face import landmarks as lm
from broadcaster.face.avatar import (
    LANDMARKS,
    MANIFEST,
    MASK,
    AvatarError,
    AvatarKind,
    AvatarManifest,
    avatar_dir,
)
from broadcaster.face.mouth import geometry, mask_image

log = logging.getLogger(__name__)

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
MAX_HEIGHT = 1080
MIN_SIDE = 160
MIN_FACE = 80


def _fit(image: np.ndarray, max_height: int = MAX_HEIGHT) -> np.ndarray:
    """Scale down to at most ``max_height`` rows, with even sides (I420 needs them)."""
    h, w = image.shape[:2]
    scale = min(1.0, max_height / h)
    size = (max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2))
    if size == (w, h):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise AvatarError(f"{path}: not a readable image")
    return image


def _video_frames(source: Path, max_seconds: float) -> tuple[list[np.ndarray], float]:
    try:
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
    except av.error.FFmpegError as exc:
        raise AvatarError(f"{source}: not a readable photo or video ({exc})") from exc
    return frames, fps


def _read_source(source: Path, fps: float, max_seconds: float) -> tuple[list[np.ndarray], AvatarKind, float]:
    if not source.exists():
        raise AvatarError(f"{source}: no such file or folder")
    if source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        frames = [_fit(_read_image(p)) for p in paths[: int(max_seconds * fps)]]
        return frames, "video", fps
    if source.suffix.lower() in PHOTO_SUFFIXES:
        return [_fit(_read_image(source))], "photo", fps
    frames, fps = _video_frames(source, max_seconds)
    return frames, "video", fps


def _tracked(frames: list[np.ndarray], tracking: bool) -> Iterator[np.ndarray | None]:
    with (
        lm.FaceLandmarker(tracking=tracking) as finder,
        Progress(
            TextColumn("finding the face"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
            disable=not tracking,
        ) as progress,
    ):
        task = progress.add_task("landmarks", total=len(frames))
        for frame in frames:
            yield finder.detect(frame)
            progress.advance(task)


def _fill_gaps(found: list[np.ndarray | None]) -> tuple[np.ndarray, list[int]]:
    """Interpolate frames without a face from their nearest neighbours; returns points and the gaps."""
    missing = [i for i, p in enumerate(found) if p is None]
    known = [i for i, p in enumerate(found) if p is not None]
    points = np.zeros((len(found), lm.POINTS, 2), np.float32)
    for i in known:
        points[i] = found[i]
    if missing:
        flat = points.reshape(len(found), -1)
        for column in range(flat.shape[1]):
            flat[missing, column] = np.interp(missing, known, flat[known, column])
    return points, missing


def _smooth(points: np.ndarray, sigma_frames: float = 1.0) -> np.ndarray:
    """Gaussian smoothing along time (edges reflected), so tracked points do not shimmer."""
    if len(points) < 3:
        return points
    flat = points.reshape(len(points), -1)
    smoothed = cv2.GaussianBlur(flat, (1, 5), sigmaX=0, sigmaY=sigma_frames, borderType=cv2.BORDER_REFLECT)
    return smoothed.reshape(points.shape).astype(np.float32)


def build_avatar(source: Path, name: str, root: Path, fps: float = 25.0, max_seconds: float = 20.0) -> Path:
    """Build avatar ``name`` under ``root`` from ``source``; returns the avatar folder."""
    frames, kind, fps = _read_source(source, fps, max_seconds)
    if kind == "video" and len(frames) < 2:
        raise AvatarError(f"{source}: a video avatar needs at least 2 frames, found {len(frames)}")
    if any(f.shape != frames[0].shape for f in frames):
        raise AvatarError(f"{source}: frames differ in size")
    h, w = frames[0].shape[:2]
    if min(w, h) < MIN_SIDE:
        raise AvatarError(f"{source}: {w}x{h} is too small; an avatar needs at least {MIN_SIDE} px a side")
    found = list(_tracked(frames, tracking=kind == "video"))
    if all(p is None for p in found):
        raise AvatarError(
            f"{source}: no face found; use a well-lit, front-facing photo or video of one person"
        )
    points, missing = _fill_gaps(found)
    if kind == "video":
        points = _smooth(points)
    face = lm.box_of(points[0])
    if face[3] < MIN_FACE:
        raise AvatarError(
            f"{source}: the face is {face[3]} px tall; lip-sync needs at least {MIN_FACE} px "
            "(use a closer or larger picture)"
        )
    if missing:
        log.warning(
            "%s: no face in %d of %d frames (%s); their landmarks were interpolated",
            source,
            len(missing),
            len(frames),
            ", ".join(str(i) for i in missing[:10]) + (" ..." if len(missing) > 10 else ""),
        )
    reference = geometry(points[0], (w, h))
    manifest = AvatarManifest(
        kind=kind,
        size=(w, h),
        fps=fps,
        frames=len(frames),
        face=face,
        mouth=reference.region,
        no_face_frames=tuple(missing),
        source=source.name,
        detector=lm.detector_version(),
        built_by=f"broadcaster {__version__}",
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
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
    np.save(staging / LANDMARKS, points)
    cv2.imwrite(str(staging / MASK), mask_image(reference))
    (staging / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    log.info(
        "avatar %r built in %s: %s %dx%d, %d frame(s), face at %s, mouth region %s",
        name,
        folder,
        kind,
        w,
        h,
        len(frames),
        face,
        reference.region,
    )
    return folder

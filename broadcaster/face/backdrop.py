"""The program's background: a colour, a picture, or a looping video.

A video is decoded once at start (PyAV) into I420 frames at the program's size and frame rate, within a
memory cap, and loops forever: wrapping, with its end dissolved into its start so the loop has no seam,
or ping-pong. The picture for time t is then a lookup; nothing is decoded while on air.
"""

from __future__ import annotations

import logging
from pathlib import Path

import av
import cv2
import numpy as np

from broadcaster.face.i420 import from_bgr, planes
from broadcaster.face.idle import VideoLoop
from broadcaster.face.look import BackgroundVideoConfig

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".gif")


def _cover(source: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """The size that ``source`` (w, h) scales to so that it covers ``size`` (multiples of 4: I420 rows)."""
    (sw, sh), (w, h) = source, size
    scale = max(w / sw, h / sh)
    return max(w, round(sw * scale / 4) * 4), max(h, round(sh * scale / 4) * 4)


def make_background(size: tuple[int, int], spec: str, base_dir: Path) -> np.ndarray:
    """A BGR canvas: a #rrggbb colour, or an image scaled to cover the canvas and centre-cropped."""
    w, h = size
    if spec.startswith("#"):
        r, g, b = (int(spec[i : i + 2], 16) for i in (1, 3, 5))
        return np.full((h, w, 3), (b, g, r), np.uint8)
    path = Path(spec) if Path(spec).is_absolute() else base_dir / spec
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(
            f"program.background = {spec!r}: not a #rrggbb colour nor a readable image at {path}"
        )
    resized = cv2.resize(image, _cover((image.shape[1], image.shape[0]), size), interpolation=cv2.INTER_AREA)
    y0, x0 = (resized.shape[0] - h) // 2, (resized.shape[1] - w) // 2
    return np.ascontiguousarray(resized[y0 : y0 + h, x0 : x0 + w])


def _crop(picture: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The centre of an I420 picture at ``size`` (even offsets, so the chroma planes line up)."""
    w, h = size
    rows, cw = picture.shape
    ch = rows * 2 // 3
    x0, y0 = (cw - w) // 4 * 2, (ch - h) // 4 * 2
    out = np.empty((h * 3 // 2, w), np.uint8)
    for dst, src, div in zip(planes(out), planes(picture), (1, 2, 2), strict=True):
        dst[:] = src[y0 // div : (y0 + h) // div, x0 // div : (x0 + w) // div]
    return out


def _scaled(frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    cover = _cover((frame.width, frame.height), size)
    return _crop(frame.reformat(width=cover[0], height=cover[1], format="yuv420p").to_ndarray(), size)


def decode_video(path: Path, size: tuple[int, int], fps: float, max_frames: int) -> np.ndarray:
    """Frames of a video at ``size`` (covered, centre-cropped) and ``fps``, I420, at most ``max_frames``.

    Frame k shows the source frame on screen at time k / fps: source frames are held or dropped as
    the two rates require, and only those shown are scaled.
    """
    frames: list[np.ndarray] = []
    held: av.VideoFrame | None = None
    held_picture: np.ndarray | None = None

    def hold_until(until: float) -> None:
        nonlocal held_picture
        while held is not None and len(frames) < max_frames and (len(frames) + 0.5) / fps < until:
            if held_picture is None:
                held_picture = _scaled(held, size)
            frames.append(held_picture)

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or fps)
        start: float | None = None
        end = 0.0
        for count, frame in enumerate(container.decode(stream)):
            ts = frame.time if frame.time is not None else count / rate
            start = ts if start is None else start
            hold_until(ts - start)
            if len(frames) >= max_frames:
                break
            held, held_picture = frame, None
            end = ts - start + 1.0 / rate
        else:
            hold_until(end)
            if held is not None and not frames:
                frames.append(_scaled(held, size))
    if not frames:
        raise ValueError(f"{path}: no video frames")
    return np.stack(frames)


def seamless(frames: np.ndarray, overlap: int) -> np.ndarray:
    """A wrapping loop without a jump: the last ``overlap`` frames dissolve into the first ones.

    The result is ``overlap`` frames shorter; its frame j < overlap mixes source frames n - overlap + j
    and j, so it follows its last frame (source n - overlap - 1) as smoothly as its own frames do.
    """
    n = len(frames)
    overlap = min(overlap, n // 3)
    if overlap <= 0:
        return frames
    out = frames[: n - overlap].copy()
    for j in range(overlap):
        weight = (j + 1) / (overlap + 1)
        out[j] = cv2.addWeighted(frames[j], weight, frames[n - overlap + j], 1.0 - weight, 0.0)
    return out


class Backdrop:
    """The background picture for any program time: I420 frames, one for a still background."""

    def __init__(self, frames: np.ndarray, fps: float = 25.0, loop: str = "wrap") -> None:
        if frames.ndim != 3 or not len(frames):
            raise ValueError("a backdrop is a non-empty stack of I420 frames")
        frames.setflags(write=False)
        self.frames = frames
        self.fps = fps
        self._pingpong = VideoLoop(len(frames), fps) if loop == "pingpong" and len(frames) > 1 else None

    @classmethod
    def still(cls, bgr: np.ndarray) -> Backdrop:
        """A still background from a BGR picture."""
        return cls(from_bgr(bgr)[None])

    @property
    def size(self) -> tuple[int, int]:
        """Width and height in pixels."""
        return self.frames.shape[2], self.frames.shape[1] * 2 // 3

    def picture(self, t: float) -> np.ndarray:
        """The background at program time t (read-only; copy it to draw on it)."""
        n = len(self.frames)
        if n == 1:
            return self.frames[0]
        if self._pingpong is not None:
            return self.frames[self._pingpong.index(t)]
        return self.frames[round(t * self.fps) % n]


def make_backdrop(
    size: tuple[int, int], spec: str, base_dir: Path, fps: float, cfg: BackgroundVideoConfig
) -> Backdrop:
    """The backdrop for ``program.background``: a colour, a picture, or a video (by its suffix)."""
    path = Path(spec) if Path(spec).is_absolute() else base_dir / spec
    if spec.startswith("#") or path.suffix.lower() not in VIDEO_SUFFIXES:
        return Backdrop.still(make_background(size, spec, base_dir))
    if not path.is_file():
        raise ValueError(f"program.background = {spec!r}: no such video file ({path})")
    frame_bytes = size[0] * size[1] * 3 // 2
    max_frames = max(1, min(round(cfg.max_seconds * fps), cfg.max_mb * 2**20 // frame_bytes))
    try:
        frames = decode_video(path, size, fps, max_frames)
    except (av.FFmpegError, ValueError, IndexError) as exc:
        raise ValueError(f"program.background = {spec!r}: cannot decode the video {path}: {exc}") from exc
    if cfg.loop == "wrap" and cfg.crossfade_s > 0:
        frames = seamless(frames, round(cfg.crossfade_s * fps))
    capped = " (capped: program.background_video.max_seconds / max_mb)" if len(frames) >= max_frames else ""
    log.info(
        "background video %s: %d frames (%.1f s) at %dx%d, %.0f MB in memory, %s loop%s",
        path,
        len(frames),
        len(frames) / fps,
        *size,
        frames.nbytes / 2**20,
        cfg.loop,
        capped,
    )
    return Backdrop(frames, fps, cfg.loop)

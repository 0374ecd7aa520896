"""The dashboard's live view: a tick sink that turns the program into small JPEGs and mono PCM.

It costs nothing while no console watches (``hub.wants("preview")``). While one does, every Nth tick's
picture (``preview_fps``) and the ticks' sound go to a worker thread, which scales and JPEG-encodes the
picture once for all viewers and downmixes the sound; both are published on the hub's ``preview`` topic
as binary payloads with the header of ``protocol.preview_header``. ``offer`` never blocks (invariant 2):
when the worker lags, pictures are dropped and counted.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from broadcaster.control.hub import EventHub
from broadcaster.control.protocol import JPEG_MAGIC, PCM_MAGIC, preview_header
from broadcaster.control.settings import ControlConfig
from broadcaster.stream.tick import Tick

log = logging.getLogger(__name__)

MAX_PICTURES_PENDING = 2
QUEUE_SIZE = 16


@dataclass
class PreviewStats:
    """Counters of the preview (written by the render and preview threads, read by /metrics)."""

    frames: int = 0
    frames_dropped: int = 0
    audio_chunks: int = 0
    audio_dropped: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        """A plain dict."""
        return vars(self).copy()


@dataclass(frozen=True, slots=True)
class _Picture:
    k: int
    video: np.ndarray


@dataclass(frozen=True, slots=True)
class _Sound:
    k: int
    chunks: tuple[np.ndarray, ...]


class PreviewSink:
    """A ``TickSink`` for the dashboard; ``start`` and ``close`` bracket its worker thread."""

    def __init__(self, hub: EventHub, cfg: ControlConfig, fps: int, sample_rate: int = 48000) -> None:
        self.hub = hub
        self.cfg = cfg
        self.stats = PreviewStats()
        self.every = max(1, round(fps / cfg.preview_fps))
        self.sample_rate = sample_rate
        self._chunk_samples = sample_rate * cfg.preview_audio_chunk_ms // 1000
        self._sound: list[np.ndarray] = []
        self._sound_k = 0
        self._sound_samples = 0
        self._pictures_pending = 0
        self._lock = threading.Lock()
        self._jobs: queue.Queue[_Picture | _Sound | None] = queue.Queue(QUEUE_SIZE)
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="preview", daemon=True)

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def offer(self, tick: Tick) -> bool:
        """Take the tick if a console watches; never blocks. False when its picture had to be dropped."""
        if self._closed or not self.hub.wants("preview"):
            self._sound.clear()
            self._sound_samples = 0
            return True
        taken = True
        if self.cfg.preview_audio:
            self._collect_sound(tick)
        if tick.k % self.every == 0:
            with self._lock:
                busy = self._pictures_pending >= MAX_PICTURES_PENDING
                if not busy:
                    self._pictures_pending += 1
            taken = not busy and self._put(_Picture(tick.k, tick.video))
            if not taken:
                if not busy:
                    with self._lock:
                        self._pictures_pending -= 1
                self.stats.frames_dropped += 1
        return taken

    def _collect_sound(self, tick: Tick) -> None:
        if not self._sound:
            self._sound_k = tick.k
        self._sound.append(tick.audio)
        self._sound_samples += len(tick.audio)
        if self._sound_samples >= self._chunk_samples:
            sound = _Sound(self._sound_k, tuple(self._sound))
            self._sound.clear()
            self._sound_samples = 0
            if not self._put(sound):
                self.stats.audio_dropped += 1

    def _put(self, job: _Picture | _Sound) -> bool:
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            return False
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking ticks and end the worker (what is queued is dropped)."""
        self._closed = True
        while True:  # make room for the end marker without waiting on the worker
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
        self._jobs.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                if isinstance(job, _Picture):
                    payload = self.encode_picture(job.k, job.video)
                    self.stats.frames += 1
                else:
                    payload = self.encode_sound(job.k, job.chunks)
                    self.stats.audio_chunks += 1
                self.hub.publish_threadsafe("preview", payload)
            except Exception:
                self.stats.errors += 1
                if self.stats.errors <= 3 or self.stats.errors % 1000 == 0:
                    log.exception("preview: could not encode tick %d (%d errors)", job.k, self.stats.errors)
            finally:
                if isinstance(job, _Picture):
                    with self._lock:
                        self._pictures_pending -= 1

    def encode_picture(self, k: int, video: np.ndarray) -> bytes:
        """An I420 picture as a header and a JPEG ``preview_width`` wide."""
        bgr = cv2.cvtColor(video, cv2.COLOR_YUV2BGR_I420)
        h, w = bgr.shape[:2]
        width = min(self.cfg.preview_width, w)
        height = max(2, round(h * width / w / 2) * 2)
        if (width, height) != (w, h):
            bgr = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
        done, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.preview_quality])
        if not done:
            raise ValueError("JPEG encoding failed")
        return preview_header(JPEG_MAGIC, k, width, height) + jpeg.tobytes()

    def encode_sound(self, k: int, chunks: tuple[np.ndarray, ...]) -> bytes:
        """Ticks' int16 stereo as a header and mono s16le at ``preview_audio_rate``."""
        stereo = np.concatenate(chunks).astype(np.int32)
        mono = stereo.sum(axis=1) if stereo.ndim == 2 else stereo
        mono = mono // (stereo.shape[1] if stereo.ndim == 2 else 1)
        rate = self.cfg.preview_audio_rate
        step = self.sample_rate // rate if rate < self.sample_rate else 1
        if step > 1:
            usable = len(mono) - len(mono) % step
            mono = mono[:usable].reshape(-1, step).mean(axis=1)
        pcm = np.clip(mono, -32768, 32767).astype("<i2")
        return preview_header(PCM_MAGIC, k, self.sample_rate // step, 1) + pcm.tobytes()

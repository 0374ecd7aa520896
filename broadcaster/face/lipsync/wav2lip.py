"""The Wav2Lip backend: a neural mouth for every utterance tick, generated ahead of the clock.

As an utterance is queued its mel windows (one per tick, centred on the tick) go to a worker thread
that runs the network in batches on the avatar's reference face. The utterance is marked ready once
enough of it is generated that, at the measured speed, the rest will be ready before it plays. Each
tick the generated face is pasted into the avatar's face box through the feathered mouth mask, so only
the lower face changes and there is no seam. When a tick's face is not there in time (a slow machine, an
avatar switched mid-utterance, an inference error), that utterance finishes on the classic path and
the metrics say so (invariant 4): audio is never made late.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from broadcaster.config import Config, ConfigError, Wav2LipConfig
from broadcaster.face.i420 import from_bgr, planes
from broadcaster.face.lipsync.base import FaceView, LipSync, ReferenceFace
from broadcaster.face.lipsync.classic import ClassicLipSync
from broadcaster.face.lipsync.mel import SAMPLE_RATE, mel_spectrogram, mel_windows
from broadcaster.face.lipsync.wav2lip_net import FACE_SIZE, CheckpointError, infer, load_wav2lip, pick_device
from broadcaster.stream.clock import Timing
from broadcaster.voice.pcm import resample
from broadcaster.voice.speech_track import SpeechFrame, Utterance

log = logging.getLogger(__name__)

SAFETY = 0.8
FADE = 0.5


@dataclass(eq=False)
class _Job:
    """One utterance's generation: mel windows in, 96x96 faces out (filled by the worker)."""

    utterance: Utterance
    avatar: str
    reference: np.ndarray
    windows: np.ndarray
    faces: list[np.ndarray] = field(default_factory=list)
    failed: bool = False
    degraded: bool = False


class Wav2LipLipSync(LipSync):
    """Wav2Lip with a user's checkpoint; falls back to ``classic`` per utterance when it cannot keep up."""

    name = "wav2lip"

    def __init__(self, cfg: Wav2LipConfig, checkpoint: Path, timing: Timing, classic: ClassicLipSync) -> None:
        super().__init__()
        self.cfg = cfg
        self.timing = timing
        self.classic = classic
        self.device = pick_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        elif self.device.type == "cpu":
            # Leave a core to the render loop and the encoder: they must never wait for inference.
            torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
        self.net = load_wav2lip(checkpoint, self.device)
        self._reference: tuple[str, np.ndarray] | None = None
        self._jobs: dict[int, _Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._rate = 0.0
        self._generated = 0
        self._busy_s = 0.0
        self._fading: tuple[np.ndarray, float] | None = None
        self._current: int | None = None
        self._worker = threading.Thread(target=self._work, name="wav2lip", daemon=True)
        self._worker.start()
        log.info(
            "wav2lip on %s (%s), batch %d, checkpoint %s", self.device, cfg.precision, cfg.batch, checkpoint
        )

    def use_avatar(self, reference: ReferenceFace) -> None:
        """Generate for this avatar's face from now on."""
        face = cv2.resize(reference.crop, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
        with self._lock:
            self._reference = (reference.avatar, face)

    def prepare(self, utterance: Utterance, pcm: np.ndarray) -> None:
        """Analyse for the classic fallback, cut mel windows and queue the generation."""
        self.classic.analyse(utterance, pcm)
        with self._lock:
            reference = self._reference
        if reference is None:
            utterance.ready.set()
            return
        mono16k = (
            resample(pcm, self.timing.sample_rate, SAMPLE_RATE).astype(np.float32).mean(axis=1) / 32768.0
        )
        ticks = -(-utterance.samples // self.timing.samples_per_tick)
        windows = mel_windows(mel_spectrogram(mono16k), self.timing.fps, ticks)
        job = _Job(utterance, reference[0], reference[1], windows)
        with self._lock:
            self._jobs[utterance.id] = job
        self._queue.put(job)

    def _needed(self, total: int) -> int:
        """Frames to have before playing so that, at the measured speed, the rest arrive in time."""
        first = min(total, self.cfg.batch)
        if self._rate <= 0:
            return total
        return max(first, int(np.ceil(total - SAFETY * self._rate * total / self.timing.fps)))

    def _warm_up(self) -> None:
        """One throw-away batch: the first call pays for kernel selection and allocation."""
        began = time.perf_counter()
        n = self.cfg.batch
        infer(
            self.net,
            np.zeros((n, 80, 16), np.float32),
            np.zeros((n, FACE_SIZE, FACE_SIZE, 3), np.uint8),
            self.cfg.precision,
        )
        log.info("wav2lip warmed up in %.1f s", time.perf_counter() - began)

    def _work(self) -> None:
        # Inference yields the CPU to the render loop and the encoder (Linux: niceness is per thread, and
        # the inference pool's threads, started from here, inherit it).
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        try:
            self._warm_up()
        except Exception:
            log.exception("wav2lip warm-up failed")
        while (job := self._queue.get()) is not None:
            try:
                self._generate(job)
            except Exception:
                log.exception(
                    "wav2lip failed on utterance %d; it plays on the classic path", job.utterance.id
                )
                job.failed = True
            finally:
                job.utterance.ready.set()

    def _generate(self, job: _Job) -> None:
        total = len(job.windows)
        for start in range(0, total, self.cfg.batch):
            if job.utterance.done.is_set() or job.degraded:
                return
            windows = job.windows[start : start + self.cfg.batch]
            faces = np.broadcast_to(job.reference, (len(windows), *job.reference.shape))
            began = time.perf_counter()
            drawn = infer(self.net, windows, np.ascontiguousarray(faces), self.cfg.precision)
            spent = time.perf_counter() - began
            job.faces.extend(drawn)
            self._generated += len(drawn)
            self._busy_s += spent
            rate = len(drawn) / max(spent, 1e-6)
            self._rate = rate if self._rate == 0 else 0.7 * self._rate + 0.3 * rate
            if len(job.faces) >= self._needed(total):
                job.utterance.ready.set()

    def draw(self, face: FaceView, speech: SpeechFrame | None) -> None:
        """Paste this tick's generated face, or fall back to classic for the rest of the utterance."""
        job = self._job_for(speech)
        if speech is None or job is None:
            self.classic.draw(face, speech)
            self._fade(face)
            return
        self.classic.follow(self.classic.target(speech))
        generated = job.faces[speech.index] if speech.index < len(job.faces) else None
        if generated is not None and job.avatar == face.avatar and not job.failed and not job.degraded:
            self.stats.frames += 1
            self._paste(face, generated, 1.0)
            self._fading = (generated, 1.0)
            return
        if not job.degraded:
            job.degraded = True
            self.stats.degraded_utterances += 1
            reason = "the avatar changed" if job.avatar != face.avatar else "it was not generated in time"
            log.warning(
                "utterance %d: classic lip-sync from tick %d on (%s)", job.utterance.id, speech.index, reason
            )
        self.stats.degraded_frames += 1
        self._fading = None
        self.classic.draw(face, speech)

    def _job_for(self, speech: SpeechFrame | None) -> _Job | None:
        if speech is None:
            return None
        with self._lock:
            job = self._jobs.get(speech.utterance.id)
            if speech.utterance.id != self._current:
                self._current = speech.utterance.id
                self.stats.utterances += 1
                for old in [
                    k for k, j in self._jobs.items() if j.utterance.done.is_set() and k != self._current
                ]:
                    del self._jobs[old]
        return job

    def _fade(self, face: FaceView) -> None:
        """After speech, let the last generated mouth melt back into the avatar over a few ticks."""
        if self._fading is None:
            return
        generated, alpha = self._fading
        alpha *= FADE
        self._fading = (generated, alpha) if alpha > 0.05 else None
        self._paste(face, generated, alpha)

    def _paste(self, face: FaceView, generated: np.ndarray, alpha: float) -> None:
        """Blend a generated 96x96 face into the picture's face box, through the mouth mask."""
        fx, fy, fw, fh = face.mouth.face_box
        rx, ry, rw, rh = face.mouth.region
        x0, y0 = max(fx, rx), max(fy, ry)
        x1, y1 = min(fx + fw, rx + rw), min(fy + fh, ry + rh)
        y1 = y0 + (y1 - y0) // 4 * 4  # whole rows of both chroma planes in the I420 patch
        if x1 - x0 < 4 or y1 - y0 < 4:
            return
        scaled = cv2.resize(generated, (fw, fh), interpolation=cv2.INTER_LINEAR)
        patch = from_bgr(np.ascontiguousarray(scaled[y0 - fy : y1 - fy, x0 - fx : x1 - fx]))
        weights = face.mask[y0 - ry : y1 - ry, x0 - rx : x1 - rx] * alpha
        half = cv2.resize(weights, ((x1 - x0) // 2, (y1 - y0) // 2), interpolation=cv2.INTER_AREA)
        for dst, src, div, w in zip(
            planes(face.picture), planes(patch), (1, 2, 2), (weights, half, half), strict=True
        ):
            roi = dst[y0 // div : y1 // div, x0 // div : x1 // div]
            mixed = roi.astype(np.float32) + w * (src.astype(np.float32) - roi)
            np.copyto(roi, np.clip(mixed + 0.5, 0, 255).astype(np.uint8))

    @property
    def rate_fps(self) -> float:
        """Measured generation speed (frames per second of inference)."""
        return self._rate

    def close(self) -> None:
        """Stop the worker after the batch in hand."""
        with self._lock:
            for job in self._jobs.values():
                job.degraded = True
        self._queue.put(None)
        self._worker.join(timeout=30)
        self.stats.extra.update(
            generated=self._generated, inference_fps=round(self._rate, 1), busy_s=round(self._busy_s, 2)
        )


def create(cfg: Config, timing: Timing) -> Wav2LipLipSync:
    """The backend as ``face.lipsync = "wav2lip"`` asks for it; a bad checkpoint is a ConfigError now."""
    settings = cfg.face.wav2lip
    if not settings.checkpoint:
        raise ConfigError(
            "face.wav2lip.checkpoint = '': the wav2lip backend needs the path of a Wav2Lip checkpoint "
            "(wav2lip.pth or wav2lip_gan.pth)"
        )
    path = cfg.resolve(settings.checkpoint)
    classic = ClassicLipSync(cfg.face.classic, timing.sample_rate, timing.fps)
    try:
        return Wav2LipLipSync(settings, path, timing, classic)
    except (CheckpointError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"face.wav2lip: {exc}") from exc

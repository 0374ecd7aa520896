"""The classic lip-sync backend: mouth shapes from timings or audio, drawn by a warp; no model weights.

``prepare`` analyses a whole utterance as it is queued (a few milliseconds per second of speech), so
the shapes are known before the first tick plays, with a tick of anticipation. ``draw`` smooths them
with an attack/release follower (opening is quick, closing a little slower, as lips do) and returns the
mouth to rest smoothly in silence.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

import numpy as np

from broadcaster.config import ClassicConfig, Config
from broadcaster.face.lipsync.base import FaceView, LipSync
from broadcaster.face.lipsync.painter import MouthPainter
from broadcaster.face.lipsync.visemes import (
    REST,
    anticipate,
    loudness,
    shapes_from_audio,
    shapes_from_phonemes,
)
from broadcaster.stream.clock import Timing
from broadcaster.voice.speech_track import SpeechFrame, Utterance

KEEP_UTTERANCES = 64
KEEP_PAINTERS = 8


class ClassicLipSync(LipSync):
    """Visemes from phoneme timings when the TTS gives them, from the spectrum otherwise."""

    name = "classic"

    def __init__(self, cfg: ClassicConfig, sample_rate: int = 48000, fps: int = 25) -> None:
        super().__init__()
        self.cfg = cfg
        self.sample_rate = sample_rate
        self.samples_per_tick = sample_rate // fps
        self.tick_s = 1.0 / fps
        self._attack = 1.0 - math.exp(-self.tick_s / (cfg.attack_ms / 1000))
        self._release = 1.0 - math.exp(-self.tick_s / (cfg.release_ms / 1000))
        self._lock = threading.Lock()
        self._shapes: OrderedDict[int, np.ndarray] = OrderedDict()
        self._painters: OrderedDict[tuple[str, int], MouthPainter] = OrderedDict()
        self._state = np.array(REST, np.float32)
        self._current: int | None = None

    def shapes(self, utterance: Utterance, pcm: np.ndarray) -> np.ndarray:
        """Raw (before smoothing) shapes per tick of an utterance's 48 kHz stereo int16 PCM."""
        mono = pcm.astype(np.float32).mean(axis=1) / 32768.0
        if utterance.phonemes:
            loud = loudness(mono, self.samples_per_tick)
            shapes = shapes_from_phonemes(utterance.phonemes, loud, self.tick_s)
        else:
            shapes = shapes_from_audio(mono, self.sample_rate, self.samples_per_tick)
        return anticipate(shapes)

    def analyse(self, utterance: Utterance, pcm: np.ndarray) -> None:
        """Work out the utterance's shapes and keep them for ``draw``."""
        shapes = self.shapes(utterance, pcm)
        with self._lock:
            self._shapes[utterance.id] = shapes
            while len(self._shapes) > KEEP_UTTERANCES:
                self._shapes.popitem(last=False)

    def prepare(self, utterance: Utterance, pcm: np.ndarray) -> None:
        """Analyse the utterance now; it is ready at once."""
        self.analyse(utterance, pcm)
        utterance.ready.set()

    def target(self, speech: SpeechFrame | None) -> np.ndarray:
        """The shape this tick aims for: the utterance's shape at that tick, or rest."""
        if speech is None:
            return np.array(REST, np.float32)
        with self._lock:
            shapes = self._shapes.get(speech.utterance.id)
        if shapes is None or speech.index >= len(shapes):
            return np.array(REST, np.float32)
        return shapes[speech.index]

    def follow(self, target: np.ndarray) -> np.ndarray:
        """One tick of the attack/release follower; returns the smoothed shape."""
        rate = np.where(target[0] > self._state[0], self._attack, self._release)
        self._state = (self._state + rate * (target - self._state)).astype(np.float32)
        return self._state

    def count(self, speech: SpeechFrame | None) -> None:
        """Count a drawn speaking frame, and a new utterance when one starts."""
        if speech is not None:
            self.stats.frames += 1
            if speech.utterance.id != self._current:
                self._current = speech.utterance.id
                self.stats.utterances += 1

    def draw(self, face: FaceView, speech: SpeechFrame | None) -> None:
        """Smooth towards this tick's shape and draw it (nothing to draw once the mouth is at rest)."""
        self.count(speech)
        shape = self.follow(self.target(speech))
        if shape[0] < 0.005 and abs(shape[1] - 0.5) < 0.005:
            return
        self.painter(face).paint(face.picture, float(shape[0]), float(shape[1]))

    def painter(self, face: FaceView) -> MouthPainter:
        """The painter of this face's mouth geometry (cached: a photo has one, a video one per frame)."""
        key = (face.avatar, face.frame)
        painter = self._painters.get(key)
        if painter is None:
            painter = MouthPainter(face.mouth, self.cfg.jaw_drop, self.cfg.teeth)
            self._painters[key] = painter
            while len(self._painters) > KEEP_PAINTERS:
                self._painters.popitem(last=False)
        else:
            self._painters.move_to_end(key)
        return painter


def create(cfg: Config, timing: Timing) -> ClassicLipSync:
    """The backend as ``face.lipsync = "classic"`` asks for it."""
    return ClassicLipSync(cfg.face.classic, timing.sample_rate, timing.fps)

"""The lip-sync interface every backend implements, and the counters they report.

A backend sees each utterance when it is queued (``prepare``: the whole PCM, plus phoneme timings when
the TTS gave them) and draws the mouth for every program tick (``draw``: the avatar picture of that
tick, its mouth geometry, and which tick of which utterance is playing). Everything in between (analysis,
batching, workers) is the backend's own business, so a new backend plugs in by name without touching
the program or the compositor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from broadcaster.face.mouth import MouthGeometry
from broadcaster.voice.speech_track import SpeechFrame, Utterance


@dataclass
class FaceView:
    """The avatar picture being drawn for one tick (I420, writable) and where its mouth is.

    ``mask`` weights ``mouth.region`` (1 where lip-sync may repaint fully, fading to 0 at the edge).
    ``avatar`` names the avatar on air (a backend that prepared pictures for another one can tell) and
    ``frame`` which of its frames this is (always 0 for a photo).
    """

    picture: np.ndarray
    mouth: MouthGeometry
    mask: np.ndarray
    avatar: str
    frame: int = 0


@dataclass(frozen=True)
class ReferenceFace:
    """The face a neural backend animates: a BGR crop of the avatar's first frame at its drawn size."""

    avatar: str
    crop: np.ndarray
    box: tuple[int, int, int, int]


@dataclass
class LipSyncStats:
    """Counters every backend keeps; written by the render thread and the backend's workers."""

    utterances: int = 0
    frames: int = 0
    degraded_utterances: int = 0
    degraded_frames: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """For the status line and the run summary."""
        return {
            "utterances": self.utterances,
            "frames": self.frames,
            "degraded_utterances": self.degraded_utterances,
            "degraded_frames": self.degraded_frames,
            **self.extra,
        }


class LipSync(ABC):
    """A lip-sync backend, chosen by ``name`` in ``face.lipsync``."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self.stats = LipSyncStats()

    @abstractmethod
    def prepare(self, utterance: Utterance, pcm: np.ndarray) -> None:
        """Called as ``utterance`` is queued, with its 48 kHz stereo int16 PCM.

        Must set ``utterance.ready`` once the mouth can be drawn for it in time (at once, or from a
        worker); the speech track holds the utterance in silence, for a bounded time, until then.
        """

    @abstractmethod
    def draw(self, face: FaceView, speech: SpeechFrame | None) -> None:
        """Draw the mouth for one tick into ``face.picture`` (speech None: silence, mouth at rest)."""

    def use_avatar(self, reference: ReferenceFace) -> None:  # noqa: B027 (optional hook)
        """The avatar on air changed (or was first chosen); backends that animate a face crop it here."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Stop workers and free what the backend holds."""

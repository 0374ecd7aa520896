"""The speech track: utterances queued as 48 kHz stereo PCM, pulled one tick at a time by the program.

Appending is thread-safe and cheap (resampling happens in the caller's thread); pulling never blocks
and returns exact zeros when nothing is queued, so silence between utterances is true digital silence.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from broadcaster.voice.pcm import resample


@dataclass
class Utterance:
    """One piece of speech on the track; ``start_sample`` is set when its first sample is pulled."""

    id: int
    samples: int
    start_sample: int | None = None
    done: threading.Event = field(default_factory=threading.Event)


class SpeechTrack:
    """A queue of utterances that the render loop drains S samples per tick."""

    def __init__(self, sample_rate: int = 48000) -> None:
        self.sample_rate = sample_rate
        self._lock = threading.Lock()
        self._queue: deque[tuple[Utterance, np.ndarray]] = deque()
        self._offset = 0
        self._ids = itertools.count(1)
        self._position = 0
        self.samples_spoken = 0

    def append(self, pcm: np.ndarray, rate: int) -> Utterance:
        """Queue PCM (any rate, mono or stereo, int16 or float) as one utterance after those queued."""
        data = resample(pcm, rate, self.sample_rate)
        utterance = Utterance(next(self._ids), len(data))
        with self._lock:
            if len(data):
                self._queue.append((utterance, data))
            else:
                utterance.done.set()
        return utterance

    @property
    def pending_samples(self) -> int:
        """Samples queued and not yet pulled."""
        with self._lock:
            return sum(len(d) for _, d in self._queue) - self._offset

    def pull(self, n: int) -> tuple[np.ndarray, bool]:
        """The next ``n`` program samples, shape (n, 2), and whether any of them is speech."""
        out = np.zeros((n, 2), np.int16)
        filled = 0
        with self._lock:
            while filled < n and self._queue:
                utterance, data = self._queue[0]
                if utterance.start_sample is None:
                    utterance.start_sample = self._position + filled
                take = min(n - filled, len(data) - self._offset)
                out[filled : filled + take] = data[self._offset : self._offset + take]
                filled += take
                self._offset += take
                if self._offset == len(data):
                    self._queue.popleft()
                    self._offset = 0
                    utterance.done.set()
            self._position += n
            self.samples_spoken += filled
        return out, filled > 0

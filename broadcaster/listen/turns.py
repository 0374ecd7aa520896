"""Turns: where the person at the microphone starts speaking and where they have finished.

The detector frames the 16 kHz stream for its VAD and turns frame probabilities into two events.

Speech has started once voiced frames add up to ``min_speech_ms`` (a cough or a click is shorter),
reported at the first voiced frame so the ASR hears the whole first word. Onset is what barge-in waits
on, so it is confirmed on the frame that completes ``min_speech_ms``, never later. With hysteresis, a
frame at ``threshold - 0.15`` or more counts as voiced once a run has begun, and a run needs one frame
at ``threshold`` to be speech; a run may have up to 100 ms of unvoiced frames in it (the closure of a
stop consonant) before it is dropped.

The turn is over after ``end_of_turn_ms`` of silence, or once it has been speaking for ``max_turn_s``
(a stuck-open mic); after that cut, a new turn waits for ``min_speech_ms`` of quiet first, so a stuck
mic gives one long turn, not one every ``max_turn_s``.

Positions are samples of this stream since it began (or since ``reset``), so the events do not depend on
how the audio was chunked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from broadcaster.listen.settings import TurnConfig
from broadcaster.listen.vad import RATE, Vad

STAY_MARGIN = 0.15  # a run stays voiced down to threshold - this (silero's recommended hysteresis)
GAP_MS = 100  # unvoiced frames tolerated inside a run not yet confirmed (a stop consonant's closure)
RING_S = 1.5  # pre-roll audio kept at least this long


@dataclass(frozen=True)
class SpeechStarted:
    """Speech began at sample ``at`` and was confirmed at ``detected_at``; ``level_db`` is its RMS dBFS."""

    at: int
    detected_at: int
    level_db: float


@dataclass(frozen=True)
class SpeechEnded:
    """The turn's speech ended at sample ``at`` (end of its last voiced frame), known at ``detected_at``."""

    at: int
    detected_at: int
    reason: Literal["silence", "max_turn"]


TurnEvent = SpeechStarted | SpeechEnded


def _rms_db(sum_squares: float, count: int) -> float:
    """RMS level in dBFS of ``count`` int16 samples whose squares sum to ``sum_squares`` (-120 floor)."""
    if count <= 0:
        return -120.0
    return 10.0 * math.log10(sum_squares / count / (32768.0 * 32768.0) + 1e-12)


class TurnDetector:
    """Speech start and end events from a stream of 16 kHz int16 mono chunks of any size."""

    def __init__(self, cfg: TurnConfig, vad: Vad) -> None:
        self.cfg = cfg
        self.vad = vad
        self._frame = vad.frame_samples
        self._enter = cfg.threshold
        self._stay = max(0.0, cfg.threshold - STAY_MARGIN)
        self._needed = math.ceil(cfg.min_speech_ms * RATE / 1000 / self._frame)  # voiced frames
        self._gap_frames = max(1, GAP_MS * RATE // 1000 // self._frame)
        self._end_gap = cfg.end_of_turn_ms * RATE // 1000
        self._max_turn = round(cfg.max_turn_s * RATE)
        self._preroll = cfg.preroll_ms * RATE // 1000
        capacity = max(RING_S, (cfg.preroll_ms + cfg.min_speech_ms) / 1000 + 0.5)
        self._ring = np.zeros(round(capacity * RATE), np.int16)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: a new one begins at position 0 (a turn under way ends without an event)."""
        self.vad.reset()
        self._position = 0
        self._pending = np.zeros(0, np.int16)
        self._frames_done = 0  # frames judged; the next one starts at _frames_done * frame
        self._ring_filled = 0
        self._speaking = False
        self._run_start: int | None = None  # first voiced frame of a candidate run
        self._run_voiced = 0
        self._run_gap = 0
        self._run_squares = 0.0
        self._run_entered = False  # a frame of the run reached the threshold
        self._turn_start = 0
        self._last_voiced_end = 0
        self._quiet_needed = 0  # after a max_turn end: unvoiced frames to hear before a new turn

    @property
    def speaking(self) -> bool:
        """Between a ``SpeechStarted`` and its ``SpeechEnded``."""
        return self._speaking

    @property
    def position(self) -> int:
        """Samples pushed since the stream began."""
        return self._position

    def push(self, pcm: np.ndarray) -> list[TurnEvent]:
        """Feed the next chunk; returns the events its frames complete, in order."""
        if pcm.ndim != 1 or pcm.dtype != np.int16:
            raise ValueError(f"turns need int16 mono samples, got {pcm.dtype} of shape {pcm.shape}")
        self._keep(pcm)
        self._position += len(pcm)
        audio = np.concatenate([self._pending, pcm]) if len(self._pending) else pcm
        count = len(audio) // self._frame
        events: list[TurnEvent] = []
        for k in range(count):
            frame = audio[k * self._frame : (k + 1) * self._frame]
            event = self._judge(frame)
            if event is not None:
                events.append(event)
        self._pending = audio[count * self._frame :].copy()
        return events

    def preroll(self, at: int) -> np.ndarray:
        """The audio from ``preroll_ms`` before ``at`` (or the oldest kept) up to now, for the ASR."""
        return self._since(at - self._preroll)

    def recent(self, samples: int) -> np.ndarray:
        """The last ``samples`` pushed (fewer if the ring holds fewer): what the echo guard judges."""
        return self._since(self._position - samples)

    def _since(self, first: int) -> np.ndarray:
        first = max(first, self._position - self._ring_filled, 0)
        length = max(0, self._position - first)
        size = len(self._ring)
        start = first % size
        if start + length <= size:
            return self._ring[start : start + length].copy()
        return np.concatenate([self._ring[start:], self._ring[: start + length - size]])

    def _keep(self, pcm: np.ndarray) -> None:
        size = len(self._ring)
        end = self._position + len(pcm)
        pcm = pcm[-size:]
        offset = (end - len(pcm)) % size
        head = min(len(pcm), size - offset)
        self._ring[offset : offset + head] = pcm[:head]
        self._ring[: len(pcm) - head] = pcm[head:]
        self._ring_filled = min(size, self._ring_filled + len(pcm))

    def _judge(self, frame: np.ndarray) -> TurnEvent | None:
        start = self._frames_done * self._frame
        self._frames_done += 1
        end = start + self._frame
        probability = self.vad.probability(frame)
        if self._speaking:
            return self._in_turn(probability, end)
        if self._quiet_needed:
            self._quiet_needed = self._quiet_needed - 1 if probability < self._stay else self._needed
            return None
        if probability >= self._stay:
            if self._run_start is None:
                self._run_start, self._run_voiced, self._run_gap = start, 0, 0
                self._run_squares, self._run_entered = 0.0, False
            self._run_voiced += 1
            self._run_gap = 0
            self._run_entered = self._run_entered or probability >= self._enter
            samples = frame.astype(np.float64)
            self._run_squares += float(np.dot(samples, samples))
        elif self._run_start is not None:
            self._run_gap += 1
            if self._run_gap > self._gap_frames:
                self._run_start = None
            return None
        if self._run_start is None or self._run_voiced < self._needed or not self._run_entered:
            return None
        at = self._run_start
        self._run_start = None
        self._speaking = True
        self._turn_start = at
        self._last_voiced_end = end
        return SpeechStarted(at, end, _rms_db(self._run_squares, self._run_voiced * self._frame))

    def _in_turn(self, probability: float, end: int) -> SpeechEnded | None:
        if probability >= self._stay:
            self._last_voiced_end = end
        if end - self._last_voiced_end >= self._end_gap:
            self._speaking = False
            return SpeechEnded(self._last_voiced_end, end, "silence")
        if self._last_voiced_end - self._turn_start >= self._max_turn:  # still talking, not trailing off
            self._speaking = False
            self._quiet_needed = self._needed
            return SpeechEnded(self._last_voiced_end, end, "max_turn")
        return None

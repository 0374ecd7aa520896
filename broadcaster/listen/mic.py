"""One console's microphone stream: its audio at the program's rate and at 16 kHz, and its timeline.

The console sends mono PCM at its capture rate in small blocks as they are captured. Each block is
resampled twice: to the program's rate (pass-through puts it on air) and to 16 kHz (the VAD and the
speech recogniser). ``MicTimeline`` places the stream on the program clock: the microphone's sample n
is due on air at program sample ``origin + n``, ``delay`` after it reached this process. Blocks arrive
with network jitter, so ``origin`` is taken from the block that came soonest (the smallest estimate
over the last few seconds), and it moves only when told to (``settle``: while nothing of the
microphone is on air), so a live voice never jumps on the program.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from broadcaster.stream.clock import ProgramClock
from broadcaster.voice.pcm import StreamResampler

ASR_RATE = 16000
WINDOW_S = 5.0  # how far back the soonest block is looked for
SETTLE_SAMPLES_S = 0.005  # origin moves only by more than this


class MicTimeline:
    """Where the microphone's samples land on the program (both counted at the program's rate)."""

    def __init__(self, clock: ProgramClock, delay_s: float) -> None:
        self.clock = clock
        self.delay_s = delay_s
        self.rate = clock.timing.sample_rate
        self.origin: int | None = None
        self._estimates: deque[tuple[float, float]] = deque()  # (wall, origin estimate)
        self.moves = 0

    def observe(self, wall: float, end: int) -> None:
        """A block whose last sample is mic sample ``end - 1`` arrived at ``wall`` (monotonic)."""
        estimate = self.clock.sample_at(wall + self.delay_s) - end
        self._estimates.append((wall, estimate))
        while self._estimates and self._estimates[0][0] < wall - WINDOW_S:
            self._estimates.popleft()
        if self.origin is None:
            self.origin = round(estimate)

    @property
    def latest_wall(self) -> float:
        """When the latest block arrived (monotonic; 0 before any)."""
        return self._estimates[-1][0] if self._estimates else 0.0

    def behind(self) -> float:
        """How far (samples) the latest block came after its place: > 0 once audio was lost upstream."""
        if not self._estimates or self.origin is None:
            return 0.0
        return self._estimates[-1][1] - self.origin

    def settle(self, recent_s: float = WINDOW_S) -> bool:
        """Move ``origin`` to the best estimate of the last ``recent_s`` seconds.

        Only while nothing of the mic is on air, or when audio was lost on the way.
        """
        if not self._estimates or self.origin is None:
            return False
        since = self._estimates[-1][0] - recent_s
        best = round(min(e for wall, e in self._estimates if wall >= since))
        if abs(best - self.origin) <= SETTLE_SAMPLES_S * self.rate:
            return False
        self.origin = best
        self.moves += 1
        return True

    def program_at(self, sample: int) -> int:
        """The program sample at which mic sample ``sample`` is due."""
        assert self.origin is not None, "no block observed yet"
        return self.origin + sample


class MicRing:
    """The last few seconds of the microphone at the program's rate (mono int16), by absolute sample."""

    def __init__(self, seconds: float, rate: int) -> None:
        self._data = np.zeros(round(seconds * rate), np.int16)
        self.end = 0  # samples written since the stream began

    @property
    def start(self) -> int:
        """The oldest sample still kept."""
        return max(0, self.end - len(self._data))

    def write(self, pcm: np.ndarray) -> None:
        """Append samples."""
        size = len(self._data)
        if len(pcm) >= size:
            self.end += len(pcm) - size
            pcm = pcm[-size:]
        at = self.end % size
        first = min(len(pcm), size - at)
        self._data[at : at + first] = pcm[:first]
        self._data[: len(pcm) - first] = pcm[first:]
        self.end += len(pcm)

    def read(self, start: int, end: int) -> np.ndarray:
        """Samples [start, end); what is older than kept (or before 0) reads as silence."""
        out = np.zeros(max(0, end - start), np.int16)
        lo = max(start, self.start)
        hi = min(end, self.end)
        size = len(self._data)
        for pos in range(lo, hi, size):  # at most two pieces in practice
            stop = min(hi, pos + size)
            idx = np.arange(pos, stop) % size
            out[pos - start : stop - start] = self._data[idx]
        return out


class MicStream:
    """A microphone at ``rate``: resampled for the program and the recogniser, placed on the program."""

    def __init__(self, rate: int, clock: ProgramClock, delay_s: float, keep_s: float = 3.0) -> None:
        self.rate = rate
        self.program_rate = clock.timing.sample_rate
        self.timeline = MicTimeline(clock, delay_s)
        self.ring = MicRing(keep_s, self.program_rate)
        self._to_program = StreamResampler(self.program_rate)
        self._to_asr = StreamResampler(ASR_RATE)
        self.received = 0  # samples at ``rate``
        self.blocks = 0

    def push(self, pcm: np.ndarray, wall: float) -> np.ndarray:
        """One block of int16 mono at ``rate``, arrived at ``wall``; returns it at 16 kHz (mono)."""
        self.received += len(pcm)
        self.blocks += 1
        program = self._to_program.push(pcm, self.rate)[:, 0]
        self.ring.write(np.ascontiguousarray(program))
        # the block's end, counted at the program's rate from what was received (not what the
        # resampler let out yet: its filter holds a few samples back)
        self.timeline.observe(wall, self.received * self.program_rate // self.rate)
        return np.ascontiguousarray(self._to_asr.push(pcm, self.rate)[:, 0])

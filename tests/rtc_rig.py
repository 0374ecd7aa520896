"""A live program for the WebRTC tests and the WHIP benchmark: real clock, ticks, the RTC encode.

Each picture carries its tick number as a row of black and white blocks, so whoever decodes it can
tell which tick it is and how long it took to arrive.
"""

from __future__ import annotations

import time
from types import TracebackType

import numpy as np

from broadcaster.stream.clock import ProgramClock, Timing
from broadcaster.stream.program import Program
from broadcaster.stream.rtc.encoder import RtcEncoder
from broadcaster.stream.rtc.runtime import RtcRuntime
from broadcaster.stream.rtc.settings import RtcConfig
from broadcaster.voice.speech_track import SpeechFrame, SpeechTrack

BITS = 20
BLOCK = 16


def stamp(picture: np.ndarray, k: int) -> None:
    """Write ``k`` into the top row of an I420 picture's luma as BITS blocks."""
    for bit in range(BITS):
        value = 235 if (k >> bit) & 1 else 16
        picture[0:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = value


def read_stamp(luma: np.ndarray, scale: float = 1.0) -> int:
    """The tick number stamped on a decoded picture's luma plane (``scale``: its size / the program's)."""
    k = 0
    block = BLOCK * scale
    for bit in range(BITS):
        # the middle half of each block: clear of the edges that scaling and compression blur
        top, left = round(block / 4), round(bit * block + block / 4)
        size = max(1, round(block / 2))
        if float(luma[top : top + size, left : left + size].mean()) > 128:
            k |= 1 << bit
    return k


class StampedFrames:
    """A frame source: a moving gradient with the tick number stamped on it; remembers creation times."""

    def __init__(self, size: tuple[int, int], fps: int) -> None:
        w, h = size
        self.fps = fps
        self.base = np.zeros((h * 3 // 2, w), np.uint8)
        self.base[:h] = (np.arange(w, dtype=np.uint16)[None, :] * 200 // w + 20).astype(np.uint8)
        self.base[h:] = 128
        self.created: dict[int, float] = {}

    def frame(self, t: float, speech: SpeechFrame | None = None) -> np.ndarray:
        k = round(t * self.fps)
        picture = np.roll(self.base, k * 4, axis=1)
        stamp(picture, k)
        self.created[k] = time.monotonic()
        return picture


class RtcRig:
    """Program + RTC encoder + RTC runtime, started and closed together (``with RtcRig() as rig``)."""

    def __init__(
        self,
        size: tuple[int, int] = (640, 360),
        cfg: RtcConfig | None = None,
        lead_s: float = 0.2,
        tone: bool = True,
    ) -> None:
        self.cfg = cfg or RtcConfig(host_addresses=["127.0.0.1"], video_bitrate_kbps=800)
        self.timing = Timing(25)
        self.clock = ProgramClock(self.timing)
        self.frames = StampedFrames(size, self.timing.fps)
        self.speech = SpeechTrack(self.timing.sample_rate, self.timing.samples_per_tick)
        if tone:  # a minute of 440 Hz: audible audio to find at the far end
            t = np.arange(48000 * 60) / 48000
            self.speech.append((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16), 48000)
        self.encoder = RtcEncoder(self.timing, size, self.cfg)
        self.runtime = RtcRuntime(self.cfg)
        self.program = Program(self.clock, self.frames, self.speech, [self.encoder], lead_s=lead_s)

    def __enter__(self) -> RtcRig:
        self.runtime.start()
        self.encoder.start()
        self.program.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.program.stop()
        self.program.join(5)
        self.encoder.close(5)
        self.runtime.close(5)

"""Helpers shared by tests: read a recording back, make test audio."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np


@dataclass
class ReadBack:
    video_codec: str = ""
    audio_codec: str = ""
    video_pts: list[float] = field(default_factory=list)
    keyframes: list[bool] = field(default_factory=list)
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    audio_start: float = 0.0

    @property
    def frames(self) -> int:
        return len(self.video_pts)

    @property
    def audio_seconds(self) -> float:
        return len(self.audio) / 48000


def read_back(path: Path) -> ReadBack:
    """Decode a recording: video timestamps and mono audio (48 kHz float)."""
    result = ReadBack()
    chunks = []
    with av.open(str(path)) as container:
        result.video_codec = container.streams.video[0].codec_context.name
        result.audio_codec = container.streams.audio[0].codec_context.name
        first_audio = None
        for frame in container.decode(video=0, audio=0):
            if isinstance(frame, av.VideoFrame):
                result.video_pts.append(float(frame.pts * frame.time_base))
                result.keyframes.append(frame.key_frame)
            else:
                if first_audio is None:
                    first_audio = float(frame.pts * frame.time_base)
                chunks.append(frame.to_ndarray().mean(axis=0))
        result.audio_start = first_audio or 0.0
    if chunks:
        result.audio = np.concatenate(chunks).astype(np.float32)
    return result


def streamed_wav_header(rate: int, channels: int = 1) -> bytes:
    """A 16-bit WAV header with sizes 0: the wave module writing no frames, as GPT-SoVITS streams it."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"")
    return out.getvalue()


def write_tone_wav(
    path: Path, rate: int, silence_s: float, tone_s: float, tail_s: float, hz: float = 440.0
) -> None:
    """A mono 16-bit WAV: silence, a tone burst, silence."""
    pre = np.zeros(int(silence_s * rate))
    t = np.arange(int(tone_s * rate)) / rate
    tone = 0.5 * np.sin(2 * np.pi * hz * t)
    data = (np.concatenate([pre, tone, np.zeros(int(tail_s * rate))]) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())


def onset(audio: np.ndarray, rate: int = 48000, window_s: float = 0.005, threshold: float = 0.1) -> float:
    """Seconds to the first window whose RMS passes ``threshold``."""
    n = int(window_s * rate)
    frames = audio[: len(audio) // n * n].reshape(-1, n)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    hits = np.flatnonzero(rms > threshold)
    if not len(hits):
        raise AssertionError("no onset found")
    return float(hits[0] * n / rate)

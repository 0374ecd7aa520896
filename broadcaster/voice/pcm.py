"""PCM helpers: read any audio file and resample to the program's format, with libswresample (PyAV)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

PROGRAM_LAYOUT = "stereo"


def as_frames(pcm: np.ndarray) -> np.ndarray:
    """Shape any PCM array to (samples, channels)."""
    if pcm.ndim == 1:
        return pcm.reshape(-1, 1)
    if pcm.ndim != 2 or pcm.shape[1] not in (1, 2):
        raise ValueError(f"PCM must be (samples,) or (samples, 1|2); got shape {pcm.shape}")
    return pcm


def resample(pcm: np.ndarray, rate: int, out_rate: int) -> np.ndarray:
    """Resample int16 or float PCM of 1 or 2 channels to int16 stereo at ``out_rate``; shape (n, 2)."""
    frames = as_frames(pcm)
    if rate == out_rate and frames.dtype == np.int16:
        return frames if frames.shape[1] == 2 else np.repeat(frames, 2, axis=1)
    resampler = StreamResampler(out_rate)
    head = resampler.push(frames, rate)
    return np.concatenate([head, resampler.flush()])


def read_audio(path: Path, out_rate: int = 48000) -> np.ndarray:
    """Decode an audio file (WAV or anything FFmpeg reads) to int16 stereo at ``out_rate``."""
    resampler = av.AudioResampler(format="s16", layout=PROGRAM_LAYOUT, rate=out_rate)
    chunks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{path}: no audio stream")
        for frame in container.decode(audio=0):
            chunks.extend(f.to_ndarray().reshape(-1, 2) for f in resampler.resample(frame))
    chunks.extend(f.to_ndarray().reshape(-1, 2) for f in resampler.resample(None))
    return np.concatenate(chunks) if chunks else np.zeros((0, 2), np.int16)


class StreamResampler:
    """Resample a stream of PCM chunks to int16 stereo at ``out_rate``, keeping the filter's state.

    libswresample holds back the samples its filter still needs at each chunk's edge; they come out
    with the next chunk or at ``flush``, so a stream cut into chunks loses nothing and gains no clicks.
    The input's rate and layout may change between streams, not within one.
    """

    def __init__(self, out_rate: int = 48000) -> None:
        self.out_rate = out_rate
        self._resampler: av.AudioResampler | None = None
        self._key: tuple[int, str, str] | None = None

    def push(self, pcm: np.ndarray, rate: int) -> np.ndarray:
        """Resample one chunk; returns what is ready, shape (n, 2) int16 (n may be 0)."""
        frames = as_frames(pcm)
        if rate <= 0:
            raise ValueError(f"sample rate must be positive, got {rate}")
        if frames.dtype.kind == "f":
            fmt, data = "flt", np.ascontiguousarray(frames, dtype=np.float32)
        else:
            fmt, data = "s16", np.ascontiguousarray(frames, dtype=np.int16)
        layout = "mono" if data.shape[1] == 1 else "stereo"
        if self._key not in (None, (rate, fmt, layout)):
            raise ValueError(f"a stream changed format mid-way: {self._key} -> {(rate, fmt, layout)}")
        self._key = (rate, fmt, layout)
        if not len(data):
            return np.zeros((0, 2), np.int16)
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout=PROGRAM_LAYOUT, rate=self.out_rate)
        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format=fmt, layout=layout)
        frame.sample_rate = rate
        return _joined(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        """The samples still held at the end of the stream; the resampler is then ready for a new one."""
        out = _joined(self._resampler.resample(None)) if self._resampler is not None else _joined([])
        self._resampler = None
        self._key = None
        return out


def _joined(frames: list[av.AudioFrame]) -> np.ndarray:
    chunks = [f.to_ndarray().reshape(-1, 2) for f in frames]
    return np.concatenate(chunks) if chunks else np.zeros((0, 2), np.int16)

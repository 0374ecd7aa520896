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
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    if frames.dtype.kind == "f":
        fmt, data = "flt", np.ascontiguousarray(frames, dtype=np.float32)
    else:
        fmt, data = "s16", np.ascontiguousarray(frames, dtype=np.int16)
    layout = "mono" if data.shape[1] == 1 else "stereo"
    if rate == out_rate and fmt == "s16":
        return data if layout == "stereo" else np.repeat(data, 2, axis=1)
    resampler = av.AudioResampler(format="s16", layout=PROGRAM_LAYOUT, rate=out_rate)
    frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format=fmt, layout=layout)
    frame.sample_rate = rate
    chunks = [f.to_ndarray().reshape(-1, 2) for f in (*resampler.resample(frame), *resampler.resample(None))]
    return np.concatenate(chunks) if chunks else np.zeros((0, 2), np.int16)


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

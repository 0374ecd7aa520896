"""The mel spectrogram Wav2Lip was trained on, and the per-frame windows cut from it.

Wav2Lip's weights only make sense for the exact features of its training code (librosa 0.7/0.8 with
its hparams): 16 kHz audio, pre-emphasis, an 800-point centred STFT every 200 samples (80 columns a
second), 80 Slaney mel bands from 55 to 7600 Hz, decibels normalised to [-4, 4]. This is that pipeline
in numpy alone, checked against librosa in the tests.
"""

from __future__ import annotations

import functools
import math

import numpy as np

SAMPLE_RATE = 16_000
N_FFT = 800
HOP = 200
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS = 4.0
COLUMNS_PER_SECOND = SAMPLE_RATE / HOP
WINDOW_STEPS = 16
"""Mel columns per video frame's window: 0.2 s of audio."""
SILENCE = -MAX_ABS
"""The normalised value of digital silence (the floor of the decibel scale)."""


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    linear = hz / (200.0 / 3)
    logarithmic = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, logarithmic, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    linear = mel * (200.0 / 3)
    logarithmic = 1000.0 * np.exp((math.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, logarithmic, linear)


@functools.cache
def mel_filterbank() -> np.ndarray:
    """Triangular Slaney mel filters, area-normalised, shape (80, 401): librosa's ``filters.mel`` defaults."""
    fft_hz = np.linspace(0.0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
    low, high = _hz_to_mel(np.array([FMIN, FMAX]))
    band_hz = _mel_to_hz(np.linspace(low, high, N_MELS + 2))
    widths = np.diff(band_hz)
    offsets = band_hz[:, None] - fft_hz[None, :]
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (band_hz[2:] - band_hz[:-2]))[:, None]
    weights.flags.writeable = False
    return weights


@functools.cache
def _hann() -> np.ndarray:
    """Periodic Hann window, as ``scipy.signal.get_window('hann', N_FFT)`` gives for an STFT."""
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)
    window.flags.writeable = False
    return window


def mel_spectrogram(pcm16k: np.ndarray) -> np.ndarray:
    """Normalised mel spectrogram (80, 1 + len // 200) float32 of 16 kHz mono audio in [-1, 1]."""
    y = np.asarray(pcm16k, dtype=np.float64).reshape(-1)
    emphasised = y.copy()
    emphasised[1:] -= PREEMPHASIS * y[:-1]
    padded = np.pad(emphasised, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    magnitude = np.abs(np.fft.rfft(frames * _hann(), axis=1)).T
    mel = mel_filterbank() @ magnitude
    db = 20.0 * np.log10(np.maximum(10 ** (MIN_LEVEL_DB / 20), mel)) - REF_LEVEL_DB
    normalised = 2 * MAX_ABS * (db - MIN_LEVEL_DB) / -MIN_LEVEL_DB - MAX_ABS
    return np.clip(normalised, -MAX_ABS, MAX_ABS).astype(np.float32)


def mel_windows(mel: np.ndarray, fps: float, count: int) -> np.ndarray:
    """The (count, 80, 16) mel windows driving video frames 0..count-1 of audio starting at frame 0.

    Aligned as Wav2Lip was trained: frame f is paired with the window starting at frame f - 1, so the
    window's centre falls about one frame after the frame's own mid-time. (Its public inference script
    starts the window at frame f instead, one frame later still.) Columns before the start or past the
    end of ``mel`` read as silence rather than repeating the edge columns: there is no sound beyond the
    utterance, so the mouth should settle instead of holding its last shape.
    """
    if mel.ndim != 2 or mel.shape[0] != N_MELS:
        raise ValueError(f"mel must be ({N_MELS}, T), got {mel.shape}")
    if fps <= 0 or count < 0:
        raise ValueError(f"need fps > 0 and count >= 0, got fps={fps}, count={count}")
    starts = np.floor(COLUMNS_PER_SECOND * (np.arange(count) - 1) / fps).astype(np.int64)
    if count == 0:
        return np.empty((0, N_MELS, WINDOW_STEPS), np.float32)
    before = max(0, -int(starts.min()))
    after = max(0, int(starts.max()) + WINDOW_STEPS - mel.shape[1])
    padded = np.pad(mel.astype(np.float32, copy=False), ((0, 0), (before, after)), constant_values=SILENCE)
    columns = starts[:, None] + before + np.arange(WINDOW_STEPS)
    return np.ascontiguousarray(padded[:, columns].transpose(1, 0, 2))

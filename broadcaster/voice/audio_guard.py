"""What a TTS engine returns is checked before it goes on air: garbage is an engine failure.

A broken engine or proxy can answer with bytes that are not speech: an error page read as PCM, noise,
a wrong sample format, or audio that never ends. Played, that is a blast of noise in a live room. Each
quarter second of a sentence's audio louder than -30 dBFS RMS is judged on three signs speech never
shows at such a level:

- **noise**: a flat spectrum at -20 dBFS or more (spectral flatness over 0.45: white noise reads
  0.49-0.6 even on 40 ms; espeak's loudest fricatives, at +12 dB, read up to 0.32, voiced speech
  under 0.1). Quieter noise passes: a soft fricative can look like it;
- **offset**: a mean far from zero (text read as samples is mostly positive);
- **full scale**: a level over -4 dBFS RMS (speech sits around -20; clipping TTS rarely passes -8).

Within a quarter second, what has come so far is judged on noise once it is 40 ms long: an answer
shorter than that airs unjudged (a click at worst), and level and offset wait for the quarter second.
Float samples outside [-4, 4] or not finite are garbage at once, and a sentence whose audio runs
past ``10 s + 1 s`` per character of its text is cut off as a runaway.
"""

from __future__ import annotations

import math

import numpy as np

WINDOW_S = 0.25
SHORT_S = 0.04  # the least audio judged before it goes on air
AUDIBLE_DBFS = -30.0  # quieter than this, a window is not judged (pauses, breaths)
NOISE_DBFS = -20.0  # quieter than this, a flat spectrum is a soft fricative as likely as noise
FLATNESS_MAX = 0.45
OFFSET_MAX = 0.5  # |mean| / rms
FULL_SCALE_DBFS = -4.0
FLOAT_LIMIT = 4.0
BASE_S = 10.0
PER_CHAR_S = 1.0


class GarbageAudio(Exception):
    """The audio is not speech; the message says why."""


def as_mono_float(pcm: np.ndarray) -> np.ndarray:
    """Samples as mono float64: integers scaled to [-1, 1], floats kept as they are."""
    data = np.asarray(pcm)
    if data.dtype.kind == "i":
        data = data.astype(np.float64) / float(-np.iinfo(data.dtype).min)
    elif data.dtype.kind == "u":
        info = np.iinfo(data.dtype)
        middle = (int(info.max) + 1) / 2
        data = (data.astype(np.float64) - middle) / middle
    elif data.dtype.kind == "f":
        data = data.astype(np.float64)
    else:
        raise GarbageAudio(f"samples of type {data.dtype}")
    if data.ndim == 2:  # (samples, channels), or (channels, samples) from some engines
        data = data.mean(axis=1) if data.shape[1] <= 2 else data.mean(axis=0)
    if data.ndim != 1:
        raise GarbageAudio(f"samples shaped {np.shape(pcm)}")
    return data


def judge(window: np.ndarray, whole: bool = True) -> str | None:
    """Why mono float audio is not speech, or None.

    ``whole``: a full quarter second. A shorter piece (the start of a sentence, judged before its
    first chunk goes on air) is judged on noise only: level and offset swing over a syllable.
    """
    rms = float(np.sqrt(np.mean(window**2)))
    dbfs = 20 * math.log10(rms) if rms > 0 else -200.0
    if dbfs < AUDIBLE_DBFS:
        return None
    if whole and dbfs > FULL_SCALE_DBFS:
        return f"full scale ({dbfs:.1f} dBFS)"
    if whole and abs(float(window.mean())) > OFFSET_MAX * rms:
        return f"a constant offset (mean {float(window.mean()):+.2f})"
    power = np.abs(np.fft.rfft(window * np.hanning(len(window)))) ** 2 + 1e-20
    flatness = float(np.exp(np.mean(np.log(power))) / np.mean(power))
    if dbfs >= NOISE_DBFS and flatness > FLATNESS_MAX:
        return f"noise (spectral flatness {flatness:.2f} at {dbfs:.1f} dBFS)"
    return None


class AudioGuard:
    """Checks one sentence's chunks as they arrive; ``check`` raises ``GarbageAudio``."""

    def __init__(self, text: str) -> None:
        self.chars = len(text)
        self.limit_s = BASE_S + PER_CHAR_S * self.chars
        self.seconds = 0.0
        self._rate = 0
        self._pending = np.zeros(0, np.float64)

    def check(self, pcm: np.ndarray, rate: int) -> None:
        """Judge a chunk (any rate, mono or stereo, int or float)."""
        if not 4000 <= rate <= 384_000:
            raise GarbageAudio(f"a sample rate of {rate} Hz")
        samples = as_mono_float(pcm)
        if samples.dtype.kind == "f" and samples.size:
            if not np.isfinite(samples).all():
                raise GarbageAudio("samples that are not numbers")
            peak = float(np.abs(samples).max())
            if peak > FLOAT_LIMIT:
                raise GarbageAudio(f"float samples up to {peak:.3g} (outside [-1, 1])")
        self.seconds += len(samples) / rate
        if self.seconds > self.limit_s:
            raise GarbageAudio(f"over {self.limit_s:.0f} s of audio for {self.chars} characters")
        if rate != self._rate:
            self._rate, self._pending = rate, np.zeros(0, np.float64)
        data = np.concatenate([self._pending, samples]) if self._pending.size else samples
        size = max(1, round(WINDOW_S * rate))
        whole = len(data) // size * size
        for start in range(0, whole, size):
            why = judge(data[start : start + size])
            if why is not None:
                raise GarbageAudio(why)
        self._pending = data[whole:].copy()
        if len(self._pending) >= SHORT_S * rate and (why := judge(self._pending, whole=False)):
            raise GarbageAudio(why)

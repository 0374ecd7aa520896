"""Speech for the voice-in tests: English sentences spoken by the bundled espeak-ng, at any rate.

Synthesised once per text and rate (a few tens of milliseconds each) and kept for the session.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import wave
from pathlib import Path

import numpy as np

from broadcaster.voice.pcm import StreamResampler
from broadcaster.voice.tts.espeak import EspeakEngine


async def _speak(text: str, voice: str, rate_wpm: int) -> tuple[np.ndarray, int]:
    engine = EspeakEngine(voice=voice, rate_wpm=rate_wpm)
    chunks = [chunk.pcm.reshape(-1) async for chunk in engine.stream(text)]
    return np.concatenate(chunks).astype(np.int16), engine.sample_rate


@functools.cache
def speech(text: str, rate: int = 16000, voice: str = "en-us", rate_wpm: int = 150) -> np.ndarray:
    """``text`` spoken, int16 mono at ``rate`` (read-only: copy before changing it)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # callable from inside an event loop too
        pcm, native = pool.submit(asyncio.run, _speak(text, voice, rate_wpm)).result()
    resampler = StreamResampler(rate)
    stereo = np.concatenate([resampler.push(pcm, native), resampler.flush()])
    mono = stereo[:, 0].copy()
    mono.setflags(write=False)
    return mono


def silence(seconds: float, rate: int = 16000) -> np.ndarray:
    """Digital silence, int16 mono."""
    return np.zeros(round(seconds * rate), np.int16)


def noise(seconds: float, rate: int = 16000, level_dbfs: float = -50.0, seed: int = 1) -> np.ndarray:
    """Quiet white noise (a room's hiss), int16 mono at ``level_dbfs`` RMS."""
    rms = 32768 * 10 ** (level_dbfs / 20)
    values = np.random.default_rng(seed).normal(0.0, rms, round(seconds * rate))
    return np.clip(values, -32768, 32767).astype(np.int16)


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> Path:
    """Save int16 mono PCM as a WAV file."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.ascontiguousarray(pcm, np.int16).tobytes())
    return path

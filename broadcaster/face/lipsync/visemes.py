"""Mouth shapes per program tick, from phoneme timings or from the audio itself.

A shape is (open, wide): ``open`` 0 (lips closed) to 1 (jaw fully dropped), ``wide`` 0 (rounded, "oo")
through 0.5 (neutral) to 1 (spread, "ee"). With phoneme timings from the TTS each tick takes the
duration-weighted shapes of the sounds it overlaps, scaled by loudness. Without them, each tick's audio
is matched by its spectrum, in the spirit of uLipSync's vowel matching: loudness opens the mouth, energy
in the first-formant band (open vowels) opens it further, a high centroid of the second-formant band
spreads the lips (i, e) and a low one rounds them (u, o), and hiss (s, sh, f) nearly closes it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from broadcaster.voice.speech_track import Phoneme

REST = (0.0, 0.5)
# The level that counts as "loud" is the utterance's own 90th percentile, but never below this: a short
# piece of streamed speech that is mostly pause must not open the mouth on its quiet parts.
REFERENCE_FLOOR_DB = -36.0

# Visemes by phoneme symbol (espeak-ng / IPA-ish / ARPAbet-ish spellings share one table).
_GROUPS: tuple[tuple[tuple[float, float], tuple[str, ...]], ...] = (
    ((1.0, 0.6), ("a", "A", "aa", "a:", "ɑ", "ɑː", "æ", "ä", "ah", "aw", "ay", "ai", "au")),
    ((0.65, 0.8), ("e", "E", "eh", "ey", "ɛ", "e:", "eː", "ei", "ae")),
    ((0.4, 1.0), ("i", "I", "iy", "ih", "i:", "iː", "ɪ", "y", "j")),
    ((0.7, 0.25), ("o", "O", "ao", "ow", "oy", "ɔ", "o:", "oː", "ou", "0")),
    ((0.4, 0.1), ("u", "U", "uw", "uh", "u:", "uː", "ʊ", "w", "ɯ")),
    ((0.5, 0.5), ("@", "ə", "ax", "ah0", "3", "ɜ", "er", "ɚ", "V", "ʌ", "h", "hh")),
    ((0.0, 0.5), ("p", "b", "m", "_", "sil", "sp", "pau", "")),
    ((0.12, 0.6), ("f", "v")),
    ((0.2, 0.7), ("s", "z", "S", "Z", "ʃ", "ʒ", "sh", "zh", "ch", "jh", "tS", "dZ", "ts", "ɕ", "ʂ", "x")),
    ((0.25, 0.55), ("T", "D", "θ", "ð", "th", "dh")),
    ((0.3, 0.5), ("t", "d", "n", "l", "k", "g", "N", "ŋ", "ng", "ɡ", "r", "ɹ", "R")),
)
VISEMES: dict[str, tuple[float, float]] = {symbol: shape for shape, symbols in _GROUPS for symbol in symbols}


def viseme(symbol: str) -> tuple[float, float]:
    """The shape of one phoneme symbol; unknown symbols fall back by their first letter, then neutral."""
    key = symbol.strip().strip("ˈˌ'\",;:").lower() if symbol not in VISEMES else symbol
    for candidate in (symbol, key, key.rstrip("0123456789"), key[:2], key[:1]):
        if candidate in VISEMES:
            return VISEMES[candidate]
    return (0.45, 0.5)


def _tick_windows(mono: np.ndarray, samples_per_tick: int) -> np.ndarray:
    """One Hann-weighted window of two ticks centred on each tick, shape (ticks, 2*S)."""
    s = samples_per_tick
    ticks = -(-len(mono) // s)
    padded = np.zeros((ticks + 1) * s + s, np.float32)
    padded[s // 2 : s // 2 + len(mono)] = mono
    index = np.arange(ticks)[:, None] * s + np.arange(2 * s)[None, :]
    return padded[index] * np.hanning(2 * s).astype(np.float32)


def loudness(mono: np.ndarray, samples_per_tick: int) -> np.ndarray:
    """Per tick, 0..1: the level relative to the utterance's own loud parts (robust to TTS volume)."""
    frames = _tick_windows(mono, samples_per_tick)
    db = 10 * np.log10((frames.astype(np.float64) ** 2).mean(axis=1) + 1e-10)
    reference = max(float(np.percentile(db, 90)) if len(db) else -100.0, REFERENCE_FLOOR_DB)
    return np.clip((db - (reference - 32.0)) / 30.0, 0.0, 1.0).astype(np.float32)


def shapes_from_audio(mono: np.ndarray, rate: int, samples_per_tick: int) -> np.ndarray:
    """(ticks, 2) shapes of float mono audio in [-1, 1] at ``rate``."""
    frames = _tick_windows(mono, samples_per_tick)
    spectrum = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(frames.shape[1], 1.0 / rate)

    def band(lo: float, hi: float) -> np.ndarray:
        return np.asarray(spectrum[:, (freqs >= lo) & (freqs < hi)].sum(axis=1)) + 1e-12

    low, mid, high = band(200, 900), band(900, 2500), band(3000, 9000)
    total = low + mid + high
    loud = loudness(mono, samples_per_tick)
    f1 = np.clip((low / total - 0.25) / 0.55, 0.0, 1.0)
    hiss = np.clip((high / total - 0.25) / 0.5, 0.0, 1.0)
    second = (freqs >= 900) & (freqs < 3000)
    centroid = (spectrum[:, second] * freqs[second]).sum(axis=1) / (spectrum[:, second].sum(axis=1) + 1e-12)
    spread = np.clip((centroid - 950.0) / 1250.0, 0.0, 1.0)
    open_ = loud * (0.6 + 0.4 * f1) * (1.0 - 0.65 * hiss)
    wide = 0.5 + (spread - 0.5) * np.minimum(1.0, loud * 2)
    return np.stack([open_, wide], axis=1).astype(np.float32)


def shapes_from_phonemes(phonemes: Sequence[Phoneme], loud: np.ndarray, tick_s: float) -> np.ndarray:
    """(ticks, 2) shapes from timed phonemes; ``loud`` (per tick) scales how far the mouth opens."""
    ticks = len(loud)
    shapes = np.tile(np.array(REST, np.float32), (ticks, 1))
    weights = np.zeros(ticks, np.float32)
    acc = np.zeros((ticks, 2), np.float32)
    for p in phonemes:
        first, last = int(p.start_s / tick_s), min(ticks - 1, int(max(p.start_s, p.end_s - 1e-9) / tick_s))
        shape = np.array(viseme(p.symbol), np.float32)
        for k in range(max(0, first), last + 1):
            overlap = min(p.end_s, (k + 1) * tick_s) - max(p.start_s, k * tick_s)
            if overlap > 0:
                acc[k] += overlap * shape
                weights[k] += overlap
    covered = weights > 0
    shapes[covered] = acc[covered] / weights[covered, None]
    shapes[:, 0] *= 0.45 + 0.55 * loud
    return shapes


def anticipate(shapes: np.ndarray, amount: float = 0.5) -> np.ndarray:
    """Lips move a little before the sound (coarticulation): blend in the next tick's opening."""
    out = shapes.copy()
    if len(shapes) > 1:
        out[:-1, 0] = np.maximum(shapes[:-1, 0], amount * shapes[1:, 0])
    return out

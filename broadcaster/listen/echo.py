"""Echo guard: tells whether the speech the microphone hears is the program coming back from a speaker.

A moderator who listens to the stream on speakers feeds the avatar's own voice back into the mic, late
by the player's buffer and the room (0 to ``echo_max_delay_ms``) and quieter. That must not count as a
barge-in. Echo follows the program's loudness, band by band; a person talking does not, even over the
program. So the guard keeps the program's 10 ms envelope in nine frequency bands for the last few
seconds, indexed by program sample position, and when speech starts it correlates the mic's 10 ms band
log-envelopes with the program's at every delay in range.

Bands, not one envelope: measured on speech, one loudness contour over half a second is too simple a
shape (syllables at a steady level), and another voice matched it at some delay with correlations up to
0.99; in bands the formants must match too. Levels are in dB with each band's mean removed, so the
speaker's volume and the room's colouring do not matter, and both sides are floored at the dynamic
range the mic shows above its own noise. Correlation alone still lets a talker over loud echo through
(the echo shows in the talker's pauses), so a match also needs the program to explain what the mic
hears: someone else's voice makes the mic louder than the program's echo can be.

``add_program`` runs on the render thread once per tick (one small FFT per 10 ms); the matching runs on
the caller's thread once per speech onset.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from broadcaster.listen.settings import BargeInConfig

log = logging.getLogger(__name__)

BIN_MS = 10
MIC_RATE = 16000
HISTORY_MS = 2000  # program envelope kept beyond the longest delay searched
BAND_EDGES_HZ = (100, 300, 600, 1000, 1500, 2200, 3200, 4500, 6000, 7600)  # under the mic's Nyquist
RANGE_DB = 30.0  # at most this much of each band's range below its peak is compared
NOISE_PERCENTILE = 20  # the mic's floor in a band: this percentile of its 10 ms levels in the window
EXCESS_DB = 6.0  # mic this much louder than the program's echo predicts: someone else is talking
GAIN_PERCENTILE = 25  # the echo path gain: this low percentile of mic minus program where the program sounds
RING_MS = 300  # program before the window that may still ring in the room
RELEASE_DB = 1.5  # per 10 ms: how fast a room's echo is allowed to die away (a 400 ms reverberation)
DOUBLE_TALK = 0.15  # that true of this share of what the mic hears: not (only) echo
ONSET_CORRELATION = 0.85  # at a turn's start, a contour this close to the program's is its echo
AUDIBLE_DB = -45.0  # program RMS at or above this (dBFS, 10 ms) is audible
SPEECH_MS = 100  # audible program this long within the span: the program is speaking
FLOOR_DB = -120.0
_FULL_SCALE_SQ = 32768.0 * 32768.0
_EMPTY = np.iinfo(np.int64).min


def _db(power: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(power / _FULL_SCALE_SQ + 1e-12)


@dataclass(frozen=True)
class EchoMatch:
    """The mic against the program at the delay where they match best.

    ``correlation``: normalised correlation of the band log-envelopes (1.0: the same contour);
    ``delay_ms``: that delay; ``excess``: the share of what the mic hears that is louder than the
    program's echo would be (0 for pure echo, most of it when someone talks over the program).
    """

    correlation: float
    delay_ms: int
    excess: float


class _Bands:
    """Band energies of 10 ms frames at one sample rate (Hann-windowed FFT, 100 Hz bins)."""

    def __init__(self, rate: int) -> None:
        self.samples = rate * BIN_MS // 1000
        self._window = np.hanning(self.samples).astype(np.float32)
        freqs = np.fft.rfftfreq(self.samples, 1.0 / rate)
        edges = np.array(BAND_EDGES_HZ)
        band = np.searchsorted(edges, freqs, side="right") - 1
        self._matrix = np.zeros((len(freqs), len(edges) - 1), np.float32)
        inside = (band >= 0) & (band < len(edges) - 1)
        self._matrix[np.nonzero(inside)[0], band[inside]] = 1.0

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(n, samples) float32 frames -> (n, bands) energies."""
        spectrum = np.fft.rfft(frames * self._window, axis=1)
        return (spectrum.real**2 + spectrum.imag**2).astype(np.float32) @ self._matrix


class EchoGuard:
    """The program's recent loudness, and whether mic audio is its echo.

    Positions are program samples at ``rate`` (48 kHz: tick k starts at k * 1920). ``add_program`` is
    meant for one thread (the renderer); the queries may come from any thread.
    """

    def __init__(self, cfg: BargeInConfig, rate: int = 48000) -> None:
        if rate % (1000 // BIN_MS) or rate < 2 * BAND_EDGES_HZ[-1]:
            raise ValueError(f"the program rate must be a multiple of 100 Hz, 15.2 kHz or more; got {rate}")
        self.cfg = cfg
        self.rate = rate
        self._program_bands = _Bands(rate)
        self._mic_bands = _Bands(MIC_RATE)
        self._bin = self._program_bands.samples
        self._max_lag = cfg.echo_max_delay_ms // BIN_MS
        size = (cfg.echo_max_delay_ms + HISTORY_MS) // BIN_MS
        self._power = np.zeros(size, np.float64)  # mean square of each bin
        self._bands = np.zeros((size, len(BAND_EDGES_HZ) - 1), np.float32)
        self._owner = np.full(size, _EMPTY, np.int64)  # which absolute bin each slot holds
        self._carry: np.ndarray = np.zeros(0, np.float32)  # the start of a bin split across two calls
        self._carry_power: np.ndarray = np.zeros(0, np.float32)
        self._carry_end = _EMPTY  # the program position just after the carry
        self._lock = threading.Lock()

    def add_program(self, start: int, pcm: np.ndarray) -> None:
        """Record the loudness of the program audio that begins at program sample ``start``.

        ``pcm`` is int16, mono (n,) or stereo (n, 2); channels are averaged.
        """
        if len(pcm) == 0:
            return
        if pcm.ndim == 2 and pcm.shape[1] == 2:
            left, right = pcm[:, 0].astype(np.float32), pcm[:, 1].astype(np.float32)
            mono = (left + right) * 0.5
            power = (left * left + right * right) * 0.5
        else:
            mono = pcm.reshape(len(pcm), -1)[:, 0].astype(np.float32)
            power = mono * mono
        if start == self._carry_end and len(self._carry):
            carried = len(self._carry)
            mono = np.concatenate([self._carry, mono])
            power = np.concatenate([self._carry_power, power])
            start -= carried
        skip = -start % self._bin  # a bin begun before this call and not carried: dropped
        first = (start + skip) // self._bin
        count = (len(mono) - skip) // self._bin
        used = skip + count * self._bin
        self._carry = mono[used:]
        self._carry_power = power[used:]
        self._carry_end = start + len(mono)
        if count <= 0:
            return
        bands = self._program_bands(mono[skip:used].reshape(count, self._bin))
        levels = power[skip:used].reshape(count, self._bin).mean(axis=1)
        bins = np.arange(first, first + count, dtype=np.int64)
        slots = bins % len(self._owner)
        with self._lock:
            self._owner[slots] = bins
            self._power[slots] = levels
            self._bands[slots] = bands

    def _held(self, first: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean square and band energies of absolute bins [first, stop); bins not held are silent."""
        bins = np.arange(first, stop, dtype=np.int64)
        slots = bins % len(self._owner)
        with self._lock:
            held = self._owner[slots] == bins
            power = np.where(held, self._power[slots], 0.0)
            bands = np.where(held[:, None], self._bands[slots], 0.0)
        return power, bands

    def program_level_db(self, end: int, span_ms: int) -> float:
        """The program's RMS level (dBFS) over the ``span_ms`` before program sample ``end``."""
        stop = end // self._bin
        power, _ = self._held(stop - max(1, span_ms // BIN_MS), stop)
        return max(FLOOR_DB, float(_db(np.array(power.mean()))))

    def speaking(self, end: int, span_ms: int | None = None) -> bool:
        """Whether the program was audible for at least 100 ms of the span before ``end``.

        The span defaults to the longest echo delay: anything played in it may still be reaching the mic.
        """
        span = self.cfg.echo_max_delay_ms if span_ms is None else span_ms
        stop = end // self._bin
        power, _ = self._held(stop - max(1, span // BIN_MS), stop)
        return int((_db(power) >= AUDIBLE_DB).sum()) * BIN_MS >= SPEECH_MS

    def match(self, mic: np.ndarray, end: int) -> EchoMatch:
        """How well ``mic`` matches the program at the best delay (see ``EchoMatch``).

        ``mic`` is 16 kHz int16 mono whose last sample was heard when the program was at ``end``; delays
        0..``echo_max_delay_ms`` are tried, skipping those where the program was not audible.
        """
        if mic.ndim != 1 or mic.dtype != np.int16:
            raise ValueError(f"the mic must be int16 mono at 16 kHz, got {mic.dtype} of shape {mic.shape}")
        mic_bin = self._mic_bands.samples
        count = len(mic) // mic_bin
        if count < 3:
            return EchoMatch(0.0, 0, 1.0)
        frames = mic[len(mic) - count * mic_bin :].astype(np.float32).reshape(count, mic_bin)
        heard = _db(self._mic_bands(frames)).T  # (bands, count)
        # each band keeps the dynamic range the mic shows above its noise, on both sides
        top = heard.max(axis=1, keepdims=True)
        hiss = np.percentile(heard, NOISE_PERCENTILE, axis=1, keepdims=True)
        span = np.minimum(RANGE_DB, top - hiss)
        heard = np.maximum(heard, top - span)
        stop = round(end / self._bin)
        power, bands = self._held(stop - count - self._max_lag, stop)
        # (lags, bands, count); row k: the program k bins (k * 10 ms) before the mic
        played = sliding_window_view(_db(bands), count, axis=0)[::-1]
        played = np.maximum(played, played.max(axis=2, keepdims=True) - span)
        centred_heard = heard - heard.mean(axis=1, keepdims=True)
        centred = played - played.mean(axis=2, keepdims=True)
        dots = np.einsum("lbc,bc->l", centred, centred_heard)
        norms = np.sqrt(np.einsum("lbc,lbc->l", centred, centred) * float((centred_heard**2).sum()))
        scores = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 1e-9)
        audible = sliding_window_view(_db(power) >= AUDIBLE_DB, count)[::-1].sum(axis=1)
        scores[audible * BIN_MS < SPEECH_MS] = 0.0
        best = int(np.argmax(scores))
        if scores[best] <= 0.0:
            return EchoMatch(0.0, 0, 1.0)
        # the program at that delay with up to RING_MS before the window: a room still rings with it
        first = self._max_lag - best
        lead = min(first, RING_MS // BIN_MS)
        program = _db(bands[first - lead : first + count]).T
        program = np.maximum(program, program[:, lead:].max(axis=1, keepdims=True) - span)
        return EchoMatch(float(scores[best]), best * BIN_MS, _excess(heard, program, lead, span, hiss))

    def is_echo(self, mic: np.ndarray, end: int, at_onset: bool = False) -> bool:
        """Whether ``mic`` (the last few hundred ms, 16 kHz) is the program's own audio heard back.

        True when the mic's band loudness follows the program's (correlation at or above
        ``echo_correlation`` at some delay, over a stretch where the program was audible) and the
        program explains nearly all of what the mic hears (no one talking over it). ``at_onset``: the
        window ends where a turn was just confirmed, so it is mostly what came before it, and the
        double-talk test misreads an echo's first syllable; there a contour that follows the program
        closely (``ONSET_CORRELATION``) is echo whatever the excess (a person talking over the program
        breaks the contour).
        """
        found = self.match(mic, end)
        close = at_onset and found.correlation >= ONSET_CORRELATION
        echo = found.correlation >= self.cfg.echo_correlation and (found.excess <= DOUBLE_TALK or close)
        log.debug(
            "echo check: correlation %.2f at %d ms, excess %.2f: %s",
            found.correlation,
            found.delay_ms,
            found.excess,
            "echo" if echo else "not echo",
        )
        return echo


def _excess(heard: np.ndarray, program: np.ndarray, lead: int, span: np.ndarray, hiss: np.ndarray) -> float:
    """The share of the mic's sounding cells louder than the program's echo could make them.

    ``program``: band levels at the matched delay, ``lead`` bins of them before the mic's window. The
    echo path's gain in each band is a low quantile of mic minus program where the program sounds (low,
    because another voice only ever adds energy); the echo the mic would hear is the program plus that
    gain, ringing on in the room after it drops, over the mic's own noise. Cells more than ``EXCESS_DB``
    above that are someone else.
    """
    played = program[:, lead:]
    sounding = played > played.max(axis=1, keepdims=True) - span + 3.0
    sounding[sounding.sum(axis=1) < 3] = True
    path = np.where(sounding, heard - played, np.nan)
    gain = np.nanpercentile(path, GAIN_PERCENTILE, axis=1, keepdims=True)
    # the mic's timing is known to a few ms (capture, network, the timeline's estimate): a cell may hear
    # the program of the bin before or after the one matched
    ringing = program.copy()
    np.maximum(ringing[:, 1:], program[:, :-1], out=ringing[:, 1:])
    np.maximum(ringing[:, :-1], program[:, 1:], out=ringing[:, :-1])
    for k in range(1, ringing.shape[1]):
        np.maximum(ringing[:, k], ringing[:, k - 1] - RELEASE_DB, out=ringing[:, k])
    expected = 10.0 * np.log10(10.0 ** ((ringing[:, lead:] + gain) / 10.0) + 10.0 ** (hiss / 10.0))
    heard_cells = heard > hiss + 3.0
    louder = (heard - expected > EXCESS_DB) & heard_cells
    return float(louder.sum() / max(1, int(heard_cells.sum())))

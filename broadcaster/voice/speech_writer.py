"""One sentence's streamed TTS audio onto the speech track, as it arrives, without gaps or clicks.

TTS engines stream chunks of any rate and size; the track plays utterances that start on tick
boundaries. The writer resamples the stream (keeping the resampler's state across chunks) and queues
it as pieces whose length is a whole number of ticks, so each piece starts exactly where the previous
one ended: the sentence plays continuously while the rest of it is still being synthesised. Samples
short of a whole tick wait for the next chunk, or for ``finish``; none is dropped. The first piece goes
out as soon as ``prebuffer`` samples are ready (lowest latency); later ones are larger (lip-sync sees
more context per piece) unless the track is about to run dry.
"""

from __future__ import annotations

import time

import numpy as np

from broadcaster.voice.pcm import StreamResampler
from broadcaster.voice.speech_track import Phoneme, SpeechTrack, Utterance

PIECE_TICKS = 8
LOW_WATER_TICKS = 3


class SpeechWriter:
    """Feeds one sentence's chunks to ``track``; ``tag`` marks its utterances (to drop them together).

    ``text`` (the sentence) rides on each utterance, for the caption on air.
    """

    def __init__(
        self, track: SpeechTrack, tag: object = None, prebuffer_ms: int = 80, text: str = ""
    ) -> None:
        self.track = track
        self.tag = tag
        self.text = text
        self._tick = track.samples_per_tick
        self._prebuffer = max(self._tick, track.sample_rate * prebuffer_ms // 1000)
        self._resampler = StreamResampler(track.sample_rate)
        self._pending: list[np.ndarray] = []
        self._pending_samples = 0
        self._queued = 0
        self._phonemes: list[Phoneme] = []
        self.utterances: list[Utterance] = []
        self.first_queued_at: float | None = None

    @property
    def samples(self) -> int:
        """Samples queued on the track so far."""
        return self._queued

    def write(self, pcm: np.ndarray, rate: int, phonemes: tuple[Phoneme, ...] = ()) -> None:
        """Add a chunk (timings in seconds from the sentence's start); queues what is ready."""
        self._phonemes.extend(phonemes)
        data = self._resampler.push(pcm, rate)
        if len(data):
            self._pending.append(data)
            self._pending_samples += len(data)
        if not self._queued:
            ready = self._pending_samples >= self._prebuffer
        else:
            starving = self.track.pending_samples < LOW_WATER_TICKS * self._tick
            ready = self._pending_samples >= (self._tick if starving else PIECE_TICKS * self._tick)
        if ready:
            self._emit(self._pending_samples // self._tick * self._tick)

    def finish(self) -> None:
        """The sentence is complete: queue everything left (the last piece may end mid-tick)."""
        tail = self._resampler.flush()
        if len(tail):
            self._pending.append(tail)
            self._pending_samples += len(tail)
        if self._pending_samples:
            self._emit(self._pending_samples)

    def _emit(self, n: int) -> None:
        if n <= 0:
            return
        data = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        piece, rest = data[:n], data[n:]
        self._pending = [rest] if len(rest) else []
        self._pending_samples = len(rest)
        rate = self.track.sample_rate
        start, end = self._queued / rate, (self._queued + n) / rate
        phonemes = tuple(
            Phoneme(max(p.start_s, start) - start, min(p.end_s, end) - start, p.symbol)
            for p in self._phonemes
            if p.start_s < end and p.end_s > start
        )
        self._phonemes = [p for p in self._phonemes if p.end_s > end]
        self.utterances.append(self.track.append(piece, rate, phonemes, tag=self.tag, text=self.text))
        if self.first_queued_at is None:
            self.first_queued_at = time.monotonic()
        self._queued += n

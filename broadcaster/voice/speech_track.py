"""The speech track: utterances queued as 48 kHz stereo PCM, pulled one tick at a time by the program.

Each utterance starts on a tick boundary, so its n-th tick is the same thing for the audio and for the
face drawn with it: lip-sync can prepare mouth pictures per utterance tick before it plays (invariant
5). A lip-sync backend that needs time to prepare holds the utterance back (silence, a bounded number of
ticks) until it is ready; it never makes audio late once it plays. Appending is thread-safe; pulling
never blocks and returns exact zeros when nothing plays.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from broadcaster.voice.pcm import resample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Phoneme:
    """A sound the TTS says (a phoneme or viseme symbol), in seconds from the utterance's start."""

    start_s: float
    end_s: float
    symbol: str


@dataclass(eq=False)
class Utterance:
    """One piece of speech on the track. ``start_sample``/``start_tick`` are set when it starts playing.

    ``ready`` is set by lip-sync when its mouth pictures are prepared far enough ahead; ``held_ticks``
    counts the silent ticks it waited for that. ``tag`` names what it belongs to (a reply, a script
    line) so that can be dropped as a whole; ``text`` is the sentence it speaks (the caption on air);
    ``started_at`` is the monotonic wall time its first tick was pulled; ``cut`` is set when it was
    dropped before it finished.
    """

    id: int
    samples: int
    phonemes: tuple[Phoneme, ...] = ()
    tag: object = None
    text: str = ""
    start_sample: int | None = None
    start_tick: int | None = None
    started_at: float | None = None
    held_ticks: int = 0
    cut: bool = False
    at_sample: int | None = None  # the program sample it must start at (a tick boundary), if placed
    late_samples: int = 0  # samples of a placed utterance skipped because it started late
    done: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True, slots=True)
class SpeechFrame:
    """What is speaking in one tick: the utterance and which of its ticks this is (0 = its first)."""

    utterance: Utterance
    index: int


PrepareHook = Callable[[Utterance, np.ndarray], None]

FADE_SAMPLES = 240
STARTED_TAGS = 256  # how many tags ``started`` remembers


class SpeechTrack:
    """A queue of utterances that the render loop drains one tick of samples at a time."""

    def __init__(
        self,
        sample_rate: int = 48000,
        samples_per_tick: int = 1920,
        max_hold_ticks: int = 25,
        prepare: PrepareHook | None = None,
    ) -> None:
        self.sample_rate = sample_rate
        self.samples_per_tick = samples_per_tick
        self.max_hold_ticks = max_hold_ticks
        self._prepare = prepare
        self._lock = threading.Lock()
        self._queue: deque[tuple[Utterance, np.ndarray]] = deque()
        self._offset = 0
        self._ids = itertools.count(1)
        self._tick = 0
        self.samples_spoken = 0
        self.held_ticks = 0
        self.late_samples = 0  # samples of placed utterances skipped because they came up late
        self._started_tags: OrderedDict[object, None] = OrderedDict()

    def append(
        self,
        pcm: np.ndarray,
        rate: int,
        phonemes: Sequence[Phoneme] = (),
        tag: object = None,
        text: str = "",
        at_sample: int | None = None,
    ) -> Utterance:
        """Queue PCM (any rate, mono or stereo, int16 or float) as one utterance after those queued.

        ``at_sample`` places it on the program: it starts at that sample (a tick boundary) and not
        before, the track staying silent until then; if it comes up late, its first samples are skipped
        so the rest still plays in place (a live voice at a fixed delay).
        """
        if at_sample is not None and at_sample % self.samples_per_tick:
            raise ValueError(f"at_sample {at_sample} is not on a tick boundary")
        data = resample(pcm, rate, self.sample_rate)
        utterance = Utterance(next(self._ids), len(data), tuple(phonemes), tag, text, at_sample=at_sample)
        if not len(data):
            utterance.ready.set()
            utterance.done.set()
            return utterance
        if self._prepare is None:
            utterance.ready.set()
        else:
            try:
                self._prepare(utterance, data)
            except Exception:
                log.exception("lip-sync could not prepare utterance %d; it plays without it", utterance.id)
                utterance.ready.set()
        with self._lock:
            self._queue.append((utterance, data))
        return utterance

    def drop(self, tag: object = None) -> int:
        """Drop queued speech (all of it, or that with ``tag``); returns the samples that will not play.

        An utterance that is playing is cut at the next tick with a short fade, so there is no click;
        the others are removed before they start. Dropped utterances are marked ``cut`` and ``done``.
        """
        return self._drop(lambda u: tag is None or u.tag == tag)

    def drop_utterances(self, utterances: Sequence[Utterance]) -> int:
        """Drop these utterances (those still queued), as ``drop`` does."""
        ids = {u.id for u in utterances}
        return self._drop(lambda u: u.id in ids)

    def _drop(self, match: Callable[[Utterance], bool]) -> int:
        dropped = 0
        with self._lock:
            kept: deque[tuple[Utterance, np.ndarray]] = deque()
            for position, (utterance, data) in enumerate(self._queue):
                if not match(utterance):
                    kept.append((utterance, data))
                    continue
                if position == 0 and self._offset:
                    fade = min(FADE_SAMPLES, len(data) - self._offset)
                    tail = data[self._offset : self._offset + fade].astype(np.float32)
                    tail *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
                    dropped += len(data) - self._offset - fade
                    faded = np.concatenate([data[: self._offset], tail.astype(np.int16)])
                    utterance.cut = True
                    kept.append((utterance, faded))
                    continue
                dropped += len(data)  # not started: the playing one was handled above
                utterance.cut = True
                utterance.ready.set()
                utterance.done.set()
            if self._queue and (not kept or kept[0][0] is not self._queue[0][0]):
                self._offset = 0
            self._queue = kept
        return dropped

    def started(self, tag: object) -> bool:
        """Whether speech tagged ``tag`` began playing (among the last few hundred tags)."""
        with self._lock:
            return tag in self._started_tags

    def remaining(self, utterances: Sequence[Utterance]) -> int:
        """Samples of these utterances not yet pulled (0 once they have all played or were dropped)."""
        ids = {u.id for u in utterances}
        with self._lock:
            total = 0
            for position, (utterance, data) in enumerate(self._queue):
                if utterance.id in ids:
                    total += len(data) - (self._offset if position == 0 else 0)
            return total

    @property
    def next_tick(self) -> int:
        """The tick the next ``pull`` is for (what is queued now can play from there on)."""
        return self._tick

    @property
    def pending_samples(self) -> int:
        """Samples queued and not yet pulled."""
        with self._lock:
            return sum(len(d) for _, d in self._queue) - self._offset

    def pull(self) -> tuple[np.ndarray, SpeechFrame | None]:
        """The next tick's samples, shape (S, 2), and what speaks in it (None: silence)."""
        n = self.samples_per_tick
        out = np.zeros((n, 2), np.int16)
        speaking: SpeechFrame | None = None
        with self._lock:
            if self._queue:
                head: Utterance | None
                head, data = self._queue[0]
                if self._offset == 0 and head.at_sample is not None:
                    head, data = self._place(head, data)
                utterance = head
                if utterance is None:
                    pass  # silence until the placed utterance's sample comes up
                elif self._offset == 0 and utterance.at_sample is None and not self._may_start(utterance):
                    # (a placed one is never held: it plays in its place, ready or not)
                    self.held_ticks += 1
                else:
                    if utterance.start_tick is None:  # a late placed one starts where it was placed
                        utterance.start_tick = self._tick - self._offset // n
                        utterance.start_sample = utterance.start_tick * n
                        utterance.started_at = time.monotonic()
                        if utterance.tag is not None and utterance.tag not in self._started_tags:
                            self._started_tags[utterance.tag] = None
                            if len(self._started_tags) > STARTED_TAGS:
                                self._started_tags.popitem(last=False)
                    take = min(n, len(data) - self._offset)
                    out[:take] = data[self._offset : self._offset + take]
                    self._offset += take
                    self.samples_spoken += take
                    speaking = SpeechFrame(utterance, self._tick - utterance.start_tick)
                    if self._offset == len(data):
                        self._queue.popleft()
                        self._offset = 0
                        utterance.done.set()
            self._tick += 1
        return out, speaking

    def _place(self, utterance: Utterance, data: np.ndarray) -> tuple[Utterance | None, np.ndarray]:
        """The head of the queue, if a placed one may start at this tick (skipping what is late)."""
        while True:
            assert utterance.at_sample is not None
            early = utterance.at_sample - self._tick * self.samples_per_tick
            if early > 0:
                return None, data
            if -early < len(data):
                if early:
                    utterance.late_samples = -early
                    self.late_samples += -early
                    self._offset = -early
                return utterance, data
            utterance.late_samples = len(data)  # wholly late: none of it plays
            self.late_samples += len(data)
            utterance.cut = True
            utterance.ready.set()
            utterance.done.set()
            self._queue.popleft()
            if not self._queue:
                return None, data
            utterance, data = self._queue[0]
            if utterance.at_sample is None:
                return utterance, data

    def _may_start(self, utterance: Utterance) -> bool:
        if utterance.ready.is_set():
            return True
        if utterance.held_ticks >= self.max_hold_ticks:
            log.warning(
                "utterance %d: lip-sync not ready after %d ticks; playing it anyway",
                utterance.id,
                utterance.held_ticks,
            )
            return True
        utterance.held_ticks += 1
        return False

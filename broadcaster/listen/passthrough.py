"""Pass-through: the moderator's voice on air as the avatar's, lip-synced, at a fixed delay.

Each stretch of speech (from the VAD's start, with its pre-roll, to its end and a short tail) goes on
the speech track as it arrives, in whole ticks placed at their own program samples
(``SpeechTrack.append(at_sample=...)``): microphone sample n airs at program sample ``origin + n``,
``delay`` after it reached this process, whatever the network did to the blocks in between. Lip-sync
sees each piece as it is queued, before its ticks are drawn (the delay is longer than the program's
lead). A piece that arrives too late for its place loses its late part rather than shift the rest.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from broadcaster.listen.mic import MicStream
from broadcaster.voice.speech_track import SpeechTrack, Utterance

log = logging.getLogger(__name__)

TAIL_S = 0.25  # kept after the VAD's end of speech (the last consonant, the breath)
REPLACE_S = 0.1  # the stream this much behind its place (lost blocks): the place moves on
REPLACE_WINDOW_S = 0.5  # ...once it has been for this long (a delayed burst catches up sooner)


@dataclass(eq=False)
class LiveVoice:
    """One stretch of the moderator's voice on air: its pieces on the track, and whether it is over."""

    tag: str
    utterances: list[Utterance] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    cut: bool = False
    text: str = ""  # what the recogniser heard, once it has

    @property
    def late_samples(self) -> int:
        """Samples skipped because their piece came up after its place."""
        return sum(u.late_samples for u in self.utterances)

    async def finished(self) -> None:
        """Wait until the stretch is closed and everything queued of it has played (or was dropped)."""
        await self.closed.wait()
        for utterance in self.utterances:
            while not utterance.done.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # the render thread plays it; there is no loop event to await


class PassThrough:
    """Writes stretches of one microphone's voice onto ``track``."""

    def __init__(self, track: SpeechTrack, mic: MicStream) -> None:
        self.track = track
        self.mic = mic
        self.tick = track.samples_per_tick
        self.live: LiveVoice | None = None
        self._cursor = 0  # the next mic sample (program rate) to put on the track
        self._until: int | None = None  # the last mic sample of the stretch, once it ended
        self._late_since: float | None = None  # since when blocks keep coming after their place

    def begin(self, at: int, preroll: int, tag: str) -> LiveVoice:
        """Open a stretch from mic sample ``at`` (program rate), ``preroll`` samples earlier included."""
        if self.live is not None:
            self.close()
        timeline = self.mic.timeline
        timeline.settle()  # nothing of the mic is on air: the best origin may be taken now
        first = max(at - preroll, self.mic.ring.start, 0)
        place = timeline.program_at(first)
        self._cursor = first - place % self.tick  # back to a tick boundary (silence or earlier audio)
        self._until = None
        self.live = LiveVoice(tag)
        return self.live  # queued from the next ``pump`` (after the director cut what was on air)

    def pump(self) -> None:
        """Queue the whole ticks that have arrived (all of it once the stretch has ended)."""
        live = self.live
        if live is None:
            return
        if live.cut:  # the director cut it (a moderator's interrupt): nothing more of it airs
            self._finish()
            return
        timeline = self.mic.timeline
        if timeline.behind() <= REPLACE_S * self.track.sample_rate:
            self._late_since = None
        elif self._late_since is None:
            self._late_since = timeline.latest_wall
        elif timeline.latest_wall - self._late_since >= REPLACE_WINDOW_S:  # lost, not just delayed
            self._late_since = None
            self._replace()
        end = self.mic.ring.end if self._until is None else min(self.mic.ring.end, self._until)
        ticks = (end - self._cursor) // self.tick
        last = self._until is not None and self.mic.ring.end >= self._until
        count = end - self._cursor if last else ticks * self.tick
        if count > 0:
            pcm = self.mic.ring.read(self._cursor, self._cursor + count)
            at = self.mic.timeline.program_at(self._cursor)
            live.utterances.append(self.track.append(pcm, self.track.sample_rate, tag=live.tag, at_sample=at))
            self._cursor += count
        if last:
            self._finish()

    def _replace(self) -> None:
        """The microphone lost audio on the way: move the voice's place on rather than skip it as late.

        Blocks dropped by a slow link make every later sample come up after its place; a short gap
        keeps the rest at the fixed delay.
        """
        timeline = self.mic.timeline
        if not timeline.settle(recent_s=REPLACE_WINDOW_S):
            return
        place = timeline.program_at(self._cursor)
        self._cursor -= place % self.tick  # back to a tick boundary: a few samples play twice at most
        log.info("pass-through: the microphone's stream lost audio; its voice moves on to keep its delay")

    def end(self, at: int) -> None:
        """The VAD says speech ended at mic sample ``at``: play up to it and a short tail, then close."""
        if self.live is None:
            return
        self._until = at + round(TAIL_S * self.track.sample_rate)
        self.pump()

    def close(self) -> None:
        """End the stretch now with what has arrived (the microphone went away, or the mode changed)."""
        if self.live is not None and self._until is None:
            self._until = self.mic.ring.end
            self.pump()
        self._finish()

    def _finish(self) -> None:
        if self.live is not None:
            self.live.closed.set()
        self.live = None
        self._until = None

"""Pass-through on the speech track: the microphone's sample n airs at program sample origin + n.

The program clock runs on a virtual wall; blocks "arrive" with network jitter; the render side pulls
ticks lead seconds ahead, as the program does. What comes out must be the microphone's audio, in
place to the sample, whatever the jitter, and lip-sync must have seen it before its tick was drawn.
"""

from __future__ import annotations

import numpy as np
import pytest

from broadcaster.listen.mic import MicRing, MicStream
from broadcaster.listen.passthrough import PassThrough
from broadcaster.stream.clock import ProgramClock, Timing, VirtualWall
from broadcaster.voice.speech_track import SpeechTrack, Utterance

S = 1920
LEAD_S = 0.3
DELAY_S = 0.5


def clicks(seconds: float, rate: int, every_s: float = 0.37) -> tuple[np.ndarray, list[int]]:
    """Silence with a one-sample click every ``every_s`` (positions returned)."""
    pcm = np.zeros(round(seconds * rate), np.int16)
    at = [round((0.3 + i * every_s) * rate) for i in range(int((seconds - 0.3) / every_s))]
    pcm[at] = 20000
    return pcm, at


class Rig:
    """A clock on a virtual wall, a speech track pulled lead ahead, one microphone stream."""

    def __init__(self, rate: int) -> None:
        self.wall = VirtualWall(100.0)
        self.clock = ProgramClock(Timing(), self.wall)
        self.clock.start(LEAD_S)
        self.prepared: list[tuple[int, float]] = []  # (utterance id, wall when lip-sync saw it)
        self.track = SpeechTrack(prepare=self._prepare)
        self.mic = MicStream(rate, self.clock, DELAY_S)
        self.passthrough = PassThrough(self.track, self.mic)
        self.out: list[np.ndarray] = []
        self.frames: dict[int, tuple[Utterance, int]] = {}  # tick -> (utterance, index)
        self.pulled_at: dict[int, float] = {}

    def _prepare(self, utterance: Utterance, pcm: np.ndarray) -> None:
        self.prepared.append((utterance.id, self.wall.now()))
        utterance.ready.set()

    def render_until(self, now: float) -> None:
        """Pull every tick whose time to be drawn (due - lead) has come."""
        while self.clock.due(len(self.out)) - LEAD_S <= now:
            k = len(self.out)
            audio, speaking = self.track.pull()
            self.out.append(audio[:, 0].copy())
            self.pulled_at[k] = now
            if speaking is not None:
                self.frames[k] = (speaking.utterance, speaking.index)

    def program(self) -> np.ndarray:
        return np.concatenate(self.out)


@pytest.mark.parametrize("rate", [48000, 16000])
def test_the_voice_airs_in_place_to_the_sample_whatever_the_jitter(rate: int) -> None:
    rig = Rig(rate)
    pcm, at = clicks(4.0, rate)
    block = rate // 50  # 20 ms, as the dashboard sends
    rng = np.random.default_rng(3)
    start_wall = rig.wall.now()
    begun = False
    for i in range(0, len(pcm), block):
        captured = start_wall + (i + block) / rate  # when its last sample was captured
        arrival = captured + (0.0 if i == 0 else float(rng.uniform(0.0, 0.06)))  # loopback to 60 ms jitter
        rig.wall._now = max(rig.wall.now(), arrival)
        rig.render_until(rig.wall.now())
        rig.mic.push(pcm[i : i + block], rig.wall.now())
        if not begun and i >= rate // 10:  # the VAD's start comes after a little speech
            rig.passthrough.begin(0, 0, "voice-1")
            begun = True
        rig.passthrough.pump()
    rig.passthrough.end(rig.mic.ring.end)
    rig.render_until(rig.wall.now() + DELAY_S + 1.0)
    program = rig.program()
    origin = rig.mic.timeline.origin
    assert origin is not None
    expected_origin = rig.clock.sample_at(start_wall + DELAY_S)
    assert abs(origin - expected_origin) <= 2, "the soonest block sets the origin"
    found = np.flatnonzero(program > 5000)
    wanted = [origin + round(a * 48000 / rate) for a in at]
    assert len(found) >= len(wanted)
    for want in wanted:  # each click exactly where it belongs (a resampled one within 2 samples)
        assert np.min(np.abs(found - want)) <= (0 if rate == 48000 else 2)
    assert rig.track.late_samples == 0
    # lip-sync saw every piece before the first of its ticks was drawn
    prepared = dict(rig.prepared)
    for k, (utterance, index) in rig.frames.items():
        if index == 0:
            assert prepared[utterance.id] <= rig.pulled_at[k]


def test_a_block_too_late_for_its_place_loses_only_its_late_part() -> None:
    rig = Rig(48000)
    pcm = np.full(48000 * 2, 1000, np.int16)
    block = 960
    start_wall = rig.wall.now()
    rig.passthrough_started = False
    for i in range(0, len(pcm), block):
        arrival = start_wall + (i + block) / 48000
        if 48000 <= i < 48000 + 9600:
            continue  # 200 ms of blocks held up by the network...
        if i == 48000 + 9600:
            for j in range(48000, i, block):  # ...arrive together, after their ticks were drawn
                rig.wall._now = arrival + 0.3
                rig.render_until(rig.wall.now())
                rig.mic.push(pcm[j : j + block], rig.wall.now())
            rig.passthrough.pump()
        rig.wall._now = max(rig.wall.now(), arrival)
        rig.render_until(rig.wall.now())
        rig.mic.push(pcm[i : i + block], rig.wall.now())
        if i == 0:
            rig.passthrough.begin(0, 0, "voice-1")
        rig.passthrough.pump()
    rig.passthrough.end(rig.mic.ring.end)
    rig.render_until(rig.wall.now() + 2.0)
    program = rig.program()
    origin = rig.mic.timeline.origin
    assert origin is not None
    played = np.flatnonzero(program > 500)  # 1000 at -3 dB: mono spread over two channels
    assert rig.track.late_samples > 0
    assert played[0] == origin and played[-1] == origin + len(pcm) - 1, "the rest stays in place"
    assert len(played) == len(pcm) - rig.track.late_samples


def test_the_ring_keeps_the_last_seconds_by_absolute_sample() -> None:
    ring = MicRing(0.01, 48000)  # 480 samples
    data = np.arange(1000, dtype=np.int16)
    ring.write(data[:300])
    ring.write(data[300:1000])
    assert ring.start == 520 and ring.end == 1000
    assert (ring.read(600, 700) == data[600:700]).all()
    assert (ring.read(500, 530)[:20] == 0).all() and (ring.read(500, 530)[20:] == data[520:530]).all()


def test_blocks_lost_on_the_way_move_the_voice_on_instead_of_skipping_the_rest() -> None:
    rig = Rig(48000)
    pcm = np.full(48000 * 4, 1000, np.int16)
    block = 960
    start_wall = rig.wall.now()
    lost = range(48000, 48000 + 14400)  # 300 ms of blocks a slow link dropped
    pushed = 0
    for i in range(0, len(pcm), block):
        rig.wall._now = max(rig.wall.now(), start_wall + (i + block) / 48000)
        rig.render_until(rig.wall.now())
        if i in lost:
            continue
        rig.mic.push(pcm[i : i + block], rig.wall.now())
        pushed += block
        if i == 0:
            rig.passthrough.begin(0, 0, "voice-1")
        rig.passthrough.pump()
    rig.passthrough.end(rig.mic.ring.end)
    rig.render_until(rig.wall.now() + 2.0)
    played = int(np.count_nonzero(rig.program() > 500))
    # the voice moved on within about REPLACE_WINDOW_S: what came after that still played
    assert rig.track.late_samples <= 0.7 * 48000, rig.track.late_samples
    assert played >= pushed - 0.7 * 48000
    assert rig.mic.timeline.moves == 1

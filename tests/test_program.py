import threading

import numpy as np
import pytest

from broadcaster.stream.clock import ProgramClock, Timing, VirtualWall
from broadcaster.stream.program import Program
from broadcaster.stream.tick import Tick
from broadcaster.voice.speech_track import SpeechFrame, SpeechTrack

FRAME = np.zeros((24, 16), np.uint8)


class StillFrames:
    def __init__(self, wall: VirtualWall | None = None, cost_s: float = 0.0, fail_at: set[int] | None = None):
        self.calls = 0
        self.wall, self.cost_s, self.fail_at = wall, cost_s, fail_at or set()

    def frame(self, t: float, speech: SpeechFrame | None = None) -> np.ndarray:
        self.calls += 1
        if self.wall is not None:
            self.wall.advance(self.cost_s)
        if round(t * 25) in self.fail_at:
            raise RuntimeError("no frame")
        return np.full((24, 16), self.calls % 256, np.uint8)


class Counter:
    """A sink that counts what the program emits, and feeds speech like a TTS would."""

    def __init__(self, speech: SpeechTrack | None = None, every: int = 0) -> None:
        self.frames = 0
        self.samples = 0
        self.speech_samples = 0
        self.appended = 0
        self.speech, self.every = speech, every
        self.ticks: list[Tick] = []
        self.keep = False

    def offer(self, tick: Tick) -> bool:
        assert tick.k == self.frames
        self.frames += 1
        self.samples += len(tick.audio)
        if tick.speaking:
            self.speech_samples += int(np.count_nonzero(tick.audio[:, 0]))
        if self.keep:
            self.ticks.append(tick)
        if self.speech is not None and self.every and tick.k % self.every == 0:
            # 1.37 s at 22.05 kHz: a length that never divides evenly into ticks
            pcm = np.full(30209, 1000, np.int16)
            self.appended += self.speech.append(pcm, 22050).samples
        return True


def test_a_simulated_day_has_exactly_one_tick_of_audio_per_frame() -> None:
    timing = Timing(25)
    wall = VirtualWall()
    speech = SpeechTrack()
    sink = Counter(speech, every=25 * 60)
    day = 25 * 86400
    program = Program(ProgramClock(timing, wall), StillFrames(), speech, [sink], lead_s=0.3, max_ticks=day)
    program.run()
    assert sink.frames == day
    assert sink.samples == day * timing.samples_per_tick
    assert sink.samples == 48000 * 86400
    assert speech.pending_samples == 0
    assert sink.speech_samples == sink.appended
    assert wall.now() == pytest.approx(86400 - 1 / 25, abs=1e-6)


def test_lead_is_bounded_and_every_tick_is_on_time() -> None:
    wall = VirtualWall()
    sink = Counter()
    program = Program(
        ProgramClock(Timing(25), wall), StillFrames(), SpeechTrack(), [sink], lead_s=0.3, max_ticks=500
    )
    program.run()
    assert program.stats.lead_s == pytest.approx(0.3)
    assert program.stats.late_max_s == pytest.approx(-0.3)
    assert program.stats.repeats == 0


def test_falling_behind_repeats_frames_but_never_delays_audio() -> None:
    wall = VirtualWall()
    frames = StillFrames(wall, cost_s=0.06)  # each picture costs 1.5 ticks of time
    sink = Counter()
    sink.keep = True
    speech = SpeechTrack()
    speech.append(np.full(48000, 500, np.int16), 48000)
    program = Program(ProgramClock(Timing(25), wall), frames, speech, [sink], lead_s=0.3, max_ticks=200)
    program.run()
    assert sink.frames == 200
    assert program.stats.repeats > 0
    assert frames.calls + program.stats.repeats == 200
    assert program.stats.late_max_s < 0.1
    audio = np.concatenate([t.audio for t in sink.ticks])
    assert np.count_nonzero(audio[:48000, 0] == 500) == 48000
    assert not audio[48000:].any()


def test_a_failing_picture_is_logged_counted_and_replaced_by_the_last_one() -> None:
    sink = Counter()
    sink.keep = True
    program = Program(
        ProgramClock(Timing(25), VirtualWall()),
        StillFrames(fail_at={5, 6}),
        SpeechTrack(),
        [sink],
        max_ticks=10,
    )
    program.run()
    assert sink.frames == 10
    assert program.stats.render_errors == 2
    assert sink.ticks[5].video is sink.ticks[4].video
    assert sink.ticks[6].video is sink.ticks[4].video


def test_a_long_stall_re_anchors_the_clock_without_skipping_ticks() -> None:
    wall = VirtualWall()

    class Stall(Counter):
        def offer(self, tick: Tick) -> bool:
            if tick.k == 100:
                wall.advance(30.0)  # the machine was suspended
            return super().offer(tick)

    sink = Stall()
    clock = ProgramClock(Timing(25), wall)
    program = Program(clock, StillFrames(), SpeechTrack(), [sink], lead_s=0.3, max_ticks=300)
    program.run()
    assert sink.frames == 300
    assert clock.resyncs == 1
    assert program.stats.lead_s == pytest.approx(0.3)


def test_stop_ends_the_render_thread_promptly() -> None:
    done = threading.Event()
    program = Program(
        ProgramClock(Timing(25)), StillFrames(), SpeechTrack(), [Counter()], on_finished=done.set
    )
    program.start()
    program.stop()
    assert program.join(2.0)
    assert done.is_set()

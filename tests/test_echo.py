"""The echo guard on real speech: the program's own voice coming back is echo; a person is not."""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import astuple

import numpy as np
import pytest

from broadcaster.listen.echo import EchoGuard
from broadcaster.listen.settings import BargeInConfig, TurnConfig
from broadcaster.listen.turns import SpeechStarted, TurnDetector
from broadcaster.listen.vad import create_vad
from broadcaster.voice.pcm import StreamResampler
from tests.speech_samples import noise, speech

A = "The quick brown fox jumps over the lazy dog, and then it runs away into the forest."
OTHERS = (  # other people: another voice, another speed
    ("Please tell me about the weather tomorrow in the mountains.", "en+f3", 150),
    ("Stop, I have a question about your product.", "en-us", 190),
    ("Hello, can you hear me? I want to ask something.", "en-gb-x-rp", 170),
)
TICK = 1920
P0 = 48000 * 600  # the program has been on air ten minutes when the mic opens
LEAD_S = 1.0  # program silence before A
AHEAD = 48000 * 3 // 10  # the renderer runs 300 ms ahead of what is heard
WINDOW = 8000  # 500 ms of mic per decision


@functools.cache
def program_voice() -> tuple[np.ndarray, np.ndarray]:
    """A at the program's 48 kHz, and the same audio resampled to the mic's 16 kHz."""
    a = speech(A, rate=48000)
    resampler = StreamResampler(16000)
    heard = np.concatenate([resampler.push(a, 48000), resampler.flush()])[:, 0]
    return a, heard


class Program:
    """A on air after a second of silence, fed tick by tick as the render thread would."""

    def __init__(self, cfg: BargeInConfig | None = None, silent: bool = False) -> None:
        self.guard = EchoGuard(cfg or BargeInConfig())
        a = program_voice()[0]
        mono = np.concatenate([np.zeros(round(LEAD_S * 48000), np.int16), a, np.zeros(48000 * 4, np.int16)])
        if silent:
            mono = np.zeros_like(mono)
        self.audio = np.stack([mono, mono], axis=1)
        self.ticks = 0

    def until(self, position: int) -> EchoGuard:
        while P0 + self.ticks * TICK < position and (self.ticks + 1) * TICK <= len(self.audio):
            self.guard.add_program(
                P0 + self.ticks * TICK, self.audio[self.ticks * TICK : (self.ticks + 1) * TICK]
            )
            self.ticks += 1
        return self.guard


def room(pcm: np.ndarray) -> np.ndarray:
    """A small loudspeaker (nothing under 200 Hz) in a room that rings for about 350 ms."""
    taps = np.arange(round(0.4 * 16000)) / 16000
    response = np.random.default_rng(3).normal(0, 1, len(taps)) * np.exp(-taps / 0.05)
    response[:80] = 0.0  # the first reflection 5 ms after the direct sound
    response *= 10 ** (-6 / 20) / np.sqrt((response**2).sum())
    response[0] = 1.0
    size = 1 << (len(pcm) + len(taps)).bit_length()
    freqs = np.fft.rfftfreq(size, 1 / 16000)
    speaker = freqs / np.sqrt(freqs**2 + 200.0**2)
    return np.fft.irfft(np.fft.rfft(pcm, size) * np.fft.rfft(response, size) * speaker, size)[: len(pcm)]


def mic(
    length_s: float,
    echo_delay_ms: int | None,
    other: np.ndarray | None = None,
    other_at_s: float = 0.0,
    in_a_room: bool = True,
) -> np.ndarray:
    """What the mic hears (16 kHz; its sample k is heard when the program is at P0 + 3k)."""
    out = np.zeros(round(length_s * 16000))
    if echo_delay_ms is not None:
        echo = program_voice()[1] * 10 ** (-12 / 20)
        echo = room(echo) if in_a_room else echo
        start = round((LEAD_S + echo_delay_ms / 1000) * 16000)
        out[start : start + len(echo)] += echo[: len(out) - start]
    if other is not None:
        start = round(other_at_s * 16000)
        out[start : start + len(other)] += other[: len(out) - start]
    out += noise(length_s, level_dbfs=-60, seed=7)
    return np.clip(out, -32768, 32767).astype(np.int16)


Verdict = tuple[bool, float, float]  # is_echo, correlation, excess


def verdicts(program: Program, heard: np.ndarray, from_s: float, to_s: float) -> list[Verdict]:
    """is_echo on 500 ms windows ending every 100 ms from ``from_s`` to ``to_s`` (mic time)."""
    out = []
    for end in range(round(from_s * 16000), round(to_s * 16000), 1600):
        guard = program.until(P0 + 3 * end + AHEAD)
        found = guard.match(heard[end - WINDOW : end], P0 + 3 * end)
        out.append((guard.is_echo(heard[end - WINDOW : end], P0 + 3 * end), found.correlation, found.excess))
    return out


def at_onset(program: Program, heard: np.ndarray) -> tuple[bool, int]:
    """is_echo on the 500 ms before the turn detector confirms speech, as the barge-in logic asks it."""
    detector = TurnDetector(TurnConfig(), create_vad("silero"))
    for i in range(0, len(heard), 320):
        for event in detector.push(heard[i : i + 320]):
            if isinstance(event, SpeechStarted):
                end = detector.position
                guard = program.until(P0 + 3 * end + AHEAD)
                return guard.is_echo(detector.recent(WINDOW), P0 + 3 * end), event.detected_at
    raise AssertionError("no speech heard")


def summary(results: list[Verdict]) -> str:
    correlations = [round(c, 2) for _, c, _ in results]
    excess = [round(x, 2) for _, _, x in results]
    return f"correlation {min(correlations)}..{max(correlations)}, excess {min(excess)}..{max(excess)}"


@pytest.mark.parametrize("in_a_room", [False, True])
@pytest.mark.parametrize("delay_ms", [120, 250])
def test_the_program_heard_back_is_echo(delay_ms: int, in_a_room: bool) -> None:
    length = LEAD_S + len(program_voice()[1]) / 16000 + 1.0
    heard = mic(length, delay_ms, in_a_room=in_a_room)
    start = LEAD_S + delay_ms / 1000
    results = verdicts(Program(), heard, start + 0.4, start + len(program_voice()[1]) / 16000)
    print(f"\necho {delay_ms} ms{' in a room' if in_a_room else ''}: {summary(results)}")
    assert all(echo for echo, _, _ in results)
    guard = Program().until(P0 + 48000 * 4)
    end = round((start + 2.0) * 16000)
    assert abs(guard.match(heard[end - WINDOW : end], P0 + 3 * end).delay_ms - delay_ms) <= 10
    echo, onset = at_onset(Program(), heard)
    assert abs(onset / 16000 - start) < 0.3
    assert echo


@pytest.mark.parametrize(("text", "voice", "wpm"), OTHERS)
def test_a_person_speaking_over_the_program_is_not_echo(text: str, voice: str, wpm: int) -> None:
    """Through a headset: the mic hears only the person, who starts 1.5 s into the program's sentence."""
    other = speech(text, voice=voice, rate_wpm=wpm) * 10 ** (-6 / 20)
    start = LEAD_S + 1.5
    heard = mic(start + len(other) / 16000 + 1.0, None, other, start)
    results = verdicts(Program(), heard, start + 0.2, start + len(other) / 16000)
    print(f"\nanother voice: {summary(results)}")
    assert not any(echo for echo, _, _ in results)
    echo, onset = at_onset(Program(), heard)
    assert abs(onset / 16000 - start) < 0.3
    assert not echo


@pytest.mark.parametrize(("text", "voice", "wpm"), OTHERS)
def test_double_talk_is_not_echo(text: str, voice: str, wpm: int) -> None:
    """On speakers: the person, 6 dB louder than the echo, talks over it; before they start it is echo."""
    other = speech(text, voice=voice, rate_wpm=wpm) * 10 ** (-6 / 20)
    start = LEAD_S + 1.5
    heard = mic(start + len(other) / 16000 + 1.0, 200, other, start)
    program = Program()
    before = verdicts(program, heard, LEAD_S + 0.6, start)
    during = verdicts(program, heard, start + 0.3, start + len(other) / 16000)
    print(f"\necho alone: {summary(before)}; with the person: {summary(during)}")
    assert all(echo for echo, _, _ in before)
    assert not any(echo for echo, _, _ in during)


def test_a_silent_program_has_no_echo() -> None:
    heard = mic(LEAD_S + 5.0, 200)  # someone says A while the program is silent
    program = Program(silent=True)
    assert not any(echo for echo, _, _ in verdicts(program, heard, LEAD_S + 0.8, LEAD_S + 3.0))
    end = round((LEAD_S + 2.0) * 16000)
    guard = program.until(P0 + 3 * end)
    assert not guard.speaking(P0 + 3 * end)
    assert guard.program_level_db(P0 + 3 * end, 500) == -120.0


def test_level_and_speaking_follow_the_program() -> None:
    program = Program()
    a = program_voice()[0]
    guard = program.until(P0 + round(LEAD_S * 48000) + 48000 * 2)
    end = P0 + round(LEAD_S * 48000) + 48000 * 2  # two seconds into A
    expected = 10 * np.log10(np.mean(a[48000 : 48000 * 2].astype(np.float64) ** 2) / 32768**2)
    assert guard.program_level_db(end, 1000) == pytest.approx(expected, abs=0.2)
    assert guard.speaking(end)
    assert not guard.speaking(P0 + round(LEAD_S * 48000) - 4800, span_ms=500)  # the silence before A


def test_chunking_and_channels_do_not_change_the_envelope() -> None:
    ticks = Program().until(P0 + 48000 * 4)
    other = EchoGuard(BargeInConfig())
    audio = Program().audio[: 48000 * 4]
    mono = audio[:, 0]
    for i in range(0, len(mono), 1001):  # chunks that straddle 10 ms bins, mono
        other.add_program(P0 + i, mono[i : i + 1001])
    heard = mic(LEAD_S + 4.0, 120)
    end = round((LEAD_S + 2.5) * 16000)
    for span in (100, 730, 2000):
        assert other.program_level_db(P0 + 3 * end, span) == pytest.approx(
            ticks.program_level_db(P0 + 3 * end, span), abs=1e-3
        )
    assert astuple(other.match(heard[end - WINDOW : end], P0 + 3 * end)) == pytest.approx(
        astuple(ticks.match(heard[end - WINDOW : end], P0 + 3 * end))
    )


def test_old_and_future_positions_are_silence() -> None:
    program = Program()
    guard = program.until(P0 + 48000 * 8)
    window = mic(4.0, 0)[-WINDOW:]
    for end in (0, 100, P0, P0 + 48000 * 2, P0 + 48000 * 60):
        assert not guard.is_echo(window, end)
        assert guard.program_level_db(end, 500) == -120.0
    assert not guard.is_echo(window[:40], P0 + 48000 * 7)  # too short to judge
    with pytest.raises(ValueError, match="int16 mono"):
        guard.is_echo(window.astype(np.float32), P0)


def test_the_render_thread_can_feed_while_the_guard_is_asked() -> None:
    heard = mic(LEAD_S + 4.0, 120)
    end = round((LEAD_S + 2.5) * 16000)
    window, position = heard[end - WINDOW : end], P0 + 3 * end
    reference = astuple(Program().until(P0 + 48000 * 48 // 10).match(window, position))
    program = Program()
    program.until(position + AHEAD)
    feeding = threading.Thread(target=program.until, args=(P0 + 48000 * 48 // 10,))
    feeding.start()
    answers = [astuple(program.guard.match(window, position)) for _ in range(20)]
    feeding.join(timeout=10)
    assert all(answer == pytest.approx(reference) for answer in answers)


def test_cost() -> None:
    guard = EchoGuard(BargeInConfig())
    tick = np.stack([program_voice()[0][:TICK]] * 2, axis=1)
    started = time.perf_counter()
    for k in range(500):
        guard.add_program(k * TICK, tick)
    per_tick = (time.perf_counter() - started) / 500
    window = mic(3.0, 0)[-WINDOW:]
    started = time.perf_counter()
    for _ in range(20):
        guard.match(window, 400 * TICK)
    per_match = (time.perf_counter() - started) / 20
    print(
        f"\nadd_program {per_tick * 1e6:.0f} us per tick, is_echo {per_match * 1e3:.1f} ms per 500 ms window"
    )
    assert per_tick < 0.001
    assert per_match < 0.05

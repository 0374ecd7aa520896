"""Voice in, end to end: the whole show in this process, a microphone streamed in real time over /mic.

- conversation: espeak-ng speech recognised by pocketsphinx, answered by the local LLM on the
  program; the person speaking over the answer stops it within 300 ms (the tick that falls silent is
  drawn within 300 ms of the first sample of speech; it is due on air the program's lead later); the
  program's own sound coming back into the microphone is not a barge-in;
- pass-through: speech sent as the mic airs at the fixed delay (within 40 ms), lip-synced
  (bench/sync.py's metric).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.mic_client import MicClient
from bench.sync import RATE, passthrough_and_measure
from bench.voice_show import ProgramTap, RunningShow, running_show, until
from tests.speech_samples import silence, speech

QUESTION = "what is the price of the power bank"
BARGE_IN = "hold on, wait a moment please"
SPEECH_RMS = 300.0  # a tick with speech in it
SILENT_RMS = 30.0
FADE_SAMPLES = 240  # a cut fades the sound out over the first 5 ms of its tick


def onset(pcm: np.ndarray, rate: int) -> float:
    """Seconds from the start of ``pcm`` to its first sample of speech."""
    return float(np.flatnonzero(np.abs(pcm) > 500)[0]) / rate


def cut_after(tap: ProgramTap, at: float) -> tuple[int, float]:
    """The first tick handed over after monotonic ``at`` whose sound stops in its fade (the cut's
    240 samples) and stays off for the next 7 ticks; (k, when offered)."""
    ticks = list(tap.ticks)
    for i, (k, _rms, offered) in enumerate(ticks):
        run = ticks[i + 1 : i + 8]
        if offered < at or len(run) < 7 or any(r >= SILENT_RMS for _, r, _ in run):
            continue
        if np.abs(tap.audio[k][FADE_SAMPLES:]).max() < 50:
            return k, offered
    raise AssertionError("the program never fell silent after the barge-in")


def speaking_before(tap: ProgramTap, at: float, span: float = 0.3) -> bool:
    return any(rms > SPEECH_RMS for _, rms, offered in tap.ticks if at - span <= offered <= at)


def echo_of(
    show: RunningShow, tap: ProgramTap, delay_s: float, gain: float
) -> Callable[[float, int], np.ndarray]:
    """A room's echo: the program's own sound, ``delay_s`` after it was due on air, into the mic."""
    clock = show.app.clock
    position: list[int] = []  # where the echo is in the program: continuous, as a room's is
    rng = np.random.default_rng(5)

    def mix(now: float, count: int) -> np.ndarray:
        if not position:
            position.append(round(clock.sample_at(now - delay_s)) - count)
        start = position[0]
        position[0] += count
        out = np.zeros(count, np.float64)
        for i in range(count):  # per sample: ticks are 1920 long, blocks 960
            k, j = divmod(start + i, 1920)
            if 0 <= k < len(tap.audio):
                out[i] = tap.audio[k][j]
        hiss = rng.normal(0.0, 32768 * 10 ** (-60 / 20), count)  # a real microphone's own noise
        return (out * gain + hiss).astype(np.int16)

    return mix


async def test_the_avatar_answers_the_host_and_stops_when_spoken_over(
    avatar_root: Path, tmp_path: Path, local_llm: str
) -> None:
    tap = ProgramTap()
    tap.keep_audio = True
    overrides = [
        f"avatar.dir={json.dumps(str(avatar_root))}",
        f"llm.base_url={json.dumps(local_llm)}",
        "llm.first_token_timeout_s=60",
        'voice_in.mode="conversation"',
        'voice_in.asr.engine="pocketsphinx"',
        "program.lead_ms=150",
        "voice_in.passthrough.delay_ms=300",
    ]
    async with running_show(tmp_path, overrides, taps=[tap]) as show:
        app = show.app
        listener = app.listener
        assert listener is not None
        await until(lambda: listener.asr is not None, 60, "pocketsphinx to load")
        mic = MicClient(show.port, show.token, RATE)
        await mic.open()
        mic.start_live()
        try:
            # the room's speakers are always heard: the avatar's own voice comes back into the mic, and
            # that is not the host speaking
            mic.mixer = echo_of(show, tap, delay_s=0.15, gain=0.25)  # -12 dB: speakers across the room
            await asyncio.sleep(0.5)
            await app.console.say(
                "Here is a long announcement from the moderator, read slowly, so that it keeps playing "
                "while the room's speakers feed it back into the microphone.",
                "now",
            )
            await until(lambda: speaking_before(tap, time.monotonic(), 0.1), 30, "the announcement")
            await asyncio.sleep(3.0)
            assert listener.stats.echo_rejected >= 1, "the echo was never heard as speech"
            assert listener.stats.barge_ins == 0, "the echo cut the avatar"
            assert speaking_before(tap, time.monotonic(), 0.5), "the announcement was cut"
            mic.mixer = None
            await until(lambda: not app.director.speaking(), 60, "the announcement to end")

            # the host asks; pocketsphinx hears it; it is logged as the host's words and answered
            question = np.concatenate([speech(QUESTION, RATE), silence(0.2, RATE)])
            await mic.play(question)
            final = await mic.wait("transcript", lambda d: d["final"] and d["text"], within=30)
            assert {"price", "power"} & set(final["text"].split()), final
            answered_at = time.monotonic()
            await until(
                lambda: any(rms > SPEECH_RMS for _, rms, t in tap.ticks if t > answered_at), 60, "the answer"
            )
            rows = await app.store.read(
                lambda c: c.execute(
                    "select platform, user_name, text, decision, reason from chat_events"
                    " where platform = 'voice'"
                ).fetchall()
            )
            assert rows and rows[0][1] == "host" and rows[0][2] == final["text"], rows

            # the host speaks over the answer: it stops within 300 ms of the first sample of speech
            barge = speech(BARGE_IN, RATE)
            seen = len(mic.events)
            captured = await mic.play(barge)
            spoke = captured + onset(barge, RATE)
            await mic.wait("barge_in", within=5)
            await asyncio.sleep(1.0)
            assert speaking_before(tap, spoke), "the avatar was not speaking when the host cut in"
            k, drawn = cut_after(tap, spoke)
            drawn_ms = (drawn - spoke) * 1000
            due_ms = (app.clock.due(k) - spoke) * 1000
            turn = next(t for t in reversed(listener.turns) if t.barge_in)
            print(
                f"barge-in: VAD start {(turn.started - spoke) * 1000:.0f} ms, confirmed "
                f"{(turn.detected - spoke) * 1000:.0f} ms; cut drawn {drawn_ms:.0f} ms, due on air "
                f"{due_ms:.0f} ms after speech began (tick {k}; the cut at tick {turn.cut_tick}, due "
                f"{(app.clock.due(turn.cut_tick or 0) - spoke) * 1000:.0f} ms)"
            )
            # the program cuts within 300 ms; viewers hear it the program's lead (150 ms here) later
            assert drawn_ms <= 300, (drawn_ms, due_ms)
            assert app.director.barge_ins == 1, [(t.text, t.echo, t.barge_in) for t in listener.turns]

            # the avatar's own voice coming back from the room is not the host speaking
            await mic.wait("transcript", lambda d: d["final"], after=seen, within=30)  # that turn is over
        finally:
            await mic.close()


async def test_the_moderators_voice_airs_at_the_fixed_delay_lip_synced(
    avatar_root: Path, tmp_path: Path
) -> None:
    lines = ("Good evening everyone, welcome back to the live room.", "The power bank is on sale tonight.")
    gap = silence(1.2, RATE)
    pcm = np.concatenate([gap, speech(lines[0], RATE), gap, speech(lines[1], RATE), gap])
    result = await passthrough_and_measure(pcm, tmp_path, avatar_root)
    print(result)
    assert result["stretches"] == 2, result
    assert abs(result["delay_error_ms"]) <= 40, result
    assert abs(result["start_lost_ms"]) <= 20, result  # the first word is whole
    assert result["faces_found"] >= 0.95 * result["frames"], result
    assert abs(result["offset_ms"]) <= 40 and result["correlation"] >= 0.5, result

"""The whole broadcaster in this process, with its console on a free port: for the voice-in tests and
benchmarks, which need its program clock (to measure the pass-through delay) and its director.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from broadcaster.app import Broadcaster, RunOptions
from broadcaster.config import load_config
from broadcaster.stream.tick import Tick, TickSink

ROOT = Path(__file__).resolve().parents[1]


async def until(check: Callable[[], bool], within: float, what: str = "the condition") -> None:
    """Poll ``check`` until it holds (the show's threads change what it reads: there is no event to
    await); TimeoutError naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class RunningShow:
    """A show running in this process: the app, its console's port and token, and its run task."""

    app: Broadcaster
    port: int
    token: str
    task: asyncio.Task[dict[str, object]]

    async def finished(self, within: float) -> dict[str, object]:
        """Wait for a ``seconds``-long run to end by itself; its summary."""
        return await asyncio.wait_for(asyncio.shield(self.task), within)


@contextlib.asynccontextmanager
async def running_show(
    workdir: Path,
    overrides: list[str],
    seconds: float | None = None,
    outputs: list[str] | None = None,
    taps: list[TickSink] | None = None,
) -> AsyncIterator[RunningShow]:
    """Start the show (no feeds, no fillers, no outputs but ``outputs``) and stop it on the way out.

    ``taps`` are more sinks for the program's ticks (a test's ear on what goes out).
    """
    token = secrets.token_urlsafe(24)
    before = os.environ.get("BROADCASTER_TOKEN")
    os.environ["BROADCASTER_TOKEN"] = token
    cfg = load_config(
        ROOT / "config.toml",
        [
            "control.port=0",
            f"store.path={json.dumps(str(workdir / 'show.sqlite3'))}",
            f"voice.cache.dir={json.dumps(str(workdir / 'tts'))}",
            "outputs=[]",
            "feeds=[]",
            "show.fillers.enabled=false",
            "rtc.preview=false",
            *overrides,
        ],
    )
    app = Broadcaster(cfg, RunOptions(seconds=seconds, outputs=list(outputs or [])))
    app.program.sinks.extend(taps or [])
    task = asyncio.create_task(app.run())
    try:
        while True:
            if task.done():
                task.result()  # it failed to start: raise that
                raise RuntimeError("the show ended before its console was listening")
            if app.control is not None:
                with contextlib.suppress(RuntimeError):
                    port = app.control.port
                    break
            await asyncio.sleep(0.05)
        yield RunningShow(app, port, token, task)
    finally:
        app.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 60)
        if before is None:
            os.environ.pop("BROADCASTER_TOKEN", None)
        else:
            os.environ["BROADCASTER_TOKEN"] = before


class ProgramTap:
    """A tick sink that keeps each tick's sound level and when it was handed over (a test's ear)."""

    def __init__(self) -> None:
        self.ticks: list[tuple[int, float, float]] = []  # (k, rms of its audio, monotonic when offered)
        self.audio: list[np.ndarray] = []  # each tick's left channel, when ``keep_audio``
        self.keep_audio = False

    def offer(self, tick: Tick) -> bool:
        """Note the tick (called on the render thread)."""
        left = tick.audio[:, 0]
        self.ticks.append((tick.k, float(np.sqrt(np.mean(left.astype(np.float64) ** 2))), time.monotonic()))
        if self.keep_audio:
            self.audio.append(left.copy())
        return True

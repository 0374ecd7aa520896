"""The process faults of the fault table: SIGTERM in the middle of a sentence, SIGKILL and a restart.

The real ``broadcaster run`` in a child process, with a recorder, a JSON chat relay, an LLM and its
console; comments arrive and are logged, one script talks while another waits in the queue. Then
the signal, in the middle of a sentence:

- SIGTERM: the process ends by itself, exit 0, with its summary and a playable recording;
- SIGKILL: it just dies.

Either way, every comment logged before it, the queue and the on-air log are all in the store, and
a restart on the same store resumes the talk at the sentence that was on air, then the queued one.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.fault_kit import FaultyLlm, Probe, feed_table, wait_for  # noqa: E402
from bench.faults import Outcome  # noqa: E402
from tests.http_servers import serve  # noqa: E402
from tests.json_relay_server import JsonRelay, plain_frame  # noqa: E402
from tests.run_cli import command  # noqa: E402

TALK, QUEUED = "longjing-intro", "power-bank-pitch"
COMMENTS = 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """``broadcaster run`` on a store, with its console on ``port``."""

    def __init__(self, workdir: Path, relay: str, llm: str, avatar_dir: str, run: int) -> None:
        self.workdir, self.port, self.token = workdir, _free_port(), secrets.token_urlsafe(24)
        self.log = (workdir / f"run{run}.log").open("w")
        settings = [
            f'store.path="{workdir / "show.sqlite3"}"',
            f"control.port={self.port}",
            f'voice.cache.dir="{workdir / "tts"}"',
            f'avatar.dir="{avatar_dir}"',
            f"feeds=[{feed_table(relay)}]",
            f'llm.base_url="{llm}"',
            "voice_in.enabled=false",
            "show.fillers.enabled=false",
            "rtc.preview=false",
            "chat.interval_s=30",
            f'outputs=[{{type="record", path="{workdir / f"run{run}.mkv"}", min_free_mb=0}}]',
        ]
        args = [a for s in settings for a in ("--set", s)]
        env = {**os.environ, "BROADCASTER_TOKEN": self.token}
        self.process = subprocess.Popen(command("run", *args), cwd=ROOT, env=env, stderr=self.log, text=True)
        self.probe = Probe(self.port, self.token)

    async def ready(self) -> float:
        async def up() -> bool:
            try:
                return bool((await self.probe.health())["ok"])
            except OSError:
                return False

        return await wait_for(up, 60, "the show to be up")

    async def command(self, cmd: str, **args: Any) -> dict[str, Any]:
        url = f"ws://127.0.0.1:{self.port}/ws"
        async with connect(url, additional_headers={"Authorization": f"Bearer {self.token}"}) as ws:
            await ws.send(json.dumps({"id": 1, "cmd": cmd, **args}))
            while True:
                reply = json.loads(await ws.recv())
                if reply.get("id") == 1:
                    if not reply.get("ok"):
                        raise RuntimeError(f"{cmd}: {reply}")
                    return dict(reply.get("result") or {})

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def rows(workdir: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{workdir / 'show.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _logged_comments(workdir: Path) -> int:
    sql = "SELECT count(*) FROM chat_events WHERE text LIKE 'comment % before the fault%'"
    return int(rows(workdir, sql)[0][0])


def _said(workdir: Path) -> list[str]:
    return [str(r[0]) for r in rows(workdir, "SELECT text FROM on_air WHERE lane = 'script' ORDER BY seq")]


def _open_items(workdir: Path) -> list[tuple[Any, ...]]:
    sql = "SELECT id, kind, args, state FROM show_items WHERE state IN ('queued', 'on_air') ORDER BY id"
    return rows(workdir, sql)


async def _now(value: bool) -> bool:
    return value


async def process_fault(workdir: Path, sig: signal.Signals, avatar_dir: str) -> Outcome:
    """One run killed by ``sig`` in the middle of a sentence, and a restart on its store."""
    name = "SIGTERM during speech" if sig == signal.SIGTERM else "SIGKILL, then a restart"
    llm = FaultyLlm()
    async with JsonRelay() as relay, serve(llm.handle) as base:
        llm_url = base + "/v1"
        first = Child(workdir, relay.url, llm_url, avatar_dir, 1)
        try:
            await first.ready()
            await relay.wait_for(lambda: relay.clients >= 1, 30)
            texts = [f"comment {i} before the fault, is it fresh" for i in range(COMMENTS)]
            await relay.push(*(plain_frame(f"viewer{i}", t) for i, t in enumerate(texts)))
            await wait_for(lambda: _now(_logged_comments(workdir) >= COMMENTS), 30, "the comments logged")
            await first.command("script.start", script=TALK)
            await first.command("script.start", script=QUEUED)
            await wait_for(lambda: _now(len(_said(workdir)) >= 2), 60, "the talk on air")
            logged = _logged_comments(workdir)
            queued = [r for r in _open_items(workdir) if QUEUED in str(r[2])]
            said_before = _said(workdir)
            first.process.send_signal(sig)
            stopped = time.monotonic()
            code = await asyncio.to_thread(first.process.wait, 30)
            exit_s = time.monotonic() - stopped
        finally:
            first.stop()
        on_air_before = _said(workdir)  # what the log holds once it ended: a restart must go on from it
        lost: list[str] = []
        notes = [f"exit {code} in {exit_s:.1f} s"]
        if sig == signal.SIGTERM:
            text = (workdir / "run1.log").read_text()
            if code != 0 or "summary {" not in text:
                lost.append(
                    f"SIGTERM: exit {code}, summary {'present' if 'summary {' in text else 'missing'}"
                )
            if not _playable(workdir / "run1.mkv"):
                lost.append("the recording of the stopped run is not playable")
        after = _logged_comments(workdir)
        if after < logged:
            lost.append(f"chat log: {after} of {logged} logged comments left")
        if not queued or not [r for r in _open_items(workdir) if QUEUED in str(r[2])]:
            lost.append(f"the queued {QUEUED} run is gone from the queue")
        if on_air_before[: len(said_before)] != said_before:
            lost.append("the on-air log changed")
        notes.append(f"{logged} comments logged, {len(on_air_before)} sentences said before the signal")
        # the restart: the talk resumes at the sentence that was on air, then the queued run
        second = Child(workdir, relay.url, llm_url, avatar_dir, 2)
        restarted = time.monotonic()
        try:
            await second.ready()
            await wait_for(lambda: _now(len(_said(workdir)) > len(on_air_before)), 60, "the talk resumed")
            recovery = time.monotonic() - restarted
            resumed = _said(workdir)[len(on_air_before)]
            if resumed != on_air_before[-1]:
                lost.append(f"resumed at {resumed!r}, not at the interrupted {on_air_before[-1]!r}")
            notes.append(f"resumed at the interrupted sentence {resumed[:30]!r}...")
        finally:
            second.stop()
    expected = 0 if sig == signal.SIGTERM else -signal.SIGKILL
    shown = f"exit code {code}, then a restart healthy on the same store" if code == expected else ""
    return Outcome(name, shown, exit_s, recovery, lost, notes="; ".join(notes))


def _playable(path: Path) -> bool:
    import av  # noqa: PLC0415

    try:
        with av.open(str(path)) as container:
            return sum(1 for _ in container.demux(video=0)) > 0
    except (av.FFmpegError, OSError):
        return False


async def main() -> None:
    import tempfile  # noqa: PLC0415

    from bench.faults import table  # noqa: PLC0415

    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            work = Path(tmp) / sig.name
            work.mkdir()
            outcomes.append(await process_fault(work, sig, str(ROOT / "avatars")))
    print(table(outcomes))


if __name__ == "__main__":
    asyncio.run(main())

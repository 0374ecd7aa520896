"""How fast a moderator's "say now" reaches the program, through the real control API.

Runs the whole broadcaster in this process (the sample avatar, the program thread, the director, the
store, the control server on a free port; no outputs) with a scripted talk on air, connects to the
control WebSocket as the dashboard does, and sends "say now" with a line whose audio is cached (it was
said once before). Each time it measures, from the moment the command is sent:

- ``say_now``: until the line's first sample is in the program: the tick that carries it is rendered
  (the speech track cut, the line queued, its first tick pulled by the render thread);
- ``due``: until that tick is due on the wall clock, i.e. ``say_now`` plus the program's lead, which
  is when an output sends it (``program.lead_ms``, 300 by default).

Prints ``RESULT {json}`` last. Usage: ``python bench/control.py [--runs 30] [--lead-ms 300]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import percentile  # noqa: E402
from bench.voice_show import RunningShow, running_show  # noqa: E402

LINE = "Hello everyone, a quick note from the moderator."


class Console:
    """A control API client: commands with replies, and the on_air events."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = 0
        self.replies: dict[int, asyncio.Future[Any]] = {}
        self.on_air: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def read(self) -> None:
        async for raw in self.ws:
            if isinstance(raw, bytes):
                continue
            msg = orjson.loads(raw)
            if msg.get("event") == "on_air":
                self.on_air.put_nowait(msg["data"])
            elif "id" in msg and msg["id"] in self.replies:
                self.replies.pop(msg["id"]).set_result(msg)

    async def send(self, cmd: str, **args: Any) -> float:
        """Send a command; returns the wall time (ms) it was sent, once it is acknowledged."""
        self.ids += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.replies[self.ids] = future
        sent = time.time() * 1000
        await self.ws.send(json.dumps({"id": self.ids, "cmd": cmd, **args}))
        reply = await asyncio.wait_for(future, 30)
        if not reply.get("ok"):
            raise RuntimeError(f"{cmd}: {reply}")
        return sent

    def forget(self) -> None:
        """Drop the on_air events received so far."""
        while not self.on_air.empty():
            self.on_air.get_nowait()

    async def aired(self, text: str) -> dict[str, Any]:
        """The next on_air event of ``text``'s first sentence."""
        async with asyncio.timeout(30.0):
            while True:
                event = await self.on_air.get()
                if event.get("text") and text.startswith(event["text"]):
                    return event


async def measure(show: RunningShow, runs: int) -> dict[str, Any]:
    app = show.app
    url = f"ws://127.0.0.1:{show.port}/ws"
    async with connect(url, additional_headers={"Authorization": f"Bearer {show.token}"}) as ws:
        console = Console(ws)
        reader = asyncio.create_task(console.read())
        await console.send("subscribe", topics=["on_air"])
        await console.send("say", text=LINE, mode="now")  # synthesised once: the cache has it from now
        await console.aired(LINE)
        say_now: list[float] = []
        due: list[float] = []
        for _ in range(runs):
            await console.send("script.start", script="power-bank-pitch")
            await asyncio.sleep(1.5)  # the talk is on air, mid-sentence
            console.forget()
            sent = await console.send("say", text=LINE, mode="now")
            event = await console.aired(LINE)
            say_now.append(event["at_ms"] - sent)
            if event.get("tick") is not None:
                # when that tick is due: the anchor maps ticks to monotonic time; convert to wall ms
                due_wall = time.time() * 1000 + (app.clock.due(event["tick"]) - time.monotonic()) * 1000
                due.append(due_wall - sent)
            await console.send("script.stop")
            await asyncio.sleep(0.3)
        reader.cancel()
    return {
        "runs": runs,
        "lead_ms": app.cfg.program.lead_ms,
        "say_now_p50_ms": percentile(say_now, 50),
        "say_now_p95_ms": percentile(say_now, 95),
        "say_now_max_ms": round(max(say_now), 1),
        "due_p50_ms": percentile(due, 50),
        "due_p95_ms": percentile(due, 95),
        "say_now_mean_ms": round(statistics.fmean(say_now), 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--lead-ms", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            "rtc.preview=true",  # as a live room's console has it
            "show.resume_after_s=600",
            f"program.lead_ms={args.lead_ms}",
        ]
        async with running_show(Path(tmp), overrides) as show:
            result = await measure(show, args.runs)
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())

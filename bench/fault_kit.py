"""What the fault table injects faults into: the show in this process, and real servers around it.

- ``FaultyLlm``: an OpenAI-compatible chat server (SSE streaming) told to answer, fail with 500s,
  stall in the middle of a reply, or write something the safety filter must hold back.
- ``FaultySpeech``: an OpenAI-compatible ``/audio/speech`` server told to speak, fail, hang, or
  answer with garbage bytes.
- ``Probe``: /healthz and /metrics over HTTP, with the console's token.
- ``Stage``: the running show with whichever of those (plus nginx-rtmp, a WHIP endpoint, a JSON chat
  relay behind a proxy that can go silent, a recorder on a small filesystem) a fault needs; it knows
  the program's lateness since the fault began and reads the store as another process would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
import numpy as np
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bench.voice_show import ROOT, RunningShow, running_show
from broadcaster.latency import Histogram
from broadcaster.stream.rtc.peer import use_host_addresses
from tests.conftest import NginxRtmp
from tests.http_servers import serve
from tests.json_relay_server import JsonRelay
from tests.speech_samples import speech
from tests.whip_endpoint import WhipEndpoint, serve_whip
from tests.ws_servers import SilentProxy

LlmMode = Literal["ok", "error", "stall", "banned"]
SpeechMode = Literal["ok", "error", "hang", "garbage"]
REPLY = "Thanks for asking, the tea is fresh today. It came from the hills last week."
BANNED = "This tea cures cancer. "
POLL_S = 0.2  # /healthz polled 5 times a second: within the console's request limit


def _chunk(text: str) -> bytes:
    body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    body["choices"] = [{"index": 0, "delta": {"content": text}, "finish_reason": None}]
    return f"data: {json.dumps(body)}\n\n".encode()


@dataclass
class FaultyLlm:
    """Streams ``REPLY`` word by word, or fails as ``mode`` says."""

    mode: LlmMode = "ok"
    requests: int = 0
    base_url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.requests += 1
        mode = self.mode
        if mode == "error":
            body = {"error": {"message": "injected failure", "type": "server_error"}}
            return web.json_response(body, status=500)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        words = (BANNED + REPLY if mode == "banned" else REPLY).split(" ")
        for i, word in enumerate(words):
            await response.write(_chunk(word + " "))
            await asyncio.sleep(0.01)
            if mode == "stall" and word.endswith("."):
                await asyncio.sleep(3600)  # a stalled model: the connection stays open, silent
            if i == len(words) - 1:
                await response.write(b"data: [DONE]\n\n")
        return response


@dataclass
class FaultySpeech:
    """Answers ``/audio/speech`` with 24 kHz PCM of a spoken phrase, or fails as ``mode`` says."""

    mode: SpeechMode = "ok"
    requests: int = 0
    base_url: str = ""
    pcm: bytes = b""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.requests += 1
        if self.mode == "error":
            return web.json_response({"error": {"message": "injected failure"}}, status=500)
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "garbage":
            noise = np.random.default_rng(self.requests).standard_normal(24000) * 6000
            return web.Response(body=noise.astype("<i2").tobytes())
        if not self.pcm:
            self.pcm = speech("Fresh tea from the hills.", 24000).astype("<i2").tobytes()
        return web.Response(body=self.pcm)


class Probe:
    """/healthz and /metrics of the show, read like a monitoring system reads them."""

    def __init__(self, port: int, token: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.headers = {"Authorization": f"Bearer {token}"}

    async def _get(self, path: str) -> tuple[int, str]:
        """GET ``path``; a 429 (the console's request limit) is waited out, as a scraper backs off."""
        async with aiohttp.ClientSession(headers=self.headers) as session:
            for _ in range(20):
                async with session.get(self.base + path) as r:
                    if r.status != 429:
                        return r.status, await r.text()
                await asyncio.sleep(0.5)
        raise RuntimeError(f"{path}: still 429 after 10 s")

    async def health(self) -> dict[str, Any]:
        status, text = await self._get("/healthz")
        body = dict(json.loads(text))
        body["status"] = status
        return body

    async def component(self, name: str) -> dict[str, Any]:
        components = (await self.health()).get("components", {})
        return dict(components.get(name) or {})

    async def metrics(self) -> dict[str, float]:
        """Every sample, keyed ``name{label=value,...}`` (labels sorted)."""
        _, text = await self._get("/metrics")
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}"] = float(sample.value)
        return out

    async def metric(self, name: str, **labels: str) -> float:
        """One sample (0 when absent): ``name`` without the ``broadcaster_`` prefix."""
        key = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        return (await self.metrics()).get(f"broadcaster_{name}{{{key}}}", 0.0)


async def wait_for(check: Callable[[], Awaitable[bool]], within: float, what: str) -> float:
    """Seconds until ``check()`` holds; TimeoutError naming ``what`` after ``within`` seconds."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            raise TimeoutError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(POLL_S)
    return time.monotonic() - started


@dataclass
class Stage:
    """The running show and what surrounds it for one fault."""

    show: RunningShow
    probe: Probe
    workdir: Path
    llm: FaultyLlm
    speech: FaultySpeech
    nginx: NginxRtmp | None = None
    whip: WhipEndpoint | None = None
    relay: JsonRelay | None = None
    proxy: SilentProxy | None = None
    recordings: Path | None = None
    _lateness: Histogram | None = None
    _repeats: int = 0
    notes: list[str] = field(default_factory=list)

    def mark(self) -> None:
        """The fault begins: lateness and repeats are counted from here."""
        stats = self.show.app.program.stats
        self._lateness, self._repeats = stats.lateness.copy(), stats.repeats

    def lateness(self) -> tuple[float, float, int]:
        """(p99 ms, max ms, repeated pictures) of the ticks since ``mark``; negative: ahead."""
        stats = self.show.app.program.stats
        assert self._lateness is not None, "mark() first"
        since = stats.lateness.since(self._lateness)
        return since.percentile(99) or 0.0, since.max() or 0.0, stats.repeats - self._repeats

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of the show's store, read by a connection of its own (as after a crash)."""
        conn = sqlite3.connect(f"file:{self.workdir / 'show.sqlite3'}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    async def said(self, text: str, within: float = 30.0) -> float:
        """Seconds until a sentence starting with ``text`` is in the on-air log."""

        async def check() -> bool:
            return bool(self.rows("SELECT 1 FROM on_air WHERE text LIKE ?", text + "%"))

        return await wait_for(check, within, f"{text!r} on air")

    async def healthy(self, component: str, ok: bool, within: float) -> float:
        """Seconds until /healthz says ``component`` is (or is not) ok."""

        async def check() -> bool:
            return (await self.probe.component(component)).get("ok") is ok

        return await wait_for(check, within, f"/healthz {component} ok={ok}")


@contextlib.contextmanager
def small_filesystem(size_mb: int) -> Any:
    """A tmpfs of ``size_mb`` mounted on a fresh folder (root only; OSError otherwise)."""
    folder = Path(tempfile.mkdtemp(prefix="faults-disk-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        folder.rmdir()
        raise OSError(f"cannot mount a small filesystem: {done.stderr.strip() or done.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)
        with contextlib.suppress(OSError):
            folder.rmdir()


def feed_table(url: str) -> str:
    """The ``[[feeds]]`` entry of a plain JSON relay, quick to notice silence and to reconnect."""
    return (
        f'{{type="json", name="relay", url="{url}", preset="plain", liveness_s=2, '
        "backoff_initial_s=0.2, backoff_max_s=1}"
    )


@contextlib.asynccontextmanager
async def stage(
    workdir: Path,
    needs: frozenset[str] = frozenset(),
    overrides: tuple[str, ...] = (),
) -> AsyncIterator[Stage]:
    """The show with what ``needs`` names: nginx, whip, relay, disk, tts (the faulty speech engine first)."""
    async with contextlib.AsyncExitStack() as stack:
        llm, voice = FaultyLlm(), FaultySpeech()
        llm.base_url = await stack.enter_async_context(serve(llm.handle)) + "/v1"
        voice.base_url = await stack.enter_async_context(serve(voice.handle)) + "/v1"
        extra = [
            f'llm.base_url="{llm.base_url}"',
            "llm.first_token_timeout_s=3",
            "llm.timeout_s=2",
            "chat.interval_s=0",
            "voice_in.enabled=false",
            "voice.first_audio_timeout_s=1.5",
        ]
        if "tts" in needs:
            extra += ['voice.engines=["openai", "local"]', f'voice.openai.base_url="{voice.base_url}"']
        outputs: list[str] = []
        nginx = relay = proxy = whip = recordings = None
        if "nginx" in needs:
            nginx = NginxRtmp(workdir / "nginx")
            nginx.start()
            stack.callback(nginx.kill)
            outputs.append(
                f'{{type="rtmp", name="nginx", url="{nginx.url}", stall_timeout_s=2, '
                "backoff_initial_s=0.2, backoff_max_s=1}"
            )
        if "whip" in needs:
            use_host_addresses(["127.0.0.1"])  # aioice never offers loopback on its own
            stack.callback(use_host_addresses, [])
            whip = await stack.enter_async_context(serve_whip(WhipEndpoint()))
            outputs.append(f'{{type="whip", name="whip", url="{whip.url}"}}')
            extra.append('rtc.host_addresses=["127.0.0.1"]')
        if "disk" in needs:
            recordings = stack.enter_context(small_filesystem(64))
            outputs.append(
                f'{{type="record", path="{recordings}/show.mkv", segment_seconds=10, min_free_mb=4}}'
            )
        if "avatars" in needs:  # a folder of its own, to put a corrupted avatar in
            avatars = workdir / "avatars"
            shutil.copytree(
                ROOT / "avatars" / "sample", avatars / "sample", ignore=shutil.ignore_patterns(".cache")
            )
            extra.append(f'avatar.dir="{avatars}"')
        if "relay" in needs:
            relay = await stack.enter_async_context(JsonRelay())
            proxy = await stack.enter_async_context(SilentProxy(relay.port))
            extra.append(f"feeds=[{feed_table(f'ws://127.0.0.1:{proxy.port}')}]")
        if outputs:
            extra.append(f"outputs=[{', '.join(outputs)}]")
        show = await stack.enter_async_context(running_show(workdir, [*extra, *overrides]))
        yield Stage(
            show,
            Probe(show.port, show.token),
            workdir,
            llm,
            voice,
            nginx=nginx,
            whip=whip,
            relay=relay,
            proxy=proxy,
            recordings=recordings,
        )

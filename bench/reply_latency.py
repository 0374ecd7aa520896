"""Benchmark: the reply pipeline's own latency, from the LLM's first token to the first audio sample
that the program pulls for that reply.

Part 1 (the target): an OpenAI-compatible chat server whose first token takes a known time and a TTS
server (OpenAI ``/audio/speech`` protocol) whose first chunk takes a known time, both real HTTP on
loopback, drive the real program (avatar, lip-sync, speech track, no outputs). The first token carries
a complete first clause, so what remains of first-token-to-first-sample beyond the TTS's known delay is
pipeline overhead: splitting, the safety filter, the HTTP round trip, resampling, the prebuffer and
the wait for the next program tick. Target p95 < 80 ms.

Part 2 (real figures): the bundled local model (SmolLM2 on llama.cpp) and the offline espeak-ng voice:
first token, first audio on the program, and first-token-to-first-sample (which here includes the
time the model takes to write the first clause and espeak's first chunk).

Usage: python bench/reply_latency.py [--replies 30] [--local-replies 8]
Prints RESULT {json} on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from broadcaster.app import Broadcaster, RunOptions  # noqa: E402
from broadcaster.config import load_config  # noqa: E402
from broadcaster.face.builder import build_avatar  # noqa: E402
from broadcaster.show.host import Reply  # noqa: E402
from broadcaster.show.persona import Question  # noqa: E402
from tests.conftest import grace_hopper  # noqa: E402
from tests.http_servers import serve  # noqa: E402
from tests.openai_double import ScriptedLlm  # noqa: E402

LLM_FIRST_TOKEN_S = 0.300
TTS_FIRST_CHUNK_S = 0.150
TOKENS = [
    "欢迎来到直播间，",
    "这款",
    "西湖",
    "龙井",
    "是",
    "今年",
    "的",
    "新茶",
    "，",
    "喝",
    "起来",
    "很",
    "清爽",
    "。",
]
QUESTIONS = ["这个茶叶怎么样？", "What tea is this?", "好喝吗", "有什么特点？"]


class TimedSpeech:
    """``/v1/audio/speech``: waits ``first_s``, then streams 24 kHz PCM in 100 ms pieces, 4x real time."""

    def __init__(self, first_s: float) -> None:
        self.first_s = first_s
        t = np.arange(24000 * 2) / 24000
        self.pcm = (6000 * np.sin(2 * np.pi * 190 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(
            "<i2"
        )
        self._servers = contextlib.AsyncExitStack()

    async def start(self) -> str:
        return await self._servers.enter_async_context(serve(self._speech)) + "/v1"

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await response.prepare(request)
        await asyncio.sleep(self.first_s)
        piece = 2400
        for i in range(0, len(self.pcm), piece):
            await response.write(self.pcm[i : i + piece].tobytes())
            await asyncio.sleep(0.025)
        return response

    async def close(self) -> None:
        await self._servers.aclose()


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else float("nan")


async def wait_played(reply: Reply) -> None:
    speech = reply.speech
    if speech is None or not speech.sentences:
        return
    last = speech.sentences[-1].utterances[-1]
    await asyncio.to_thread(last.done.wait, 60)


async def run_replies(overrides: list[str], count: int) -> tuple[list[Reply], dict[str, Any]]:
    cfg = load_config(ROOT / "config.toml", overrides)
    app = Broadcaster(cfg, RunOptions())
    running = asyncio.create_task(app.run())
    replies = []
    try:
        await app.show.start_llm()
        for i in range(count):
            question = Question(f"viewer-{i % 5}", f"观众{i % 5}", QUESTIONS[i % len(QUESTIONS)])
            reply = await app.show.host.reply(question)
            await wait_played(reply)
            replies.append(reply)
    finally:
        app.stop()
        summary = await running
    return replies, summary


def first_sample_ms(reply: Reply) -> float | None:
    first = reply.speech.first if reply.speech else None
    if first is None or first.started_at is None or reply.first_token_at is None:
        return None
    return (first.started_at - reply.first_token_at) * 1000


async def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replies", type=int, default=30)
    parser.add_argument("--local-replies", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    avatars = Path(tempfile.mkdtemp(prefix="bench-avatars-"))
    build_avatar(grace_hopper(), "sample", avatars)
    common = [f"avatar.dir={json.dumps(str(avatars))}", "outputs=[]", "program.status_interval_s=3600"]

    llm = ScriptedLlm(TOKENS, first_token_s=LLM_FIRST_TOKEN_S, token_s=0.02)
    tts = TimedSpeech(TTS_FIRST_CHUNK_S)
    llm_url, tts_url = await llm.start(), await tts.start()
    try:
        replies, summary = await run_replies(
            [
                *common,
                f'llm.base_url="{llm_url}"',
                'voice.engines=["openai"]',
                f'voice.openai.base_url="{tts_url}"',
                "voice.cache.enabled=false",
            ],
            args.replies,
        )
    finally:
        await llm.close()
        await tts.close()
    overhead = [ms - TTS_FIRST_CHUNK_S * 1000 for r in replies if (ms := first_sample_ms(r)) is not None]
    result: dict[str, Any] = {
        "replies": len(replies),
        "llm_first_token_ms": LLM_FIRST_TOKEN_S * 1000,
        "tts_first_chunk_ms": TTS_FIRST_CHUNK_S * 1000,
        "overhead_p50_ms": percentile(overhead, 50),
        "overhead_p95_ms": percentile(overhead, 95),
        "overhead_max_ms": round(max(overhead), 1) if overhead else None,
        "program_repeats": summary["repeats"],
    }
    if args.local_replies:
        local, local_summary = await run_replies(
            [*common, 'llm.base_url=""', 'voice.engines=["local"]'], args.local_replies
        )
        token_ms = [(r.first_token_at - r.started_at) * 1000 for r in local if r.first_token_at]
        audio_ms = [
            (r.speech.first.started_at - r.started_at) * 1000
            for r in local
            if r.speech and r.speech.first and r.speech.first.started_at
        ]
        after_token = [ms for r in local if (ms := first_sample_ms(r)) is not None]
        result.update(
            {
                "local_replies": len(local),
                "local_first_token_p50_ms": percentile(token_ms, 50),
                "local_first_audio_p50_ms": percentile(audio_ms, 50),
                "local_first_audio_p95_ms": percentile(audio_ms, 95),
                "local_token_to_audio_p50_ms": percentile(after_token, 50),
                "local_program_repeats": local_summary["repeats"],
                "local_late_max_ms": local_summary["late_max_ms"],
            }
        )
    return result


if __name__ == "__main__":
    started = time.monotonic()
    figures = asyncio.run(main())
    figures["bench_s"] = round(time.monotonic() - started, 1)
    print("RESULT " + json.dumps(figures))

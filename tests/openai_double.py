"""An OpenAI-compatible chat server that streams a scripted reply over real HTTP (SSE), for tests and
benchmarks that need an exact reply or exact timing; the real model is tested against llama.cpp."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.http_servers import serve


@dataclass
class ScriptedLlm:
    """Streams ``tokens`` after ``first_token_s``, one every ``token_s``; records requests."""

    tokens: Sequence[str]
    first_token_s: float = 0.0
    token_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    first_token_sent: list[float] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)
    disconnects: int = 0
    base_url: str = ""
    _servers: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def start(self) -> str:
        self.base_url = await self._servers.enter_async_context(serve(self._chat)) + "/v1"
        return self.base_url

    async def close(self) -> None:
        await self._servers.aclose()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            await asyncio.sleep(self.first_token_s)
            for i, token in enumerate(self.tokens):
                if i:
                    await asyncio.sleep(self.token_s)
                else:
                    self.first_token_sent.append(time.monotonic())
                chunk = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": body.get("model", ""),
                    "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}],
                }
                await response.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            self.finished.append(time.monotonic())
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects += 1
            raise
        return response

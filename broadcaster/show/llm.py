"""Replies from any OpenAI-compatible chat endpoint, streamed token by token.

DashScope (Qwen), DeepSeek, Ollama, vLLM, llama.cpp and the bundled local model all speak the same
``/v1/chat/completions`` streaming protocol, so one client serves them (the ``openai`` package). The
first token must come within ``first_token_timeout_s``, each next one within ``timeout_s``; a slow or
dead endpoint raises ``LlmError`` instead of stalling the show. Cancelling the task that iterates a
reply closes its HTTP response at once (the server sees the connection go and stops generating).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import openai

from broadcaster.config import LlmConfig
from broadcaster.latency import RecentLatency
from broadcaster.stream.rtc.settings import redact_text

log = logging.getLogger(__name__)

Message = dict[str, str]


class LlmError(Exception):
    """The endpoint failed, refused, or took too long; the reply is abandoned (and counted)."""


class LlmClient:
    """A streaming chat client for one endpoint and model."""

    def __init__(self, cfg: LlmConfig, base_url: str, model: str | None = None) -> None:
        self.cfg = cfg
        self.base_url = base_url
        self.model = model or cfg.model
        key = os.environ.get(cfg.api_key_env, "") or "none"
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=key, max_retries=0, timeout=cfg.timeout_s
        )
        self.requests = 0
        self.failures = 0
        self.failing = 0  # failed requests in a row: 0 once a reply streams to its end
        self.last_error = ""
        self.cancelled = 0
        self.first_token = RecentLatency()

    def stats(self) -> dict[str, Any]:
        """Counters for the status line and the run summary."""
        return {
            "requests": self.requests,
            "failures": self.failures,
            "failing": self.failing,
            "last_error": self.last_error,
            "cancelled": self.cancelled,
            "first_token_p50_ms": self.first_token.p50(),
        }

    async def stream(
        self, messages: Sequence[Message], max_tokens: int | None = None
    ) -> AsyncGenerator[str, None]:
        """The reply's text, piece by piece as the model writes it."""
        self.requests += 1
        started = time.monotonic()
        stream: Any = None
        try:
            async with asyncio.timeout(self.cfg.first_token_timeout_s):
                stream = await self._client.chat.completions.create(
                    model=self.model,
                    messages=list(messages),  # type: ignore[arg-type]
                    stream=True,
                    max_tokens=max_tokens or self.cfg.max_tokens,
                    temperature=self.cfg.temperature,
                )
                iterator = aiter(stream)
                first = await self._next_text(iterator)
            self.first_token.add((time.monotonic() - started) * 1000)
            if first is None:
                self.failing = 0
                return
            yield first
            while True:
                async with asyncio.timeout(self.cfg.timeout_s):
                    text = await self._next_text(iterator)
                if text is None:
                    self.failing = 0
                    return
                yield text
        except GeneratorExit:  # the reader had enough (a length budget): the model was working
            self.failing = 0
            raise
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        except TimeoutError as exc:
            raise self._failed(f"{self.base_url}: no tokens in time") from exc
        except openai.APIError as exc:
            raise self._failed(f"{self.base_url}: {exc}") from exc
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.close()

    def _failed(self, message: str) -> LlmError:
        message = redact_text(message)  # base_url may carry a password or a key in its query
        self.failures += 1
        self.failing += 1
        self.last_error = message[:300]
        return LlmError(message)

    async def warm_up(self, messages: Sequence[Message]) -> None:
        """Have the server read ``messages`` once (one token out); failures only log.

        A local model keeps the prefix cached, so the first real reply does not wait for it. Not a
        reply: it is not counted.
        """
        try:
            async with asyncio.timeout(self.cfg.first_token_timeout_s):
                await self._client.chat.completions.create(
                    model=self.model,
                    messages=list(messages),  # type: ignore[arg-type]
                    max_tokens=1,
                )
        except (TimeoutError, openai.APIError) as exc:
            log.warning("LLM warm-up failed: %s", exc or "no answer in time")

    @staticmethod
    async def _next_text(iterator: Any) -> str | None:
        """The next non-empty text delta, or None at the end of the reply."""
        async for chunk in iterator:
            if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                return str(chunk.choices[0].delta.content)
        return None

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()

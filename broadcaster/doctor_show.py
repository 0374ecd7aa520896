"""The doctor's checks of the voice and the mind: every TTS engine speaks, the LLM answers.

Both are built as the show builds them (``build_chain``; the configured endpoint or the bundled local
model) and closed after their checks. The engines are asked directly, one by one, past the audio
cache, so a row says how that engine does today, not what it said last week.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from broadcaster.config import Config, ConfigError
from broadcaster.doctor_checks import Check, Group, Outcome, in_thread, speaks_chinese
from broadcaster.stream.rtc.settings import redact_url

if TYPE_CHECKING:
    from broadcaster.show.llm import LlmClient
    from broadcaster.show.local_llm import LocalLlmServer
    from broadcaster.show.persona import Persona
    from broadcaster.voice.chain import TtsChain

SENTENCES = {
    "zh": "欢迎来到直播间，今天的新茶刚刚到货。",
    "en": "Welcome to the stream, the new tea just arrived.",
}
QUESTIONS = {"zh": "你好，请用一句话介绍一下你自己。", "en": "Hello! Who are you, in one sentence?"}
SILENT_PEAK = 1e-3  # -60 dBFS
LOCAL_START_S = 60.0
REPLY_TOKENS = 32
SHOWN_CHARS = 60
SLOW_SHARE = 0.5  # a first token later than this share of llm.first_token_timeout_s is a warning


class VoiceChecks:
    """[tts]: one row per engine of ``voice.engines``; the chain is built once and closed after."""

    def __init__(self, cfg: Config, timeout: float) -> None:
        self.cfg = cfg
        self.timeout = timeout
        self.language = "zh" if speaks_chinese(cfg) else "en"
        self._chain: TtsChain | None = None
        self._error = ""

    def group(self) -> Group:
        """The rows, in chain order."""
        checks = [
            Check(f"tts {name}", partial(self.engine, i), self.timeout)
            for i, name in enumerate(self.cfg.voice.engines)
        ]
        return Group("tts", checks, self.close)

    async def engine(self, position: int) -> Outcome:  # noqa: PLR0911 (one verdict per case)
        """Engine ``position`` of the chain speaks a sentence in the host's language."""
        from broadcaster.voice.tts.base import TtsError  # noqa: PLC0415

        chain = await self._built()
        if chain is None:
            return Outcome("FAIL", self._error)
        engine = chain.engines[position]
        text = SENTENCES[self.language]
        started = time.monotonic()
        first_s: float | None = None
        seconds = peak = 0.0
        stream = engine.stream(text)
        try:
            async with asyncio.timeout(self.timeout):
                async for chunk in stream:
                    if first_s is None:
                        first_s = time.monotonic() - started
                    seconds += chunk.pcm.shape[0] / chunk.rate
                    peak = max(peak, _peak(chunk.pcm))
        except TimeoutError:
            what = "no audio" if first_s is None else "the sentence not finished"
            return Outcome("FAIL", f"{what} within {self.timeout:g} s")
        except TtsError as exc:
            return Outcome("FAIL", str(exc))
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        if first_s is None:
            return Outcome("FAIL", f"no audio for {text!r}")
        if peak < SILENT_PEAK:
            return Outcome(
                "FAIL", f"{seconds:.1f} s of silence for {text!r}: check the voice and its settings"
            )
        detail = (
            f"first audio in {first_s * 1000:.0f} ms, {seconds:.1f} s of speech, "
            f"peak {20 * math.log10(peak):.0f} dBFS"
        )
        limit = self.cfg.voice.first_audio_timeout_s
        if first_s > limit:
            return Outcome(
                "WARN",
                f"{detail}: slower than voice.first_audio_timeout_s = {limit:g}, so the chain gives its "
                "sentences to the next engine",
            )
        return Outcome("OK", detail)

    async def _built(self) -> TtsChain | None:
        from broadcaster.show.show import build_chain  # noqa: PLC0415

        if self._chain is None and not self._error:
            try:
                self._chain = await in_thread(lambda: build_chain(self.cfg))
            except ConfigError as exc:
                self._error = str(exc)
        return self._chain

    async def close(self) -> None:
        """Close every engine of the chain."""
        if self._chain is not None:
            for engine in self._chain.engines:
                with contextlib.suppress(Exception):
                    await engine.aclose()


def _peak(pcm: np.ndarray) -> float:
    """The chunk's peak, as a share of full scale (int16 or float samples)."""
    if pcm.size == 0:
        return 0.0
    scale = float(np.iinfo(pcm.dtype).max) + 1 if pcm.dtype.kind == "i" else 1.0
    return float(np.abs(pcm.astype(np.float64)).max() / scale)


class MindChecks:
    """[llm]: the LLM the show would use answers a viewer's question; a local model server is stopped after.

    The question goes through the persona's real prompt (with the product facts) and framing, and the
    show's own time limits (``llm.first_token_timeout_s``), so the row says how a reply would fare.
    """

    def __init__(self, cfg: Config, timeout: float) -> None:
        self.cfg = cfg
        self.timeout = timeout
        self.start_limit = max(timeout, LOCAL_START_S)
        self.language = "zh" if speaks_chinese(cfg) else "en"
        self._server: LocalLlmServer | None = None
        self._client: LlmClient | None = None
        self._persona: Persona | None = None

    def group(self) -> Group:
        """A row for the local model's start (when it is the one used), then one for the reply."""
        checks = []
        reading = self.cfg.llm.first_token_timeout_s
        if not self.cfg.llm.base_url:
            checks.append(Check("llm local model", self.start_local, self.start_limit + reading))
        checks.append(Check("llm reply", self.reply, max(self.timeout, reading)))
        return Group("llm", checks, self.close)

    async def start_local(self) -> Outcome:
        """Start the bundled model's server and have it read the persona's prompt, as the show does."""
        from broadcaster.show.llm import LlmClient, LlmError  # noqa: PLC0415
        from broadcaster.show.local_llm import LocalLlmError, LocalLlmServer, bundled_model  # noqa: PLC0415

        started = time.monotonic()
        self._server = LocalLlmServer(self.cfg.llm)
        try:
            base_url = await self._server.start(self.start_limit)
        except LocalLlmError as exc:
            return Outcome("FAIL", str(exc))
        self._client = LlmClient(self.cfg.llm, base_url, "local")
        served = f"{bundled_model().name} on {base_url}, started in {time.monotonic() - started:.1f} s"
        system = (await self._persona_now()).system_prompt
        reading = time.monotonic()
        try:  # the show's warm-up: one token out, so the prompt's prefix is cached for the replies
            async with contextlib.aclosing(
                self._client.stream([{"role": "system", "content": system}], 1)
            ) as out:
                async for _ in out:
                    break
        except LlmError as exc:
            return Outcome("WARN", f"{served}; reading the persona's prompt failed: {exc}; {self._slow()}")
        took = time.monotonic() - reading
        detail = f"{served}; read the persona's prompt in {took:.1f} s"
        if took > SLOW_SHARE * self.cfg.llm.first_token_timeout_s:
            return Outcome("WARN", f"{detail}; close to the limit: {self._slow()}")
        return Outcome("OK", detail)

    async def reply(self) -> Outcome:
        """A viewer's short question, framed as the show frames chat; time to first token, first words."""
        from broadcaster.show.llm import LlmClient, LlmError  # noqa: PLC0415
        from broadcaster.show.persona import Question  # noqa: PLC0415

        if self._client is None:
            if not self.cfg.llm.base_url:
                return Outcome("SKIP", "the local model did not start (see above)")
            self._client = LlmClient(self.cfg.llm, self.cfg.llm.base_url)
        persona = await self._persona_now()
        messages = persona.messages(Question("doctor:1", "doctor", QUESTIONS[self.language]), "doctor")
        url = self.cfg.llm.base_url
        where = f"{redact_url(url)} (model {self._client.model})" if url else "the local model"
        started = time.monotonic()
        first_s: float | None = None
        text = ""
        try:
            async with contextlib.aclosing(self._client.stream(messages, REPLY_TOKENS)) as stream:
                async for piece in stream:
                    if first_s is None:
                        first_s = time.monotonic() - started
                    text += piece
                    if len(text) >= SHOWN_CHARS:
                        break
        except LlmError as exc:
            return Outcome("FAIL", f"{exc}; {self._slow()}" if "in time" in str(exc) else str(exc))
        words = " ".join(text.split())
        if first_s is None or not words:
            return Outcome("FAIL", f"{where} answered with no text")
        shown = words[:SHOWN_CHARS] + ("…" if len(words) > SHOWN_CHARS else "")
        detail = f"{where}: first token in {first_s * 1000:.0f} ms: {shown!r}"
        if first_s > SLOW_SHARE * self.cfg.llm.first_token_timeout_s:
            return Outcome("WARN", f"{detail}; close to the limit: {self._slow()}")
        return Outcome("OK", detail)

    def _slow(self) -> str:
        """What to do about a model slower than the show's limits."""
        limit = f"llm.first_token_timeout_s = {self.cfg.llm.first_token_timeout_s:g} s"
        if self.cfg.llm.base_url:
            return f"the endpoint is slow for {limit}: raise it, or use a faster endpoint"
        threads = self.cfg.llm.local_threads or max(1, (os.cpu_count() or 2) - 1)
        return (
            f"the local model ({threads} thread(s)) is slow for {limit} on this machine: free the CPU, "
            "raise llm.local_threads or the limit, or set llm.base_url to an endpoint"
        )

    async def _persona_now(self) -> Persona:
        """The persona, grounded in the product facts (none if unreadable: the config row says why)."""
        from broadcaster.show.persona import Persona  # noqa: PLC0415
        from broadcaster.show.show import build_catalog  # noqa: PLC0415

        if self._persona is None:
            try:
                facts = (await in_thread(lambda: build_catalog(self.cfg))).grounding()
            except ConfigError:
                facts = ""
            self._persona = Persona(self.cfg.persona, facts)
        return self._persona

    async def close(self) -> None:
        """Close the client's connections and stop the local model server."""
        if self._client is not None:
            await self._client.aclose()
        if self._server is not None:
            await self._server.close()

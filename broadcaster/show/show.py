"""The show's voice and mind, built from the config: facts, safety filter, TTS chain, LLM and host.

Owns what it starts (the TTS engines' sessions, the local model server, the LLM client) and closes it
at shutdown. The LLM starts only when something asks for replies, so a room that only reads scripts
never loads a model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from broadcaster.config import Config, ConfigError
from broadcaster.show.host import Host
from broadcaster.show.llm import LlmClient
from broadcaster.show.local_llm import LocalLlmServer
from broadcaster.show.persona import Persona, Question
from broadcaster.show.products import Catalog, ProductError, load_catalog
from broadcaster.show.safety import SafetyFilter
from broadcaster.show.schedule import check_scripts
from broadcaster.show.script_library import ScriptLibrary
from broadcaster.show.scripts import ScriptError
from broadcaster.voice.cache import AudioCache
from broadcaster.voice.chain import TtsChain
from broadcaster.voice.speaker import Gate, Speaker, Speech
from broadcaster.voice.speech_track import SpeechTrack
from broadcaster.voice.tts import create_engine
from broadcaster.voice.tts.base import TtsError
from danmaku.config import ChatConfig
from danmaku.triage.candidate import Candidate

log = logging.getLogger(__name__)


def build_chain(cfg: Config) -> TtsChain:
    """The TTS chain ``voice.engines`` names, with the audio cache in front when enabled."""
    engines = []
    for name in cfg.voice.engines:
        try:
            engines.append(create_engine(name, cfg))
        except (TtsError, ValueError, OSError) as exc:
            raise ConfigError(f"voice.engines: {name}: {exc}") from exc
    cache = None
    if cfg.voice.cache.enabled:
        cache = AudioCache(cfg.resolve(cfg.voice.cache.dir), cfg.voice.cache.max_mb * 1024 * 1024)
    return TtsChain(engines, cfg.voice.first_audio_timeout_s, cfg.voice.timeout_s, cache)


def build_catalog(cfg: Config) -> Catalog:
    """The product facts in ``show.library`` (without its scripts)."""
    try:
        return load_catalog(cfg.resolve(cfg.show.library))
    except ProductError as exc:
        raise ConfigError(f"show.library: {exc}") from exc


def load_library(cfg: Config) -> ScriptLibrary:
    """The scripted talks and product facts of ``show.library``, checked with the schedule."""
    try:
        library = ScriptLibrary.load(cfg.resolve(cfg.show.library), voices=cfg.voice.engines)
    except ScriptError as exc:
        raise ConfigError("show.library:\n  " + "\n  ".join(exc.errors)) from exc
    problems = check_scripts(cfg.schedule, library.ids())
    if problems:
        raise ConfigError("; ".join(problems))
    return library


class Show:
    """Everything between text and the speech track."""

    def __init__(self, cfg: Config, track: SpeechTrack, catalog: Catalog | None = None) -> None:
        self.cfg = cfg
        self.catalog = catalog if catalog is not None else build_catalog(cfg)
        self.safety = SafetyFilter.from_config(cfg, self.catalog)
        self.chain = build_chain(cfg)
        self.speaker = Speaker(track, self.chain, cfg.voice.prebuffer_ms, cfg.voice.ahead_s)
        self.persona = Persona(cfg.persona, self.catalog.grounding())
        self.host = Host(self.speaker, self.safety, cfg.voice.split, self.persona)
        self._server: LocalLlmServer | None = None
        self._llm_start: asyncio.Future[None] | None = None

    def use_catalog(self, catalog: Catalog) -> None:
        """Product facts were edited: the fact guard and the LLM's grounding use the new ones from now."""
        self.catalog = catalog
        self.safety = self.host.safety = SafetyFilter.from_config(self.cfg, catalog)
        self.persona = self.host.persona = self.persona.regrounded(catalog.grounding())

    async def start_llm(self) -> None:
        """Connect the LLM: the configured endpoint, or the bundled local model when none is set.

        Callers at once share one start; after a failure the next call tries again.
        """
        if self._llm_start is None:
            self._llm_start = asyncio.ensure_future(self._start_llm())
        start = self._llm_start
        try:
            await asyncio.shield(start)
        except Exception:
            if self._llm_start is start:
                self._llm_start = None  # the next caller tries again
            raise

    async def _start_llm(self) -> None:
        base_url = self.cfg.llm.base_url
        model = None
        if not base_url:
            self._server = LocalLlmServer(self.cfg.llm)
            base_url = await self._server.start()
            model = "local"
        self.host.llm = LlmClient(self.cfg.llm, base_url, model)
        if self._server is not None:
            # the local model reads the system prompt (persona and product facts) once now, not at the
            # first chat message: llama.cpp keeps the shared prefix
            await self.host.llm.warm_up([{"role": "system", "content": self.persona.system_prompt}])

    async def answer(
        self, candidate: Candidate, chat: ChatConfig, gate: Gate | None = None
    ) -> tuple[str | None, Speech | None]:
        """Say a chat candidate: a reply through the LLM, or a thank-you or greeting from its template.

        Returns (None, what was queued) when it was said, else (why not, None): ``reply_failed``,
        ``interrupted``. ``gate``: the director's sentence boundary.
        """
        if candidate.kind != "answer":
            templates = {"thanks": chat.thanks.template, "welcome": chat.welcome.welcome}
            line = candidate.line(templates.get(candidate.kind, chat.welcome.follow), self.safety.clean_name)
            speech = await self.host.say(line, "viewer", cache=False, gate=gate)
            return (None, speech) if speech is not None else ("interrupted", None)
        await self.start_llm()
        reply = await self.host.reply(self.question(candidate), gate=gate)
        if reply.error and reply.speech is None:  # a model that failed halfway still said its part
            return "reply_failed", None
        if reply.cancelled or reply.speech is None:
            return "interrupted", None
        return None, reply.speech

    @staticmethod
    def question(candidate: Candidate) -> Question:
        """The LLM's question for a chat candidate."""
        event = candidate.event
        return Question(f"{event.platform}:{event.user.id}", event.user.name, event.text)

    def stats(self) -> dict[str, Any]:
        """The voice, host, LLM and safety counters."""
        out: dict[str, Any] = {
            "voice": self.chain.stats(),
            "host": self.host.stats.as_dict(),
            "safety": dict(self.safety.stats),
        }
        if self.host.llm is not None:
            out["llm"] = self.host.llm.stats()
        return out

    async def close(self) -> None:
        """Stop the model server and close every engine's and client's connections."""
        self.host.interrupt()
        if self._llm_start is not None and not self._llm_start.done():
            self._llm_start.cancel()
            await asyncio.gather(self._llm_start, return_exceptions=True)
        if self.host.llm is not None:
            await self.host.llm.aclose()
        if self._server is not None:
            await self._server.close()
        for engine in self.chain.engines:
            with contextlib.suppress(Exception):
                await engine.aclose()

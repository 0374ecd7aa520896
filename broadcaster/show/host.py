"""The host: chat into spoken replies, and lines read aloud, one item at a time, interruptible.

A reply streams end to end: LLM tokens go into the sentence splitter, each sentence through the safety
filter (and its fact guard), and on to the speaker, which synthesises it while the previous one plays.
The first sentence is on air while the rest is still being written. ``interrupt`` cancels the item on
air: the LLM's HTTP stream is closed, the TTS work is cancelled and the queued audio is dropped.
Lines read aloud (scripts, moderator text, viewer names) pass the same filter. The director of the
show issue decides what comes next; this module only performs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

from broadcaster.config import SplitConfig
from broadcaster.show.llm import LlmClient, LlmError, Message
from broadcaster.show.persona import Persona, Question
from broadcaster.show.safety import SafetyFilter
from broadcaster.voice.speaker import Gate, Speaker, Speech
from broadcaster.voice.splitter import SentenceSplitter, split_text

log = logging.getLogger(__name__)

RECENT_REPLIES = 64
Source = Literal["script", "moderator", "viewer"]
Checked = Literal["llm", "script", "moderator", "viewer"]


@dataclass
class Reply:
    """One reply's course: when the model answered, what was said, what the filter stopped."""

    question: Question
    tag: str
    started_at: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    first_sentence_at: float | None = None  # the first sentence was written and passed the filter
    speech: Speech | None = None
    blocked: list[str] = field(default_factory=list)
    error: str = ""
    cancelled: bool = False
    text: str = ""  # what ``compose`` wrote


@dataclass
class HostStats:
    """Counters for the status line and the run summary."""

    replies: int = 0
    failed: int = 0
    cancelled: int = 0
    lines: int = 0
    blocked_sentences: int = 0

    def as_dict(self) -> dict[str, Any]:
        """A plain dict."""
        return vars(self).copy()


class Host:
    """Performs replies and lines on the speech track through one speaker."""

    def __init__(
        self,
        speaker: Speaker,
        safety: SafetyFilter,
        split: SplitConfig,
        persona: Persona | None = None,
        llm: LlmClient | None = None,
    ) -> None:
        self.speaker = speaker
        self.safety = safety
        self.split = split
        self.persona = persona
        self.llm = llm
        self.stats = HostStats()
        self.recent: deque[Reply] = deque(maxlen=RECENT_REPLIES)  # their timings, for benchmarks
        self._current: asyncio.Future[Speech] | None = None

    def _splitter(self) -> SentenceSplitter:
        return SentenceSplitter(self.split.max_chars, self.split.min_chars, self.split.first_min_chars)

    async def reply(self, question: Question, gate: Gate | None = None) -> Reply:
        """Answer one chat message on air; returns when its last sentence is queued, or it stopped.

        ``gate``: awaited between sentences (see ``Speaker.speak``).
        """
        reply = Reply(question, self.speaker.new_tag("reply"))
        self.recent.append(reply)
        name, messages = self._conversation(question)
        try:
            async with contextlib.aclosing(self._reply_sentences(messages, reply)) as sentences:
                reply.speech = await self._perform(self.speaker.speak(sentences, reply.tag, gate=gate))
        except LlmError as exc:
            reply.error = str(exc)
            self.stats.failed += 1
            log.error("reply to %s not given: %s", question.viewer_id, exc)
            return reply
        if reply.speech is None:
            reply.cancelled = True
            self.stats.cancelled += 1
            return reply
        self.stats.replies += 1
        assert self.persona is not None  # _conversation checked it
        self.persona.remember(question, name, reply.speech.text)
        return reply

    def _conversation(self, question: Question) -> tuple[str, list[Message]]:
        """The viewer's name as it may be said, and the messages for the model."""
        if self.llm is None or self.persona is None:
            raise RuntimeError("replies need an LLM and a persona")
        name = self.safety.clean_name(question.viewer_name)
        return name, self.persona.messages(question, name)

    async def _reply_sentences(self, messages: list[Message], reply: Reply) -> AsyncGenerator[str, None]:
        assert self.llm is not None and self.persona is not None
        splitter = self._splitter()
        budget = self.persona.cfg.reply_max_chars
        try:
            async with contextlib.aclosing(self.llm.stream(messages)) as tokens:
                async for token in tokens:
                    if reply.first_token_at is None:
                        reply.first_token_at = time.monotonic()
                    for sentence in splitter.feed(token):
                        allowed = self._allowed(sentence, "llm", reply)
                        if allowed:
                            if reply.first_sentence_at is None:
                                reply.first_sentence_at = time.monotonic()
                            budget -= len(allowed)
                            yield allowed
                        if budget <= 0:
                            log.info(
                                "reply %s reached persona.reply_max_chars; the rest is not said", reply.tag
                            )
                            return
        except LlmError as exc:
            if reply.first_sentence_at is None:
                raise
            # the model failed halfway (a stall, a dropped stream): what it wrote whole is said, the
            # unfinished sentence is not, and the reply ends there instead of being cut off on air
            reply.error = str(exc)
            self.stats.failed += 1
            log.warning("reply %s stopped after its sentences so far: %s", reply.tag, exc)
            return
        for sentence in splitter.flush():
            allowed = self._allowed(sentence, "llm", reply)
            if allowed and budget > 0:
                budget -= len(allowed)
                yield allowed

    def _allowed(self, sentence: str, source: Checked, reply: Reply | None = None) -> str | None:
        decision = self.safety.check(sentence, source=source)
        if decision.text is None:
            self.stats.blocked_sentences += 1
            if reply is not None:
                reply.blocked.append(sentence)
            return None
        return decision.text

    async def compose(self, question: Question) -> Reply:
        """Write a reply without saying it (review mode): the sentences the filter allows, in ``text``."""
        reply = Reply(question, self.speaker.new_tag("review"))
        _, messages = self._conversation(question)
        parts: list[str] = []
        try:
            async with contextlib.aclosing(self._reply_sentences(messages, reply)) as sentences:
                async for sentence in sentences:
                    parts.append(sentence)
        except LlmError as exc:
            reply.error = str(exc)
            self.stats.failed += 1
            log.error("reply to %s not written: %s", question.viewer_id, exc)
        reply.text = "".join(parts)
        return reply

    def sentences(self, text: str, source: Checked = "moderator") -> list[str]:
        """``text`` as the sentences ``say`` puts on air: split, each through the safety filter."""
        split = self.split
        out = []
        for sentence in split_text(text, split.max_chars, split.min_chars, split.first_min_chars):
            allowed = self._allowed(sentence, source)
            if allowed:
                out.append(allowed)
        return out

    async def say(
        self,
        text: str,
        source: Source = "moderator",
        *,
        cache: bool = True,
        gate: Gate | None = None,
        prefer: str | None = None,
        checked: Checked | None = None,
    ) -> Speech | None:
        """Read a line aloud (split, filtered, cached: scripted lines are synthesised once).

        ``checked``: the filter's source when it differs (a reviewed LLM reply is checked as ``llm``).
        Returns what was queued, or None when it was interrupted.
        """
        lines = self.sentences(text, checked or source)
        return await self.say_lines(lines, source, cache=cache, gate=gate, prefer=prefer)

    async def say_lines(
        self,
        lines: list[str],
        source: Source,
        *,
        cache: bool = True,
        gate: Gate | None = None,
        prefer: str | None = None,
    ) -> Speech | None:
        """Say sentences already split and filtered (``sentences``); None when it was interrupted."""
        tag = self.speaker.new_tag(source)

        async def sentences() -> AsyncIterator[str]:
            for line in lines:
                yield line

        speech = await self._perform(
            self.speaker.speak(sentences(), tag, cache=cache, gate=gate, prefer=prefer)
        )
        if speech is not None:
            self.stats.lines += 1
        return speech

    async def _perform(self, work: Coroutine[Any, Any, Speech]) -> Speech | None:
        """Run ``work`` as the interruptible item on air; None if ``interrupt`` cancelled it."""
        task = asyncio.ensure_future(work)
        self._current = task
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled() and not _being_cancelled():
                return None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise
        finally:
            if self._current is task:
                self._current = None

    def interrupt(self) -> bool:
        """Cancel what is being performed (LLM stream, TTS work, queued audio); False if nothing was."""
        task = self._current
        if task is None or task.done():
            return False
        task.cancel()
        return True


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0

"""Sentences onto the speech track: each is synthesised by the TTS chain and queued as it streams.

The speaker takes sentences as they come (from the LLM through the splitter and the safety filter, or
from a script) and keeps the order: sentence n+1 is synthesised while sentence n plays, and its audio
queues right behind. Synthesis follows demand: while more than ``ahead_s`` of speech is queued, the
next sentence waits, so an interrupt wastes little TTS work (and little of a paid service's quota).
Cancelling ``speak`` (an interrupt) stops the TTS work at once and drops what this call queued that
has not played (``SpeechTrack.drop`` by tag).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field

from broadcaster.voice.chain import TtsChain
from broadcaster.voice.speech_track import Phoneme, SpeechTrack, Utterance
from broadcaster.voice.speech_writer import SpeechWriter
from broadcaster.voice.tts.base import TtsError

log = logging.getLogger(__name__)

DEMAND_POLL_S = 0.1


@dataclass
class SpokenSentence:
    """A sentence on the track: its pieces and its word timings (seconds from its start)."""

    text: str
    engine: str
    utterances: list[Utterance]
    words: list[Phoneme]
    queued_at: float | None


@dataclass
class Speech:
    """What one ``speak`` call put on the track."""

    tag: object
    sentences: list[SpokenSentence] = field(default_factory=list)
    unspoken: list[str] = field(default_factory=list)
    announced: int = -1  # the last sentence the director announced as on air

    @property
    def first(self) -> Utterance | None:
        """The first utterance queued (its ``started_at`` is when it went on the program)."""
        return self.sentences[0].utterances[0] if self.sentences else None

    @property
    def text(self) -> str:
        """Everything queued, as one text."""
        return "".join(s.text for s in self.sentences)


Gate = Callable[[Speech], Awaitable[None]]


class Speaker:
    """Speaks sentences through ``chain`` onto ``track``."""

    def __init__(
        self, track: SpeechTrack, chain: TtsChain, prebuffer_ms: int = 80, ahead_s: float = 8.0
    ) -> None:
        self.track = track
        self.chain = chain
        self.prebuffer_ms = prebuffer_ms
        self.ahead_samples = int(ahead_s * track.sample_rate)
        self._tags = itertools.count(1)
        self.on_tag: Callable[[str], None] | None = None  # told each new tag (the director's bookkeeping)

    def new_tag(self, kind: str) -> str:
        """A tag naming one reply or line on the track."""
        tag = f"{kind}-{next(self._tags)}"
        if self.on_tag is not None:
            self.on_tag(tag)
        return tag

    async def speak(
        self,
        sentences: AsyncIterable[str],
        tag: object,
        *,
        cache: bool = False,
        gate: Gate | None = None,
        prefer: str | None = None,
    ) -> Speech:
        """Speak every sentence in order; a sentence no engine can speak is logged and skipped.

        ``gate`` is awaited before each sentence after the first (the director's sentence boundary: it
        may wait, or perform something else first); ``prefer`` names the engine to try first.
        """
        speech = Speech(tag)
        try:
            async for sentence in sentences:
                if gate is not None and (speech.sentences or speech.unspoken):
                    await gate(speech)
                while self.track.pending_samples > self.ahead_samples:  # noqa: ASYNC110
                    await asyncio.sleep(DEMAND_POLL_S)  # the render thread drains it; no event to wait on
                await self._sentence(sentence, speech, cache, prefer)
        except BaseException:
            self.track.drop(tag)
            raise
        return speech

    async def _sentence(self, sentence: str, speech: Speech, cache: bool, prefer: str | None) -> None:
        writer = SpeechWriter(self.track, speech.tag, self.prebuffer_ms, sentence)
        words: list[Phoneme] = []
        engine = ""
        try:
            async with contextlib.aclosing(self.chain.speak(sentence, cache=cache, prefer=prefer)) as stream:
                async for spoken in stream:
                    if spoken.restart:
                        self.track.drop_utterances(writer.utterances)
                        writer = SpeechWriter(self.track, speech.tag, self.prebuffer_ms, sentence)
                        words = []
                    chunk, engine = spoken.chunk, spoken.engine
                    writer.write(chunk.pcm, chunk.rate, chunk.phonemes)
                    words.extend(chunk.words)
        except TtsError as exc:
            self.track.drop_utterances(writer.utterances)
            log.error("sentence not spoken: %r (%s)", sentence[:80], exc)
            speech.unspoken.append(sentence)
            return
        writer.finish()
        speech.sentences.append(
            SpokenSentence(sentence, engine, writer.utterances, words, writer.first_queued_at)
        )

"""Pre-synthesis: every scripted sentence spoken once into the audio cache, so scripts play with TTS down.

The director passes two functions: ``sentences_of(text)``, the exact sentences the host will say of a
rendered segment (``Host.sentences``), and ``speak(sentence, voice)``, which synthesises one sentence
with the cache on (``chain_speaker`` builds it from the TTS chain, trying the segment's ``voice`` engine
first). The work
goes one sentence at a time, so it never competes with the show for more than one TTS request; run it as
a background task and cancel it freely. A sentence that fails is logged and counted; the rest go on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from broadcaster.show.script_library import ScriptLibrary
from broadcaster.voice.chain import TtsChain

log = logging.getLogger(__name__)

SentencesOf = Callable[[str], list[str]]
Speak = Callable[[str, str | None], Awaitable[None]]
PROGRESS_EVERY = 50


@dataclass
class PresynthStats:
    """What one pass did: distinct (sentence, voice) pairs, how many were spoken and how many failed."""

    scripts: int = 0
    sentences: int = 0
    spoken: int = 0
    failed: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """A plain dict, for the log and the dashboard."""
        return vars(self).copy()


def chain_speaker(chain: TtsChain) -> Speak:
    """Speak one sentence through ``chain`` with the cache on, the named engine first when it has it."""

    async def speak(sentence: str, voice: str | None) -> None:
        async for _ in chain.speak(sentence, cache=True, prefer=voice):
            pass

    return speak


async def presynthesise(
    library: ScriptLibrary,
    sentences_of: SentencesOf,
    speak: Speak,
    script_ids: Iterable[str] | None = None,
) -> PresynthStats:
    """Speak every sentence of every segment (of ``script_ids``, or all scripts) once; returns counts."""
    started = time.monotonic()
    stats = PresynthStats()
    work: dict[tuple[str, str | None], str] = {}  # (sentence, voice) → where it is, for the log
    for script_id in sorted(library.ids() if script_ids is None else set(script_ids)):
        script = library.get(script_id)
        if script is None:
            continue
        stats.scripts += 1
        for segment in script.segments:
            for sentence in sentences_of(script.render(segment.id)):
                work.setdefault((sentence, segment.voice), f"{script.id}/{segment.id}")
    stats.sentences = len(work)
    log.info("presynthesis: %d sentences of %d scripts", stats.sentences, stats.scripts)
    for done, ((sentence, voice), where) in enumerate(work.items(), 1):
        try:
            await speak(sentence, voice)
        except Exception as exc:  # one failing sentence never stops the rest
            stats.failed += 1
            log.warning("presynthesis of %s %r failed: %s", where, sentence[:60], exc)
        else:
            stats.spoken += 1
        if done % PROGRESS_EVERY == 0:
            log.info("presynthesis: %d/%d sentences (%d failed)", done, stats.sentences, stats.failed)
    stats.seconds = round(time.monotonic() - started, 3)
    log.info("presynthesis done: %s", stats.as_dict())
    return stats

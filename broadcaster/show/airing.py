"""What is on air: an item or a chat candidate being performed, and how it may be cut."""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from broadcaster.listen.passthrough import LiveVoice
from broadcaster.show.agenda import Item, Lane, now_ms
from broadcaster.voice.speech_track import SpeechTrack
from danmaku.triage.candidate import Candidate

Cut = Literal["", "interrupt", "skip", "stop", "jump", "now"]


class CardHolder(Protocol):
    """Where the director shows a product card (the compositor)."""

    def show_card(self, product: Any) -> None:
        """Show ``product``'s card, or none."""
        ...


class NoCard:
    """No picture to put a card on (tests, a show without a compositor)."""

    def show_card(self, product: Any) -> None:
        """Nothing to do."""


@dataclass(eq=False)
class Airing:
    """Something on air: a queued item or the chat candidate, its lane and the task performing it."""

    lane: Lane
    item: Item | None = None
    candidate: Candidate | None = None
    voice: LiveVoice | None = None  # the moderator's own voice (pass-through)
    task: asyncio.Task[None] | None = None
    cut: Cut = ""
    pending: Cut = ""  # a cut to make at its next sentence boundary (something is nested in it)
    began: bool = False  # its task ran
    aired: bool = False  # its first sentence went on air
    segment_done: bool = False  # a script's segment was counted as played (its place moved on)
    tags: list[str] = field(default_factory=list)  # its speech on the track
    script: str = ""
    segment: str = ""
    started_ms: int = field(default_factory=now_ms)

    def heard(self, track: SpeechTrack) -> bool:
        """Whether any of its speech began playing (announced or not yet)."""
        self.aired = self.aired or any(track.started(tag) for tag in self.tags)
        return self.aired

    def public(self) -> dict[str, Any]:
        """As the control API shows it."""
        out: dict[str, Any] = {"lane": self.lane, "since_ms": self.started_ms}
        if self.item is not None:
            out["item"] = self.item.public()
        if self.candidate is not None:
            event = self.candidate.event
            out["chat"] = {"kind": self.candidate.kind, "user": event.user.name, "text": event.text}
        if self.script:
            out["script"], out["segment"] = self.script, self.segment
        if self.voice is not None:
            out["voice"] = {"text": self.voice.text}
        return out


def seed_of(script_id: str) -> int:
    """A script's shuffle seed: stable across restarts, different per script."""
    return zlib.crc32(script_id.encode())

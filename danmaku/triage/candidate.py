"""A candidate: something the chat lane could say (an answer, a thank-you, a greeting), and its rank."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from danmaku.events import ChatEvent

CandidateKind = Literal["answer", "thanks", "welcome", "follow"]


@dataclass(slots=True)
class Candidate:
    """What to say and the logged events (``(seq, event)``) it answers.

    Ranked by ``priority``, then ``value`` (a bigger superchat or gift first), then the newest: in a
    live room the freshest message is the one its viewer is still waiting on.
    """

    kind: CandidateKind
    priority: int
    events: list[tuple[int, ChatEvent]]
    value: float = 0.0
    at_ms: int = 0  # when its newest event arrived (staleness)
    order: int = 0  # arrival order, set by the pacer
    names: list[str] = field(default_factory=list)
    host: bool = False  # the host's own words (the console's microphone), never a viewer's
    retries: int = 0  # replies tried again after the LLM failed
    not_before: float = 0.0  # monotonic: a retry waits until then

    @property
    def event(self) -> ChatEvent:
        """The (newest) event it answers."""
        return self.events[-1][1]

    def rank(self) -> tuple[int, float, int]:
        """Higher is answered first."""
        return self.priority, self.value, self.order

    def line(self, template: str, clean: Callable[[str], str]) -> str:
        """A thank-you or greeting from its template.

        The template may use ``{name}``, ``{names}``, ``{gifts}`` and ``{value}``; names pass through
        ``clean`` (the safety filter's name cleaner).
        """
        names = [clean(n) for n in (self.names or [self.event.user.name])]
        gifts: dict[str, int] = {}
        for _seq, event in self.events:
            if event.gift is not None:
                gifts[event.gift.name] = gifts.get(event.gift.name, 0) + event.gift.count
        sep = "、" if any("\u4e00" <= c <= "\u9fff" for c in template) else ", "
        gift_text = sep.join(
            f"{count}个{name}" if sep == "、" else f"{count} {name}" for name, count in gifts.items()
        )
        return template.format(name=names[0], names=sep.join(names), gifts=gift_text, value=f"{self.value:g}")

"""Gifts and greetings gathered over a window into one line.

A viewer who sends ten gifts in a combo is thanked once for all of them; viewers entering are welcomed
a few names at a time, at most once an interval. Both are bounded: a gathering that would exceed its
cap is closed early.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from danmaku.config import GreetingConfig, ThanksConfig
from danmaku.events import ChatEvent, Gift
from danmaku.triage.candidate import Candidate, CandidateKind

Dropped = tuple[int, str]  # (log seq, reason)


@dataclass(slots=True)
class _Gifts:
    first: int
    last: int
    events: list[tuple[int, ChatEvent]] = field(default_factory=list)
    value: float = 0.0


class ThanksGatherer:
    """One thank-you per viewer for the gifts sent close together.

    Gifts within ``window_s`` of each other (at most 3 windows in all) are thanked together when they
    add up to ``min_value``; cheaper ones are logged as such.
    """

    MAX_VIEWERS = 10_000
    MAX_GIFTS = 200

    def __init__(self, cfg: ThanksConfig, priority: int, worth: Callable[[Gift | None], float]) -> None:
        self.cfg = cfg
        self.priority = priority
        self.worth = worth
        self._open: OrderedDict[str, _Gifts] = OrderedDict()

    def add(self, seq: int, event: ChatEvent, user_key: str) -> list[Candidate | Dropped]:
        """Gather a gift; returns what an overfull gathering closed early."""
        now = event.received_at
        gifts = self._open.get(user_key)
        if gifts is None:
            gifts = self._open[user_key] = _Gifts(now, now)
        gifts.last = now
        gifts.events.append((seq, event))
        gifts.value += self.worth(event.gift)
        out: list[Candidate | Dropped] = []
        if len(gifts.events) >= self.MAX_GIFTS:
            out += self._close(user_key)
        while len(self._open) > self.MAX_VIEWERS:
            out += self._close(next(iter(self._open)))
        return out

    def due(self, now: int) -> list[Candidate | Dropped]:
        """Close the gatherings whose window has passed."""
        window = int(self.cfg.window_s * 1000)
        ready = [
            key for key, g in self._open.items() if now - g.last >= window or now - g.first >= 3 * window
        ]
        return [item for key in ready for item in self._close(key)]

    def _close(self, key: str) -> list[Candidate | Dropped]:
        gifts = self._open.pop(key)
        if gifts.value + 1e-9 < self.cfg.min_value or not gifts.value:
            return [(seq, "below_min_value") for seq, _ in gifts.events]
        value = round(gifts.value, 2)
        return [Candidate("thanks", self.priority, gifts.events, value, gifts.last)]


class GreetingGatherer:
    """Welcomes (or thanks for following), throttled.

    The latest ``max_names`` viewers since the last greeting, one greeting at most every
    ``interval_s``; those who scroll out are logged as throttled.
    """

    def __init__(self, cfg: GreetingConfig, kind: CandidateKind, priority: int) -> None:
        self.cfg = cfg
        self.kind = kind
        self.priority = priority
        self._names: deque[tuple[int, ChatEvent]] = deque()
        self._last = -(10**15)

    def add(self, seq: int, event: ChatEvent) -> list[Dropped]:
        """Gather a viewer; returns the ones it pushed out."""
        out: list[Dropped] = []
        for i, (old_seq, old) in enumerate(self._names):
            if old.user.id == event.user.id:
                del self._names[i]
                out.append((old_seq, "greeting_repeat"))
                break
        self._names.append((seq, event))
        while len(self._names) > self.cfg.max_names:
            out.append((self._names.popleft()[0], "greeting_throttled"))
        return out

    def due(self, now: int) -> list[Candidate]:
        """A greeting, when there are names and the interval has passed."""
        if not self._names or now - self._last < self.cfg.interval_s * 1000:
            return []
        self._last = now
        events = list(self._names)
        self._names.clear()
        names = [e.user.name for _, e in events]
        return [Candidate(self.kind, self.priority, events, 0.0, events[-1][1].received_at, names=names)]

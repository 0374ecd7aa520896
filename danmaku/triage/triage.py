"""Triage: every event gets a decision and its reason.

A candidate to answer (queued), logged (nothing to answer) or dropped. Pure and synchronous (tens of
microseconds an event); the chat desk logs the decision and queues the candidates.

Order of the rules for a chat message: duplicate id, blocked viewer, flooding (mutes the viewer),
too long, stale, chatter ("666"), the viewer repeating themselves, a copy-paste wave across viewers,
the per-viewer limit, the global rate, and last the costliest, blocked words and links (so in a flood
only what the rates let through is matched against the lists). Superchats skip the rate and spam
rules (they are paid) but not the blocklists; moderators and the broadcaster skip the rate rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from danmaku.config import ChatConfig
from danmaku.events import ChatEvent
from danmaku.triage.candidate import Candidate
from danmaku.triage.gather import Dropped, GreetingGatherer, ThanksGatherer
from danmaku.triage.limits import Limits, RecentIds
from danmaku.triage.text import TextRules, fold, is_chatter, repeat_key

Decision = Literal["queued", "answered", "dropped", "logged"]
TRUSTED = frozenset(("broadcaster", "moderator", "admin"))


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decision on one event, and why."""

    decision: Decision
    reason: str = ""
    priority: int | None = None


class Triage:
    """The rules of ``[chat]`` with their bounded memories."""

    def __init__(self, cfg: ChatConfig, rules: TextRules) -> None:
        self.cfg = cfg
        self.rules = rules
        self.ids = RecentIds(cfg.dedupe_ids)
        self.limits = Limits(cfg.limits, cfg.users)
        p = cfg.priority
        self.thanks = ThanksGatherer(cfg.thanks, p.paid, cfg.worth)
        self.welcome = GreetingGatherer(cfg.welcome, "welcome", p.greeting)
        self.follow = GreetingGatherer(cfg.welcome, "follow", p.greeting)
        self.blocked_users = frozenset(cfg.block.users)
        self.ready: list[Candidate] = []  # candidates judged since the desk last took them
        self.updates: list[Dropped] = []  # decisions changed on earlier events (closed gatherings)
        self.reasons: Counter[str] = Counter()

    def judge(self, seq: int, event: ChatEvent) -> Verdict:
        """The decision on one event (``seq``: its row in the chat log)."""
        verdict = self._judge(seq, event)
        self.reasons[verdict.reason or verdict.decision] += 1
        return verdict

    def seen(self, event: ChatEvent) -> bool:
        """Whether ``event`` was seen lately (a duplicate); remembers it either way."""
        return self.ids.seen(f"{event.platform}\x1f{event.id}")

    def _judge(self, seq: int, event: ChatEvent) -> Verdict:  # noqa: PLR0911 (a table of rules)
        if self.seen(event):
            return Verdict("dropped", "duplicate")
        kind = event.kind
        if kind == "system" and event.removes is not None:
            return Verdict("logged", "moderation")
        if kind not in ("chat", "superchat", "gift", "enter", "follow"):
            return Verdict("logged", kind)
        user = event.user
        if self.blocked_users and (
            user.id in self.blocked_users
            or f"{event.platform}:{user.id}" in self.blocked_users
            or f"name:{user.name}" in self.blocked_users
        ):
            return Verdict("dropped", "blocked_user")
        user_key = _viewer_key(event)
        if kind == "gift":
            if not self.cfg.thanks.enabled:
                return Verdict("logged", "thanks_off")
            self._gathered(self.thanks.add(seq, event, user_key))
            return Verdict("queued", "thanks")
        if kind in ("enter", "follow"):
            if not self.cfg.welcome.enabled:
                return Verdict("logged", "welcome_off")
            gatherer = self.welcome if kind == "enter" else self.follow
            self._gathered(gatherer.add(seq, event))
            return Verdict("queued", "greeting")
        return self._text(seq, event, user_key)

    def _text(self, seq: int, event: ChatEvent, user_key: str) -> Verdict:  # noqa: PLR0911
        cfg = self.cfg
        now = event.received_at
        text = event.text
        viewer, new = self.limits.viewer(user_key)
        paid = event.kind == "superchat"
        trusted = paid or not TRUSTED.isdisjoint(event.user.roles)
        if self.limits.flooding(viewer, now) and not trusted:
            return Verdict("dropped", "flood")
        if len(text) > cfg.max_chars:
            return Verdict("dropped", "too_long")
        if event.ts and now - event.ts > cfg.stale_s * 1000:
            return Verdict("dropped", "stale")
        if not cfg.answer:
            return Verdict("logged", "answer_off")
        folded = fold(text)
        if not paid:
            if is_chatter(folded, cfg.min_chars):
                return Verdict("dropped", "chatter")
            key = repeat_key(folded)
            if self.limits.repeated(viewer, key, now) and not trusted:
                return Verdict("dropped", "repeat")
            if self.limits.wave(key, user_key, now) and not trusted:
                return Verdict("dropped", "spam_wave")
            if not trusted and self.limits.over_user_limit(viewer, now):
                return Verdict("dropped", "rate_user")
            if not self.limits.has_token(now):
                return Verdict("dropped", "rate_global")
        # the costliest check last: in a flood, only what the rates let through gets this far
        blocked = self.rules.blocked(text, folded)
        if blocked:
            return Verdict("dropped", blocked)
        if not paid:
            self.limits.take(viewer, now)
        p = cfg.priority
        if paid:
            priority, why = p.paid, "paid"
        elif self.rules.asks(folded):
            priority, why = p.question, "question"
        elif (new and viewer.messages == 1) or "first_time" in event.user.roles:
            priority, why = p.first_time, "first_time"
        else:
            priority, why = p.other, "other"
        value = cfg.worth(event.gift)
        self.ready.append(Candidate("answer", priority, [(seq, event)], value, now))
        return Verdict("queued", why, priority)

    def _gathered(self, items: Sequence[Candidate | Dropped]) -> None:
        for item in items:
            if isinstance(item, Candidate):
                self.ready.append(item)
            else:
                self.updates.append(item)
                self.reasons[item[1]] += 1

    def resume_gift(self, seq: int, event: ChatEvent) -> None:
        """Gather a gift logged as queued before a restart (its thank-you is still owed)."""
        self._gathered(self.thanks.add(seq, event, _viewer_key(event)))

    def due(self, now: int) -> None:
        """Close the gift and greeting gatherings that are due (into ``ready`` and ``updates``)."""
        if self.cfg.thanks.enabled:
            self._gathered(self.thanks.due(now))
        for gatherer in (self.welcome, self.follow):
            self._gathered(gatherer.due(now))


def _viewer_key(event: ChatEvent) -> str:
    return f"{event.platform}\x1f{event.user.id}"

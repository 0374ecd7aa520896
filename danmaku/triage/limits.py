"""Bounded memories of who said what when.

Dedupe, per-viewer limits, flooding, repeats, spam waves and a global rate. Every structure has a
size cap (least recently used forgotten first), so no burst, however long, grows memory. Times are
the events' ``received_at`` milliseconds, so the rules are deterministic.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from danmaku.config import LimitsConfig


class RecentIds:
    """The ids seen lately: at least the last ``size // 2``, at most ``size`` (two generations)."""

    def __init__(self, size: int) -> None:
        self.half = max(1, size // 2)
        self._current: set[str] = set()
        self._previous: set[str] = set()

    def seen(self, key: str) -> bool:
        """True if ``key`` was seen lately; remembers it either way."""
        if key in self._current or key in self._previous:
            return True
        self._current.add(key)
        if len(self._current) >= self.half:
            self._previous, self._current = self._current, set()
        return False

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)


@dataclass(slots=True)
class Viewer:
    """What triage remembers of one viewer (small: tens of thousands are kept)."""

    messages: int = 0
    recent: list[int] = field(default_factory=list)  # message times, for flooding
    admitted: list[int] = field(default_factory=list)  # candidate times, for user_max
    muted_until: int = 0
    said: dict[str, int] | None = None  # repeat key -> last time


class Limits:
    """The rate and spam rules of ``[chat.limits]``."""

    SAID_PER_VIEWER = 16
    WAVES = 10_000

    def __init__(self, cfg: LimitsConfig, viewers: int) -> None:
        self.cfg = cfg
        self.size = viewers
        self.viewers: OrderedDict[str, Viewer] = OrderedDict()
        self._waves: OrderedDict[str, tuple[int, set[str]]] = OrderedDict()
        self._tokens = float(max(1.0, cfg.global_per_s))
        self._refilled = 0

    def viewer(self, key: str) -> tuple[Viewer, bool]:
        """The viewer's memory (most recently used now), and whether it is new."""
        viewer = self.viewers.get(key)
        if viewer is not None:
            self.viewers.move_to_end(key)
            return viewer, False
        viewer = self.viewers[key] = Viewer()
        if len(self.viewers) > self.size:
            self.viewers.popitem(last=False)
        return viewer, True

    def flooding(self, viewer: Viewer, now: int) -> bool:
        """Counts the message; True while the viewer is muted for flooding."""
        viewer.messages += 1
        if now < viewer.muted_until:
            return True
        window = self.cfg.flood_window_s * 1000
        recent = viewer.recent
        recent.append(now)
        while recent and recent[0] <= now - window:
            del recent[0]
        if len(recent) > self.cfg.flood_max:
            viewer.muted_until = now + int(self.cfg.flood_mute_s * 1000)
            recent.clear()
            return True
        return False

    def repeated(self, viewer: Viewer, key: str, now: int) -> bool:
        """The viewer said ``key`` within ``repeat_window_s``; remembers it."""
        if not key:
            return False
        said = viewer.said
        if said is None:
            said = viewer.said = {}
        last = said.pop(key, None)
        said[key] = now
        if len(said) > self.SAID_PER_VIEWER:
            del said[next(iter(said))]
        return last is not None and now - last < self.cfg.repeat_window_s * 1000

    def wave(self, key: str, user: str, now: int) -> bool:
        """``copy_users`` or more viewers sent ``key`` within ``repeat_window_s``: a copy-paste wave."""
        if len(key) < 4:  # "好", "hi", "yes" are common, not a wave
            return False
        window = self.cfg.repeat_window_s * 1000
        entry = self._waves.pop(key, None)
        if entry is None or now - entry[0] >= window:
            entry = (now, set())
        users = entry[1]
        if len(users) < self.cfg.copy_users:
            users.add(user)
        self._waves[key] = entry
        if len(self._waves) > self.WAVES:
            self._waves.popitem(last=False)
        return len(users) >= self.cfg.copy_users

    def over_user_limit(self, viewer: Viewer, now: int) -> bool:
        """The viewer already has ``user_max`` candidates within ``user_window_s``."""
        window = self.cfg.user_window_s * 1000
        admitted = viewer.admitted
        while admitted and admitted[0] <= now - window:
            del admitted[0]
        return len(admitted) >= self.cfg.user_max

    def has_token(self, now: int) -> bool:
        """Whether the global rate allows one more candidate now (refills the bucket)."""
        rate = self.cfg.global_per_s
        if self._refilled:
            elapsed = max(0, now - self._refilled)
            self._tokens = min(max(1.0, rate), self._tokens + elapsed * rate / 1000)
        self._refilled = max(now, self._refilled)
        return self._tokens >= 1.0

    def take(self, viewer: Viewer, now: int) -> None:
        """Count a candidate: a token of the global rate and one of the viewer's."""
        self._tokens -= 1.0
        viewer.admitted.append(now)
        if len(viewer.admitted) > self.cfg.user_max:  # moderators are not limited, nor remembered long
            del viewer.admitted[0]

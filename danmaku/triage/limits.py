"""Bounded memories of who said what when.

Dedupe, per-viewer limits, flooding, repeats, spam waves and a global rate. Every structure has a
size cap (least recently used forgotten first), so no burst, however long, grows memory. Times are
the events' ``received_at`` milliseconds, so the rules are deterministic.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from danmaku.config import LimitsConfig


class RecentIds:
    """The last ``size`` ids seen."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, key: str) -> bool:
        """True if ``key`` was seen before; remembers it either way."""
        if key in self._ids:
            return True
        self._ids[key] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._ids)


@dataclass(slots=True)
class Viewer:
    """What triage remembers of one viewer."""

    messages: int = 0
    recent: deque[int] = field(default_factory=deque)  # message times, for flooding
    admitted: deque[int] = field(default_factory=deque)  # candidate times, for user_max
    muted_until: int = 0
    said: OrderedDict[str, int] = field(default_factory=OrderedDict)  # repeat key -> last time


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
        found = self.viewers.pop(key, None)
        new = found is None
        viewer = Viewer() if found is None else found
        self.viewers[key] = viewer
        if len(self.viewers) > self.size:
            self.viewers.popitem(last=False)
        return viewer, new

    def flooding(self, viewer: Viewer, now: int) -> bool:
        """Counts the message; True while the viewer is muted for flooding."""
        viewer.messages += 1
        if now < viewer.muted_until:
            return True
        window = self.cfg.flood_window_s * 1000
        recent = viewer.recent
        recent.append(now)
        while recent and recent[0] <= now - window:
            recent.popleft()
        if len(recent) > self.cfg.flood_max:
            viewer.muted_until = now + int(self.cfg.flood_mute_s * 1000)
            recent.clear()
            return True
        return False

    def repeated(self, viewer: Viewer, key: str, now: int) -> bool:
        """The viewer said ``key`` within ``repeat_window_s``; remembers it."""
        if not key:
            return False
        last = viewer.said.pop(key, None)
        viewer.said[key] = now
        if len(viewer.said) > self.SAID_PER_VIEWER:
            viewer.said.popitem(last=False)
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
            admitted.popleft()
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

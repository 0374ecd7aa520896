"""The chat desk: feeds in, triage, the chat log, and the paced queue the show takes answers from.

Every batch a feed reads is judged (synchronously) and written to the chat log with its decisions;
only once that is committed are its candidates queued (invariant 7). A feed may read a bounded number
of events ahead of the commits, so the writes of many frames share one commit (backpressure beyond). A
housekeeping task closes gift and greeting gatherings, expires stale candidates and prunes the log.
The show asks ``next`` for the best candidate when the pacing allows, and reports with ``done``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from broadcaster.store import Store, StoreError
from danmaku.chatlog import ChatLog, Update
from danmaku.config import ChatConfig
from danmaku.events import HOST_FEED, HOST_PLATFORM, ChatEvent, now_ms
from danmaku.feeds import FeedConfigs, create_feed
from danmaku.feeds.base import Feed
from danmaku.feeds.local import LocalFeed, LocalFeedConfig
from danmaku.pacer import Pacer, Removed
from danmaku.triage.candidate import Candidate
from danmaku.triage.text import TextRules
from danmaku.triage.triage import Decision, Triage, Verdict

log = logging.getLogger("danmaku.desk")

HOUSEKEEPING_S = 0.5
MAX_BUFFERED = 5000  # events a feed may read ahead of their commit
MAX_UPDATES = 100_000  # decisions kept for a retry while the chat log cannot be written
PRUNE_EVERY_S = 3600.0


@dataclass(slots=True)
class _Batch:
    """Events judged, waiting for their commit before their decisions are acted on."""

    first: int
    events: Sequence[ChatEvent]
    verdicts: list[Verdict]
    ready: list[Candidate]
    updates: list[tuple[int, str]]


def _removal(event: ChatEvent) -> Callable[[Candidate], bool]:
    """Which queued candidates a platform moderator's removal takes out."""
    target = event.removes or ""

    def match(c: Candidate) -> bool:
        if c.event.platform != event.platform:
            return False
        if target == "*":  # the chat was cleared: comments go, thank-yous for gifts stay
            return c.kind == "answer"
        if target.startswith("user:"):
            return any(e.user.id == target[5:] for _, e in c.events)
        return any(e.id == target for _, e in c.events)

    return match


class ChatDesk:
    """Owns the feeds, the triage, the chat log and the pacer; ``start`` and ``close`` bracket them."""

    def __init__(self, cfg: ChatConfig, feeds: Sequence[FeedConfigs], store: Store, rules: TextRules) -> None:
        self.cfg = cfg
        self.log = ChatLog(store)
        self.triage = Triage(cfg, rules)
        self.pacer = Pacer(cfg.interval_s, cfg.queue_size, cfg.stale_s)
        self.feeds: list[Feed] = [
            create_feed(c, self.accept_logged if c.type == "local" else self.accept)
            for c in feeds
            if c.enabled
        ]
        self.local: LocalFeed | None = next((f for f in self.feeds if isinstance(f, LocalFeed)), None)
        self.log_failures = 0
        self._buffer: list[_Batch] = []
        self._buffered = 0
        self._writing: asyncio.Future[list[int]] | None = None
        self._updates: list[Update] = []
        self._committed = self.log.reserve(0) - 1  # the highest seq whose row is committed
        self._held: list[Candidate] = []
        self.judge_errors = 0
        self._tasks: list[asyncio.Task[None]] = []
        # told every decision (seq, event, decision, reason): the consoles' chat view
        self.on_decision: Callable[[int, ChatEvent, str, str], None] | None = None

    def local_feed(self) -> LocalFeed:
        """The local feed (operator comments), added when the config has none."""
        if self.local is None:
            self.local = LocalFeed(LocalFeedConfig(), self.accept_logged)
            self.feeds.append(self.local)
            if self._tasks:
                self._tasks.append(asyncio.create_task(self.local.run(), name="feed-local"))
        return self.local

    async def start(self) -> None:
        """Resume what was queued before a restart, then start the feeds and the housekeeping."""
        await self._recover()
        for feed in self.feeds:
            self._tasks.append(asyncio.create_task(feed.run(), name=f"feed-{feed.name}"))
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="chat-housekeeping"))

    async def _recover(self) -> None:
        pending = await self.log.pending()
        if not pending:
            return
        cutoff = now_ms() - int(self.cfg.stale_s * 1000)
        resumed = 0
        for row in pending:
            event = row.event
            self.triage.seen(event)  # a redelivery after the restart is still a duplicate
            if event.received_at < cutoff:
                self._updates.append((row.seq, "dropped", "stale"))
            elif event.platform == HOST_PLATFORM and event.feed == HOST_FEED:  # answered live or never
                self._updates.append((row.seq, "dropped", "restart"))
            elif event.kind in ("chat", "superchat"):
                value = self.cfg.worth(event.gift)
                candidate = Candidate(
                    "answer", row.priority or 0, [(row.seq, event)], value, event.received_at
                )
                self._removed(self.pacer.offer(candidate))
                resumed += 1
            elif event.kind == "gift":
                self.triage.resume_gift(row.seq, event)
                resumed += 1
            else:
                self._updates.append((row.seq, "dropped", "restart"))
        await self.settle()
        log.info("chat: resumed %d queued item(s) from before the restart", resumed)

    async def accept(self, events: Sequence[ChatEvent]) -> None:
        """The feeds' sink: judge now, write to the chat log, act on the decisions once committed.

        One write is in flight at a time; what is accepted meanwhile goes into the next, so a burst
        costs one commit per write, not per frame. Returns at once unless ``MAX_BUFFERED`` events
        wait for a write, then when the current write is committed (backpressure to the feed).
        """
        triage = self.triage
        first = self.log.reserve(len(events))
        verdicts = [self._judge(first + i, e) for i, e in enumerate(events)]
        if self.on_decision is not None:
            for i, (event, verdict) in enumerate(zip(events, verdicts, strict=True)):
                self.on_decision(first + i, event, verdict.decision, verdict.reason)
        self._buffer.append(_Batch(first, events, verdicts, triage.ready, triage.updates))
        self._buffered += len(events)
        triage.ready, triage.updates = [], []
        self._write()
        while self._buffered > MAX_BUFFERED and self._writing is not None:
            await asyncio.wait([self._writing])

    def _judge(self, seq: int, event: ChatEvent) -> Verdict:
        try:
            return self.triage.judge(seq, event)
        except Exception:  # a feed built an event triage cannot read: log it as such, keep the rest
            self.judge_errors += 1
            if self.judge_errors <= 5 or self.judge_errors % 100 == 0:
                log.exception("chat: event %r from %s could not be judged", event.id, event.feed)
            return Verdict("dropped", "unreadable")

    async def accept_logged(self, events: Sequence[ChatEvent]) -> None:
        """``accept``, returning only once the events are committed (the local feed's sink)."""
        await self.accept(events)
        await self.settle()

    async def accept_host(self, event: ChatEvent, answer: bool, priority: int = 100) -> Candidate | None:
        """What the host said (the console's microphone): logged as is, never triaged.

        Returns, once the event is committed, the candidate to answer (``answer``), else None; None
        too when the chat log could not write it (logged as an error: nothing is answered that is not
        in the log).
        """
        seq = self.log.reserve(1)
        verdict = Verdict("queued" if answer else "logged", "host")
        if self.on_decision is not None:
            self.on_decision(seq, event, verdict.decision, verdict.reason)
        failures = self.log_failures
        self._buffer.append(_Batch(seq, [event], [verdict], [], []))
        self._buffered += 1
        self._write()
        while self._committed < seq and self.log_failures == failures and self._writing is not None:
            await asyncio.wait([self._writing])  # its own write (a flood's may go before it), not idle
        if self.log_failures > failures or self._committed < seq:
            log.error("chat: the host's words could not be logged, so they are not answered: %r", event.text)
            return None
        if not answer:
            return None
        return Candidate("answer", priority, [(seq, event)], 0.0, event.received_at, host=True)

    async def settle(self) -> None:
        """Wait until everything accepted so far, and every decision, is committed."""
        self._write()
        while self._writing is not None:
            await asyncio.wait([self._writing])

    def _write(self) -> None:
        """Start a write of what is buffered, unless one is in flight (its end starts the next)."""
        if self._writing is not None or not (self._buffer or self._updates):
            return
        batches, self._buffer, self._buffered = self._buffer, [], 0
        updates, self._updates = self._updates, []
        judged = [(b.first, b.events, b.verdicts) for b in batches]
        writing = asyncio.wrap_future(self.log.write(judged, updates))
        writing.add_done_callback(lambda done: self._written(done, batches, updates))
        self._writing = writing

    def _written(self, done: asyncio.Future[list[int]], batches: list[_Batch], updates: list[Update]) -> None:
        """Act on a committed write's batches, in the order they were accepted; start the next."""
        self._writing = None
        error = done.exception()
        failed = set(range(len(batches))) if error is not None else set(done.result())
        if error is not None:
            # decisions are safe to write twice: keep them for the next write (a bounded number)
            self._updates = [*updates, *self._updates][-MAX_UPDATES:]
            log.error(
                "chat: the chat log write failed; %d decision(s) kept to retry: %s", len(updates), error
            )
        lost: set[int] = set()
        for n, batch in enumerate(batches):
            if batch.events:
                self._committed = max(self._committed, batch.first + len(batch.events) - 1)
            if n in failed:
                self.log_failures += len(batch.events)
                lost.update(range(batch.first, batch.first + len(batch.events)))
                log.error("chat: %d event(s) not logged, so not accepted", len(batch.events))
                continue
            for event in batch.events:
                if event.removes is not None:
                    self._removed(self.pacer.remove(_removal(event), "removed_by_platform"))
            for candidate in batch.ready:
                self._offer(candidate)
            self._updates += [(seq, "dropped", reason) for seq, reason in batch.updates]
        if lost:  # a gathered gift or greeting whose row was never written is not acted on
            self._held = [c for c in self._held if lost.isdisjoint(seq for seq, _ in c.events)]
        held, self._held = self._held, []
        for candidate in held:
            self._offer(candidate)
        self._write()

    def _offer(self, candidate: Candidate) -> None:
        """Queue a candidate once every event it answers is committed; until then hold it."""
        if max(seq for seq, _ in candidate.events) > self._committed:
            self._held.append(candidate)
        else:
            self._removed(self.pacer.offer(candidate))

    def _removed(self, removed: list[Removed]) -> None:
        for candidate, reason in removed:
            self._updates += [(seq, "dropped", reason) for seq, _ in candidate.events]

    async def _housekeeping(self) -> None:
        since_prune = PRUNE_EVERY_S
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            try:
                self._tidy()
                since_prune += HOUSEKEEPING_S
                if since_prune >= PRUNE_EVERY_S and (self.cfg.retention_days or self.cfg.raw_days):
                    since_prune = 0.0
                    await self._prune()
            except Exception:
                log.exception("chat: housekeeping failed; trying again in %.1f s", HOUSEKEEPING_S)

    def _tidy(self) -> None:
        """Close the gatherings that are due, expire stale candidates, write the decisions."""
        self.triage.due(now_ms())
        ready, self.triage.ready = self.triage.ready, []
        self._updates += [(seq, "dropped", reason) for seq, reason in self.triage.updates]
        self.triage.updates = []
        for candidate in ready:  # gathered gifts and greetings: their rows may still be in flight
            self._offer(candidate)
        self._removed(self.pacer.expire())
        self._write()

    async def _prune(self) -> None:
        now = now_ms()
        keep = self.cfg.retention_days or 1e6
        keep_raw = min(self.cfg.raw_days or keep, keep)
        try:
            pruned = await self.log.prune(now - int(keep * 86_400_000), now - int(keep_raw * 86_400_000))
        except StoreError as exc:
            log.error("chat: pruning the chat log failed: %s", exc)
            return
        if pruned:
            log.info("chat: pruned %d event(s) past chat.retention_days", pruned)

    async def next(self) -> Candidate:
        """The next thing the chat lane should say, when the pacing allows (best candidate first)."""
        candidate = await self.pacer.next(self._removed)
        self._write()  # the stale candidates met on the way
        return candidate

    def done(self, candidate: Candidate, said: bool, reason: str = "") -> None:
        """Record how a candidate ended: said on air, or dropped with ``reason`` (written in order)."""
        self.done_seqs([seq for seq, _ in candidate.events], said, candidate.kind if said else reason)
        if self.on_decision is not None:
            for seq, event in candidate.events:
                self.on_decision(seq, event, "answered" if said else "dropped", reason or candidate.kind)

    def done_seqs(self, seqs: Sequence[int], said: bool, reason: str) -> None:
        """``done`` for logged events by number (a reviewed reply, after a restart)."""
        decision: Decision = "answered" if said else "dropped"
        self._updates += [(seq, decision, reason) for seq in seqs]
        self._write()

    def stats(self) -> dict[str, Any]:
        """Feeds, decisions and the queue, for the status line and the run summary."""
        return {
            "feeds": {f.name: f.stats.as_dict() for f in self.feeds},
            "queued": len(self.pacer),
            "decisions": dict(self.triage.reasons),
            "log_failures": self.log_failures,
        }

    async def close(self) -> None:
        """Stop the feeds and the housekeeping; write the decisions still held."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.settle()

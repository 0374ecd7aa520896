"""The durable chat log: every event and its triage decision, in the project's SQLite store.

An event's row is committed before the event is acknowledged (before its candidate is queued or
anything else acts on it); later decisions (answered, stale, displaced, removed by a platform moderator)
update the row. ``seq`` is the row's key, assigned here in arrival order. Queries serve the
dashboard; ``pending`` gives back what was queued when the process stopped, so a restart resumes it.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from broadcaster.store import Store
from danmaku.events import ChatEvent, Gift, User, now_ms
from danmaku.triage.triage import Decision, Verdict

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS chat_events (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        platform TEXT NOT NULL,
        feed TEXT NOT NULL,
        kind TEXT NOT NULL,
        ts INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        user_id TEXT NOT NULL,
        user_name TEXT NOT NULL,
        roles TEXT NOT NULL,
        level INTEGER NOT NULL,
        text TEXT NOT NULL,
        gift_name TEXT,
        gift_count INTEGER,
        gift_value REAL,
        currency TEXT,
        removes TEXT,
        raw TEXT NOT NULL,
        decision TEXT NOT NULL,
        reason TEXT NOT NULL,
        priority INTEGER,
        decided_at INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS chat_events_received ON chat_events (received_at)",
    "CREATE INDEX IF NOT EXISTS chat_events_queued ON chat_events (decision) WHERE decision = 'queued'",
)
_INSERT = "INSERT INTO chat_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_COLUMNS = (
    "seq, id, platform, feed, kind, ts, received_at, user_id, user_name, roles, level, text, "
    "gift_name, gift_count, gift_value, currency, removes, raw, decision, reason, priority, decided_at"
)

Update = tuple[int, Decision, str]  # (seq, decision, reason)
_UNWRITABLE = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    OverflowError,
    UnicodeEncodeError,  # a lone surrogate ("\ud800") that a lenient JSON parser let through
)
_DELETE = "DELETE FROM chat_events WHERE seq > ? AND seq <= ? AND decision != 'queued'"
_CLEAR_RAW = "UPDATE chat_events SET raw = '' WHERE seq > ? AND seq <= ? AND raw != ''"


def _ranged(sql: str, lo: int, hi: int) -> Callable[[sqlite3.Connection], int]:
    """A write job running ``sql`` over seqs (lo, hi]; returns the rows changed."""
    return lambda conn: conn.execute(sql, (lo, hi)).rowcount


@dataclass(frozen=True)
class LoggedEvent:
    """A row of the chat log."""

    seq: int
    event: ChatEvent
    decision: Decision
    reason: str
    priority: int | None
    decided_at: int

    def as_dict(self) -> dict[str, Any]:
        """The event's JSON shape plus its decision (for the dashboard)."""
        return {
            "seq": self.seq,
            **self.event.as_dict(),
            "decision": self.decision,
            "reason": self.reason,
            "priority": self.priority,
            "decided_at": self.decided_at,
        }


MAX_TEXT = 2_000  # characters of a comment's text kept in the log (triage drops long ones anyway)
MAX_RAW = 65_536  # characters of its wire text
_I64 = (-(2**63), 2**63 - 1)


def _int(value: object) -> int:
    """An integer SQLite can store: a hostile 30-digit "count" must not fail the write it came in."""
    try:
        number = value if type(value) is int else int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return 0
    return number if _I64[0] <= number <= _I64[1] else _I64[number > 0]


def _str(value: object, limit: int = 200) -> str:
    return value[:limit] if type(value) is str else str(value)[:limit]


def _encodable(value: object) -> object:
    """A string with what UTF-8 cannot hold (lone surrogates) replaced by "?"; anything else as is."""
    return value.encode("utf-8", "replace").decode("utf-8") if isinstance(value, str) else value


def _real(value: object) -> float:
    return (
        value
        if type(value) is float and math.isfinite(value)
        else 0.0
        if type(value) is float
        else _int(value)
    )


def _row(seq: int, e: ChatEvent, v: Verdict) -> tuple[object, ...]:
    """The row of one event: every value made storable (feeds build events from untrusted JSON)."""
    g = e.gift
    u = e.user
    return (
        seq, _str(e.id), _str(e.platform), e.feed, e.kind, _int(e.ts), e.received_at,
        _str(u.id), _str(u.name), ",".join(map(_str, u.roles)), _int(u.level), _str(e.text, MAX_TEXT),
        None if g is None else _str(g.name), None if g is None else _int(g.count),
        None if g is None else _real(g.value), None if g is None else _str(g.currency, 8),
        None if e.removes is None else _str(e.removes), _str(e.raw, MAX_RAW),
        v.decision, v.reason, v.priority, e.received_at,
    )  # fmt: skip


def _logged(row: sqlite3.Row | tuple[Any, ...]) -> LoggedEvent:
    (seq, id_, platform, feed, kind, ts, received_at, uid, uname, roles, level, text,
     gname, gcount, gvalue, currency, removes, raw, decision, reason, priority, decided_at) = row  # fmt: skip
    gift = None if gname is None else Gift(gname, gcount or 0, gvalue or 0.0, currency)
    user = User(uid, uname, tuple(r for r in roles.split(",") if r), level)
    event = ChatEvent(id_, platform, kind, ts, user, text, gift, raw, received_at, feed, removes)
    return LoggedEvent(seq, event, decision, reason, priority, decided_at)


class ChatLog:
    """The ``chat_events`` table."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.ensure(SCHEMA)
        last = store.read_now(lambda c: c.execute("SELECT MAX(seq) FROM chat_events").fetchone()[0])
        self._next_seq = (last or 0) + 1
        self._raw_cleared = 0  # rows up to this seq have had their raw text cleared

    def reserve(self, count: int) -> int:
        """The first of ``count`` consecutive new seqs."""
        first = self._next_seq
        self._next_seq += count
        return first

    def write(
        self, judged: Sequence[tuple[int, Sequence[ChatEvent], Sequence[Verdict]]], updates: Sequence[Update]
    ) -> Future[list[int]]:
        """Insert judged events, then apply decision ``updates``, in one transaction.

        ``judged`` holds ``(first_seq, events, verdicts)`` batches (one per frame a feed read); each
        is inserted under its own savepoint, so a batch that cannot be written fails alone. The
        future resolves after the commit, with the indexes of the batches that failed. Rows are
        built on the store's thread, off the event loop.
        """
        at_ms = now_ms()

        def job(conn: sqlite3.Connection) -> list[int]:
            rows: list[list[tuple[object, ...]]] = []
            failed = []
            for n, (first, events, verdicts) in enumerate(judged):
                try:
                    rows.append(
                        [_row(first + i, e, v) for i, (e, v) in enumerate(zip(events, verdicts, strict=True))]
                    )
                except Exception:  # an event no conversion could store: its batch fails alone
                    rows.append([])
                    failed.append(n)
            conn.execute("SAVEPOINT every")
            try:
                conn.executemany(_INSERT, [row for batch in rows for row in batch])
            except _UNWRITABLE:
                # find the batch that cannot be written: each under its own savepoint
                conn.execute("ROLLBACK TO every")
                for n, batch in enumerate(rows):
                    if n in failed:
                        continue
                    conn.execute("SAVEPOINT batch")
                    try:
                        conn.executemany(_INSERT, batch)
                    except UnicodeEncodeError:  # written with the unencodable characters replaced
                        conn.execute("ROLLBACK TO batch")
                        try:
                            conn.executemany(_INSERT, [tuple(map(_encodable, row)) for row in batch])
                        except _UNWRITABLE:
                            conn.execute("ROLLBACK TO batch")
                            failed.append(n)
                    except _UNWRITABLE:
                        conn.execute("ROLLBACK TO batch")
                        failed.append(n)
                    conn.execute("RELEASE batch")
            conn.execute("RELEASE every")
            if updates:
                conn.executemany(
                    "UPDATE chat_events SET decision = ?, reason = ?, decided_at = ? WHERE seq = ?",
                    [(decision, reason, at_ms, seq) for seq, decision, reason in updates],
                )
            return failed

        return self.store.submit(job)

    async def pending(self) -> list[LoggedEvent]:
        """Events still queued (the process stopped before they were answered or dropped)."""
        return await self.store.read(
            lambda c: [
                _logged(r)
                for r in c.execute(
                    f"SELECT {_COLUMNS} FROM chat_events WHERE decision = 'queued' ORDER BY seq"
                )
            ]
        )

    async def recent(
        self,
        limit: int = 100,
        *,
        before_seq: int | None = None,
        decision: str | None = None,
        kind: str | None = None,
        user_id: str | None = None,
    ) -> list[LoggedEvent]:
        """The latest events, newest first, optionally filtered (the dashboard's chat view)."""
        where: list[str] = ["1"]
        args: list[object] = []
        for column, value in (("decision", decision), ("kind", kind), ("user_id", user_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if before_seq is not None:
            where.append("seq < ?")
            args.append(before_seq)
        sql = f"SELECT {_COLUMNS} FROM chat_events WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?"
        return await self.store.read(lambda c: [_logged(r) for r in c.execute(sql, (*args, limit))])

    async def counts(self, since_ms: int = 0) -> dict[str, int]:
        """How many events got each decision (``decision:reason``) since ``since_ms``."""
        sql = (
            "SELECT decision, reason, COUNT(*) FROM chat_events WHERE received_at >= ? "
            "GROUP BY decision, reason"
        )
        rows = await self.store.read(lambda c: c.execute(sql, (since_ms,)).fetchall())
        return {f"{d}:{r}" if r else d: n for d, r, n in rows}

    async def _last_seq_before(self, ms: int) -> int:
        sql = "SELECT seq FROM chat_events WHERE received_at < ? ORDER BY received_at DESC LIMIT 1"
        row = await self.store.read(lambda c: c.execute(sql, (ms,)).fetchone())
        return int(row[0]) if row else 0

    async def prune(self, before_ms: int, raw_before_ms: int, chunk: int = 10_000) -> int:
        """Retention: delete rows received before ``before_ms``; clear raw text before ``raw_before_ms``.

        Works through seq ranges of ``chunk`` rows, one transaction each, so live writes are never
        held up long. Queued events are kept. Returns how many rows were deleted.
        """
        deleted = 0
        end = await self._last_seq_before(before_ms)
        start = await self.store.read(lambda c: c.execute("SELECT MIN(seq) FROM chat_events").fetchone()[0])
        first = (start or 1) - 1
        for lo in range(first, end, chunk):
            deleted += await self.store.write(_ranged(_DELETE, lo, min(lo + chunk, end)))
        end = await self._last_seq_before(raw_before_ms)
        for lo in range(max(self._raw_cleared, first), end, chunk):
            await self.store.write(_ranged(_CLEAR_RAW, lo, min(lo + chunk, end)))
        self._raw_cleared = max(self._raw_cleared, end)
        return deleted

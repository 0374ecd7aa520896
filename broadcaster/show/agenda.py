"""The show's agenda: queued items, the scripts' places and what was said on air, in the SQLite store.

Every item a moderator, the schedule or a review queues is written (and committed) before the command
is acknowledged, and every change of state after it, so a restart resumes the queue (invariant 7): an
item that was on air when the process stopped goes back to the front of its lane, replies waiting for
review wait again, and each script resumes at the sentence it was playing. The agenda keeps the open
items in memory as well (a few dozen at most); the store is written, and read once at start.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from broadcaster.store import Store

Lane = Literal["moderator", "chat", "script", "filler"]
State = Literal["queued", "review", "on_air", "done", "removed", "interrupted", "failed", "rejected"]
LANES: tuple[Lane, ...] = ("moderator", "chat", "script", "filler")
OPEN_STATES = ("queued", "review", "on_air")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS show_items (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        lane TEXT NOT NULL,
        kind TEXT NOT NULL,
        text TEXT NOT NULL DEFAULT '',
        args TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL,
        rank REAL NOT NULL,
        source TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS show_items_open ON show_items (state) "
    "WHERE state IN ('queued', 'review', 'on_air')",
    """CREATE TABLE IF NOT EXISTS script_places (
        script TEXT PRIMARY KEY,
        round INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        sentence INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS show_settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS on_air (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        item INTEGER,
        lane TEXT NOT NULL,
        text TEXT NOT NULL
    )""",
)


def now_ms() -> int:
    """Wall time in ms (what the rows record)."""
    return int(time.time() * 1000)


@dataclass
class Item:
    """One queued thing to say or play.

    ``kind``: ``say`` (a line: ``text``), ``script`` (a run of ``args["script"]``: ``args["segments"]``
    segments, 0 = one round; ``args["played"]`` so far), ``reply`` (a reviewed chat reply: ``text``, with
    ``args["seqs"]`` the chat events it answers and ``args["question"]``).
    """

    id: int
    lane: Lane
    kind: str
    text: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    state: State = "queued"
    rank: float = 0.0
    source: str = ""
    created_ms: int = 0

    def public(self) -> dict[str, Any]:
        """As the control API shows it."""
        return {
            "id": self.id,
            "lane": self.lane,
            "kind": self.kind,
            "text": self.text,
            "args": self.args,
            "state": self.state,
            "source": self.source,
            "created_ms": self.created_ms,
        }


@dataclass(frozen=True)
class Place:
    """Where a script is: round number, index in that round's order, sentence in that segment."""

    round: int = 0
    idx: int = 0
    sentence: int = 0


class Agenda:
    """The open items (in memory and in the store) and the scripts' places."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.ensure(SCHEMA)
        self.items: dict[int, Item] = {}
        self.places: dict[str, Place] = {}
        self.settings: dict[str, Any] = {}

    async def load(self) -> list[Item]:
        """Read the open items and places (once, at start); items that were on air queue again first."""

        def read(conn: sqlite3.Connection) -> tuple[list[Any], list[Any], list[Any]]:
            items = conn.execute(
                "SELECT id, lane, kind, text, args, state, rank, source, created_ms FROM show_items "
                "WHERE state IN ('queued', 'review', 'on_air') ORDER BY id"
            ).fetchall()
            places = conn.execute("SELECT script, round, idx, sentence FROM script_places").fetchall()
            settings = conn.execute("SELECT key, value FROM show_settings").fetchall()
            return items, places, settings

        rows, places, settings = await self.store.read(read)
        self.settings = {key: json.loads(value) for key, value in settings}
        resumed = []
        for id_, lane, kind, text, args, state, rank, source, created in rows:
            item = Item(id_, lane, kind, text, json.loads(args), state, rank, source, created)
            if state == "on_air":
                resumed.append(item)
            self.items[id_] = item
        for script, round_, idx, sentence in places:
            self.places[script] = Place(round_, idx, sentence)
        for item in resumed:  # back to the front of its lane, in the order they were
            await self.set_state(item, "queued", rank=self.front(item.lane))
        return resumed

    def front(self, lane: Lane) -> float:
        """A rank before every queued item of ``lane``."""
        ranks = [i.rank for i in self.items.values() if i.lane == lane and i.state == "queued"]
        return min(ranks, default=1.0) - 1.0

    def back(self, lane: Lane) -> float:
        """A rank after every queued item of ``lane``."""
        ranks = [i.rank for i in self.items.values() if i.lane == lane and i.state == "queued"]
        return max(ranks, default=0.0) + 1.0

    async def add(
        self,
        lane: Lane,
        kind: str,
        text: str = "",
        args: dict[str, Any] | None = None,
        *,
        state: State = "queued",
        front: bool = False,
        source: str = "",
    ) -> Item:
        """Queue an item (at the back of its lane, or the front); returns once it is committed."""
        args = args or {}
        rank = self.front(lane) if front else self.back(lane)
        created = now_ms()
        encoded = json.dumps(args, ensure_ascii=False)

        def insert(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "INSERT INTO show_items (lane, kind, text, args, state, rank, source, created_ms, updated_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (lane, kind, text, encoded, state, rank, source, created, created),
            )
            return int(cursor.lastrowid or 0)

        item_id = await self.store.write(insert)
        item = Item(item_id, lane, kind, text, args, state, rank, source, created)
        self.items[item_id] = item
        return item

    async def set_state(
        self,
        item: Item,
        state: State,
        *,
        reason: str = "",
        rank: float | None = None,
        text: str | None = None,
    ) -> None:
        """Move an item on (``queued`` → ``on_air`` → ``done``...); closed items leave memory.

        The store is written first: when the write fails the item is as it was, in memory too.
        """
        rank = item.rank if rank is None else rank
        text = item.text if text is None else text
        args = json.dumps(item.args, ensure_ascii=False)
        values = (state, rank, text, args, reason, now_ms(), item.id)
        await self.store.write(
            lambda c: c.execute(
                "UPDATE show_items SET state = ?, rank = ?, text = ?, args = ?, reason = ?, updated_ms = ?"
                " WHERE id = ?",
                values,
            )
        )
        item.state, item.rank, item.text = state, rank, text
        if state not in OPEN_STATES:
            self.items.pop(item.id, None)

    async def remember(self, key: str, value: Any) -> None:
        """Keep a switch (review mode) across restarts."""
        encoded = json.dumps(value)
        await self.store.write(
            lambda c: c.execute(
                "INSERT INTO show_settings (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, encoded),
            )
        )
        self.settings[key] = value

    async def prune(self, days: float) -> int:
        """Delete closed items and on-air lines older than ``days``; returns the rows deleted."""
        cutoff = now_ms() - int(days * 86_400_000)

        def delete(conn: sqlite3.Connection) -> int:
            items = conn.execute(
                "DELETE FROM show_items WHERE updated_ms < ? AND state NOT IN ('queued', 'review', 'on_air')",
                (cutoff,),
            ).rowcount
            return int(items + conn.execute("DELETE FROM on_air WHERE at_ms < ?", (cutoff,)).rowcount)

        return await self.store.write(delete)

    def queued(self, lane: Lane | None = None) -> list[Item]:
        """Queued items (of one lane, or all) in airing order: lanes by priority, then rank."""
        items = [i for i in self.items.values() if i.state == "queued" and (lane is None or i.lane == lane)]
        return sorted(items, key=lambda i: (LANES.index(i.lane), i.rank, i.id))

    def waiting_review(self) -> list[Item]:
        """Replies waiting for a moderator, oldest first."""
        return sorted((i for i in self.items.values() if i.state == "review"), key=lambda i: i.id)

    async def move(self, item: Item, position: int) -> None:
        """Put a queued item at ``position`` (0 = first, clamped) among the queued items of its lane."""
        others = [i for i in self.queued(item.lane) if i.id != item.id]
        position = max(0, min(position, len(others)))
        if not others:
            return
        if position == 0:
            rank = others[0].rank - 1.0
        elif position == len(others):
            rank = others[-1].rank + 1.0
        else:
            rank = (others[position - 1].rank + others[position].rank) / 2
        await self.set_state(item, "queued", rank=rank)

    def place(self, script: str) -> Place:
        """Where ``script`` is (the start when it never played)."""
        return self.places.get(script, Place())

    def set_place(self, script: str, place: Place) -> None:
        """Record where ``script`` is; written in the background (a lost place costs one sentence)."""
        self.places[script] = place
        values = (script, place.round, place.idx, place.sentence, now_ms())
        self.store.submit(
            lambda c: c.execute(
                "INSERT INTO script_places (script, round, idx, sentence, updated_ms) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (script) DO UPDATE SET round = excluded.round, idx = excluded.idx,"
                " sentence = excluded.sentence, updated_ms = excluded.updated_ms",
                values,
            )
        )

    def said(self, item: Item | None, lane: Lane, text: str) -> None:
        """Log a sentence that went on air (written in the background)."""
        values = (now_ms(), item.id if item else None, lane, text)
        self.store.submit(
            lambda c: c.execute("INSERT INTO on_air (at_ms, item, lane, text) VALUES (?, ?, ?, ?)", values)
        )

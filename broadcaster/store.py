"""The project's SQLite store: one WAL file, one writer thread, writes committed before acknowledged.

Every write is a job run on the writer thread's connection; the jobs waiting when the thread wakes
are run in one transaction (group commit), so thousands of small writes a second cost one commit per
batch, and each caller's future resolves only after that commit. With ``synchronous = "normal"`` a
commit survives the process being killed (the WAL is in the OS's hands); ``"full"`` also survives a
power cut, at an fsync per batch. Reads use their own connection (WAL readers never block the writer)
on a worker thread. Modules own their tables: they pass their ``CREATE ... IF NOT EXISTS`` statements
to ``ensure``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

log = logging.getLogger("broadcaster.store")

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]
_Item = tuple[Callable[[sqlite3.Connection], Any], "concurrent.futures.Future[Any]"]
Synchronous = Literal["normal", "full"]


class StoreError(Exception):
    """A write or read that did not happen (disk full, file unwritable, closed store)."""


class Store:
    """The SQLite file at ``path`` (created with its folder)."""

    def __init__(self, path: Path, synchronous: Synchronous = "normal", max_batch: int = 512) -> None:
        self.path = path
        self.synchronous = synchronous
        self.max_batch = max_batch
        self.commits = 0
        self.failures = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._connect()
            # 16 KiB pages (for a new file): chat rows of 2-3 KB pack four times as densely, and a burst's
            # inserts cost about a third less than with 4 KiB pages
            self._writer.execute("PRAGMA page_size=16384")
            self._writer.execute("PRAGMA journal_mode=WAL")
            self._reader = self._connect()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{path}: cannot open the store: {exc}") from exc
        self._read_lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def ensure(self, statements: Sequence[str]) -> None:
        """Create a module's tables and indexes (idempotent ``IF NOT EXISTS`` statements)."""

        def create(conn: sqlite3.Connection) -> None:
            for statement in statements:
                conn.execute(statement)

        self.submit(create).result()

    def submit(self, job: Job[T]) -> concurrent.futures.Future[T]:
        """Queue ``job`` for the writer; its future resolves after the commit that includes it."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        if self._closed:
            future.set_exception(StoreError(f"{self.path}: the store is closed"))
            return future
        self._jobs.put((job, future))
        return future

    async def write(self, job: Job[T]) -> T:
        """Run ``job`` on the writer and wait for its commit."""
        return await asyncio.wrap_future(self.submit(job))

    def read_now(self, job: Job[T]) -> T:
        """Run a read-only ``job`` on the reader connection, in this thread."""
        with self._read_lock:
            try:
                return job(self._reader)
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: read failed: {exc}") from exc

    async def read(self, job: Job[T]) -> T:
        """Run a read-only ``job`` on a worker thread."""
        return await asyncio.to_thread(self.read_now, job)

    def _write_loop(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._run(batch)
                    return
                batch.append(item)
            self._run(batch)

    def _run(self, batch: list[_Item]) -> None:
        # a caller that stopped waiting (its task cancelled) cancelled its future: skip that job
        batch = [(job, future) for job, future in batch if future.set_running_or_notify_cancel()]
        if batch:
            self._commit(batch)

    def _commit(self, batch: list[_Item]) -> None:
        conn = self._writer
        results: list[tuple[concurrent.futures.Future[Any], Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job, future in batch:
                results.append((future, job(conn)))
            conn.execute("COMMIT")
        except Exception as exc:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error as rollback:
                log.error("store %s: rollback failed: %s", self.path, rollback)
            if len(batch) > 1:
                # one bad job must not fail the others: run each alone
                for item in batch:
                    self._commit([item])
                return
            self.failures += 1
            log.error("store %s: write failed: %s", self.path, exc)
            batch[0][1].set_exception(StoreError(f"{self.path}: write failed: {exc}"))
            return
        self.commits += 1
        for future, result in results:
            future.set_result(result)

    def close(self) -> None:
        """Finish the queued writes, then close both connections."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        self._thread.join()
        for conn in (self._writer, self._reader):
            conn.close()

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from broadcaster.store import Store, StoreError


def test_writes_commit_before_they_resolve_and_batch_together(tmp_path: Path) -> None:
    store = Store(tmp_path / "db" / "x.sqlite3")
    store.ensure(["CREATE TABLE IF NOT EXISTS t (v INTEGER)"])
    futures = [
        store.submit(lambda c, i=i: c.execute("INSERT INTO t VALUES (?)", (i,)).rowcount) for i in range(500)
    ]
    assert [f.result(timeout=10) for f in futures] == [1] * 500
    # another connection (another process could be reading) sees every resolved write
    with sqlite3.connect(store.path) as other:
        assert other.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 500
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.commits < 500, "waiting writes share a commit"
    store.close()


def test_a_failing_write_fails_alone(tmp_path: Path) -> None:
    store = Store(tmp_path / "x.sqlite3")
    store.ensure(["CREATE TABLE IF NOT EXISTS t (v INTEGER NOT NULL)"])
    good = store.submit(lambda c: c.execute("INSERT INTO t VALUES (1)"))
    bad = store.submit(lambda c: c.execute("INSERT INTO t VALUES (NULL)"))
    also_good = store.submit(lambda c: c.execute("INSERT INTO t VALUES (2)"))
    good.result(10)
    also_good.result(10)
    with pytest.raises(StoreError, match="NOT NULL"):
        bad.result(10)
    assert store.read_now(lambda c: c.execute("SELECT v FROM t ORDER BY v").fetchall()) == [(1,), (2,)]
    assert store.failures == 1
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.submit(lambda c: None).result(1)


async def test_async_write_and_read(tmp_path: Path) -> None:
    store = Store(tmp_path / "x.sqlite3")
    store.ensure(["CREATE TABLE IF NOT EXISTS t (v TEXT)"])
    await asyncio.gather(
        *(store.write(lambda c, i=i: c.execute("INSERT INTO t VALUES (?)", (str(i),))) for i in range(50))
    )
    assert await store.read(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone()[0]) == 50
    store.close()


def test_an_unwritable_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot open the store"):
        Store(tmp_path / "file" / "x.sqlite3")


def test_a_resolved_write_survives_the_process_being_killed(tmp_path: Path) -> None:
    db = tmp_path / "x.sqlite3"
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from broadcaster.store import Store
        store = Store(Path({str(db)!r}))
        store.ensure(["CREATE TABLE IF NOT EXISTS t (v INTEGER)"])
        for i in range(100):
            store.submit(lambda c, i=i: c.execute("INSERT INTO t VALUES (?)", (i,))).result()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert done.returncode == -9
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 100


async def test_a_write_whose_caller_gave_up_is_skipped_and_the_writer_lives_on(tmp_path: Path) -> None:
    store = Store(tmp_path / "x.sqlite3")
    store.ensure(["CREATE TABLE IF NOT EXISTS t (v INTEGER)"])
    gate = threading.Event()
    blocker = store.submit(lambda c: gate.wait(5))  # holds the writer while the next job is cancelled
    waiting = asyncio.create_task(store.write(lambda c: c.execute("INSERT INTO t VALUES (1)")))
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    gate.set()
    blocker.result(5)
    await store.write(lambda c: c.execute("INSERT INTO t VALUES (2)"))
    assert await store.read(lambda c: c.execute("SELECT v FROM t").fetchall()) == [(2,)]
    store.close()

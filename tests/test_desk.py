from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from broadcaster.store import Store
from danmaku.chatlog import ChatLog
from danmaku.config import ChatConfig
from danmaku.desk import ChatDesk
from danmaku.events import ChatEvent, Gift, User, now_ms
from danmaku.feeds.local import LocalFeedConfig
from danmaku.triage.text import TextRules, block_rules


def desk(store: Store, **chat: object) -> ChatDesk:
    cfg = ChatConfig.model_validate({"interval_s": 0, **chat})
    return ChatDesk(cfg, [LocalFeedConfig()], store, TextRules(block_rules(cfg.block), cfg.block.links))


async def decisions(store: Store) -> dict[str, tuple[str, str]]:
    rows = await ChatLog(store).recent(1000)
    return {r.event.text or r.event.id: (r.decision, r.reason) for r in rows}


async def test_a_comment_is_logged_queued_answered(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    d = desk(store)
    await d.start()
    local = d.local_feed()
    event = await local.submit("amy", "这个茶多少钱？")
    # logged before submit returned
    assert (await decisions(store))["这个茶多少钱？"] == ("queued", "question")
    await local.submit("bob", "666")
    candidate = await asyncio.wait_for(d.next(), 2)
    assert candidate.event.id == event.id and candidate.kind == "answer"
    d.done(candidate, True)
    await d.settle()
    logged = await decisions(store)
    assert logged["这个茶多少钱？"] == ("answered", "answer")
    assert logged["666"] == ("dropped", "chatter")
    row = (await ChatLog(store).recent(1, decision="answered"))[0]
    assert row.event.user == User("name:amy", "amy") and row.event.raw == "amy: 这个茶多少钱？"
    assert (await ChatLog(store).counts()) == {"answered:answer": 1, "dropped:chatter": 1}
    assert d.stats()["feeds"]["local"]["events"] == 2
    await d.close()
    store.close()


async def test_a_platform_moderator_removal_takes_queued_comments_out(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    d = desk(store)
    now = now_ms()

    def chat(id_: str, user: str, text: str) -> ChatEvent:
        return ChatEvent(id_, "twitch", "chat", now, User(user, user), text, received_at=now)

    await d.accept([chat("m1", "troll", "what is this scam?"), chat("m2", "amy", "what tea is it?")])
    await d.accept([chat("m3", "bob", "how much is it?")])
    await d.accept([ChatEvent("c1", "twitch", "system", now, User("", ""), removes="user:troll")])
    await d.accept([ChatEvent("c2", "twitch", "system", now, User("", ""), removes="m3")])
    await d.settle()
    assert [c.event.id for c in d.pacer.items()] == ["m2"]
    logged = await decisions(store)
    assert logged["what is this scam?"] == ("dropped", "removed_by_platform")
    assert logged["how much is it?"] == ("dropped", "removed_by_platform")
    assert logged["c1"] == ("logged", "moderation")
    await d.close()
    store.close()


async def test_a_restart_resumes_what_was_queued(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    d = desk(store, stale_s=30)
    now = now_ms()
    old = now - 40_000
    await d.accept(
        [
            ChatEvent("q", "bilibili", "chat", now, User("1", "a"), "主播多少钱", received_at=now),
            ChatEvent("o", "bilibili", "chat", old, User("2", "b"), "多少钱呀", received_at=old),
        ]
    )
    await d.settle()
    await d.close()
    store.close()  # the process stops with both queued

    store = Store(path)
    again = desk(store, stale_s=30)
    await again.start()
    candidate = await asyncio.wait_for(again.next(), 2)
    assert candidate.event.id == "q" and candidate.priority == 200
    assert len(again.pacer) == 0
    logged = await decisions(store)
    assert logged["多少钱呀"] == ("dropped", "stale")
    # a redelivery of the same message after the restart is still a duplicate
    await again.accept(
        [ChatEvent("q", "bilibili", "chat", now, User("1", "a"), "主播多少钱", received_at=now)]
    )
    assert (await ChatLog(store).recent(1))[0].reason == "duplicate"
    await again.close()
    store.close()


async def test_events_that_cannot_be_logged_are_not_accepted(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    d = desk(store)
    store.close()
    await d.accept_logged([ChatEvent("x", "local", "chat", 0, User("1", "a"), "多少钱")])
    assert d.log_failures == 1
    assert len(d.pacer) == 0


async def test_gift_thanks_come_out_of_housekeeping(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    d = desk(store, thanks={"window_s": 0.2, "min_value": 1})
    await d.start()
    now = now_ms()
    gift = ChatEvent(
        "g1", "bilibili", "gift", now, User("9", "fan"), gift=Gift("花", 10, 2.0), received_at=now
    )
    await d.accept_logged([gift])
    candidate = await asyncio.wait_for(d.next(), 3)
    assert candidate.kind == "thanks" and candidate.value == 2.0
    d.done(candidate, False, "interrupted")
    await d.settle()
    assert (await decisions(store))["g1"] == ("dropped", "interrupted")
    await d.close()
    store.close()


async def test_retention_deletes_old_rows_and_clears_old_wire_text(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    d = desk(store)
    day = 86_400_000
    now = now_ms()

    def at(age_days: float, n: int) -> ChatEvent:
        t = now - int(age_days * day)
        return ChatEvent(f"m{n}", "bilibili", "like", t, User("1", "a"), raw=f"raw{n}", received_at=t)

    await d.accept_logged([at(9, 1), at(8, 2), at(3, 3), at(0.5, 4)])
    log = ChatLog(store)
    deleted = await log.prune(now - 7 * day, now - 1 * day, chunk=1)
    assert deleted == 2
    rows = {r.event.id: r.event.raw for r in await log.recent()}
    assert rows == {"m3": "", "m4": "raw4"}
    store.close()


async def test_hostile_values_are_logged_without_failing_their_batch(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    d = desk(store)
    now = now_ms()
    huge = ChatEvent(
        "h", "json", "gift", 10**30, User("1", "x" * 10_000, level=-(10**40)), "y" * 100_000,
        Gift("g", 10**25, 1.0), raw="z" * 1_000_000, received_at=now,
    )  # fmt: skip
    fine = ChatEvent("f", "json", "chat", now, User("2", "amy"), "多少钱？", received_at=now)
    await d.accept_logged([huge, fine])
    assert d.log_failures == 0
    rows = {r.event.id: r.event for r in await ChatLog(store).recent()}
    assert set(rows) == {"h", "f"}
    assert rows["h"].ts == 2**63 - 1 and rows["h"].user.level == -(2**63) and len(rows["h"].raw) == 65_536
    store.close()


async def test_a_lone_surrogate_is_logged_with_its_batch(tmp_path: Path) -> None:
    """A lenient JSON parser lets "\\ud800" through; SQLite cannot encode it: the row is kept, with "?"."""
    store = Store(tmp_path / "s.sqlite3")
    d = desk(store)
    now = now_ms()
    odd = ChatEvent("s", "json", "chat", now, User("1", "amy\ud800"), "tea\udfff?", received_at=now)
    fine = ChatEvent("f", "json", "chat", now, User("2", "bob"), "多少钱？", received_at=now)
    await d.accept_logged([odd, fine])
    assert d.log_failures == 0
    rows = {r.event.id: r.event for r in await ChatLog(store).recent()}
    assert set(rows) == {"s", "f"}
    assert rows["s"].text == "tea??"
    assert rows["s"].user.name == "amy?"
    store.close()


async def test_a_batch_that_cannot_be_written_fails_alone(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    d = desk(store)
    gate = threading.Event()
    store.submit(lambda c: gate.wait(5))  # the writer is busy: the next batches share one write
    now = now_ms()
    good = ChatEvent("ok", "json", "chat", now, User("1", "amy"), "多少钱？", received_at=now)
    kind: Any = {"not": "a kind"}
    bad = ChatEvent("bad", "json", kind, now, User("2", "bob"), "hi", received_at=now)
    await d.accept([good])
    await d.accept([bad])
    gate.set()
    await d.settle()
    assert d.log_failures == 1
    assert [r.event.id for r in await ChatLog(store).recent()] == ["ok"]
    assert [c.event.id for c in d.pacer.items()] == ["ok"]
    store.close()


async def test_a_thank_you_waits_for_its_gifts_to_be_committed(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    d = desk(store, thanks={"window_s": 0, "min_value": 1})
    gate = threading.Event()
    store.submit(lambda c: gate.wait(5))
    await d.accept(
        [gift_event := ChatEvent("g", "bilibili", "gift", 0, User("9", "fan"), gift=Gift("花", 1, 5.0))]
    )
    await d.accept([])  # the first write is in flight behind the gate; the gift waits in the buffer
    d._tidy()  # the gathering is due at once (window 0)
    assert len(d.pacer) == 0, "not before its row is committed"
    gate.set()
    await d.settle()
    assert [c.kind for c in d.pacer.items()] == ["thanks"] and d.pacer.items()[0].event is gift_event
    store.close()

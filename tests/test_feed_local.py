from __future__ import annotations

import asyncio
import os
import pty
import select
import sys

import pytest

from danmaku.feeds.local import LocalFeed, LocalFeedConfig
from tests.feeds import Collector, running


async def test_submitted_comments_are_delivered_with_stable_ids() -> None:
    sink = Collector()
    feed = LocalFeed(LocalFeedConfig(), sink)
    first = await feed.submit("amy", "这个多少钱？")
    second = await feed.submit("amy", "这个多少钱？")
    assert [e.text for e in sink.events] == ["这个多少钱？"] * 2
    assert first.id != second.id, "two comments, even alike, are two events"
    assert first.user.id == "name:amy" and first.platform == "local" and first.feed == "local"


async def test_lines_typed_on_a_terminal_are_comments(monkeypatch: pytest.MonkeyPatch) -> None:
    master, slave = pty.openpty()
    terminal = os.fdopen(slave, "r", closefd=True)
    monkeypatch.setattr(sys, "stdin", terminal)
    sink = Collector()
    feed = LocalFeed(LocalFeedConfig(stdin=True), sink)
    try:
        async with running(feed):
            os.write(master, "amy: 龙井怎么泡？\n\njust a thought\n".encode())
            await sink.wait_for(2)
    finally:
        os.close(master)
        terminal.close()
    assert [(e.user.name, e.text) for e in sink.events] == [
        ("amy", "龙井怎么泡？"),
        ("operator", "just a thought"),
    ]
    assert feed.stats.frames == 3


async def test_without_a_terminal_stdin_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    read, write = os.pipe()
    pipe = os.fdopen(read, "r")
    monkeypatch.setattr(sys, "stdin", pipe)
    feed = LocalFeed(LocalFeedConfig(stdin=True), Collector())
    try:
        async with running(feed):
            os.write(write, b"amy: not read\n")
            await asyncio.sleep(0.2)  # a window in which a reader would have taken the line
            assert select.select([read], [], [], 0)[0] == [read], "the line is still there, unread"
    finally:
        os.close(write)
        pipe.close()
    assert feed.stats.frames == 0

"""The whole show driven from the dashboard: the real `broadcaster run` process, its control server,
its program preview, and Debian's Chromium (Playwright) as the moderator's browser."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.conftest import free_port
from tests.openai_double import ScriptedLlm
from tests.run_cli import ROOT, finish

pytest.importorskip("playwright.async_api", reason="needs the playwright package (pip install playwright)")
from tests.test_dashboard import CHROMIUM, browser_page, pw_api, screen_pixels

TOKEN = "a-console-token-for-the-test-0123456789"
WAIT_MS = 30_000
REPLY = "Yes, it ships today from Hangzhou."


async def wait_listening(port: int, process: subprocess.Popen[str], within: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        assert process.poll() is None, finish(process).stderr[-3000:]
        try:
            async with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=1):
                return
        except OSError:
            assert asyncio.get_running_loop().time() < deadline, "the control server never listened"
            await asyncio.sleep(0.3)


def launch_show(
    avatar_root: Path, tmp_path: Path, port: int, settings: dict[str, object], *args: str
) -> subprocess.Popen[str]:
    """`broadcaster run` with its console on ``port``, no outputs, no fillers, plus ``settings``."""
    keys = {
        "avatar.dir": str(avatar_root),
        "outputs": [],
        "store.path": str(tmp_path / "show.sqlite3"),
        "voice.cache.dir": str(tmp_path / "tts"),
        "control.port": port,
        "show.fillers.enabled": False,
        **settings,
    }
    sets = [x for key, value in keys.items() for x in ("--set", f"{key}={json.dumps(value)}")]
    return subprocess.Popen(
        [sys.executable, "-m", "broadcaster", "run", *args, *sets],
        cwd=ROOT,
        env={**os.environ, "BROADCASTER_TOKEN": TOKEN},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_show(avatar_root: Path, tmp_path: Path, port: int, llm_url: str) -> subprocess.Popen[str]:
    settings = {"llm.base_url": llm_url, "show.review": True, "chat.interval_s": 0}
    return launch_show(
        avatar_root, tmp_path, port, settings, "--for", "120", "--chat", "ada: does it ship today?"
    )


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
async def test_a_moderator_runs_the_show_from_the_dashboard(avatar_root: Path, tmp_path: Path) -> None:
    llm = ScriptedLlm([w + " " for w in REPLY.split()])
    url = await llm.start()
    port = free_port()
    process = start_show(avatar_root, tmp_path, port, url)
    try:
        await wait_listening(port, process)
        async with browser_page() as page:
            await page.goto(f"http://127.0.0.1:{port}/#token={TOKEN}")
            await pw_api.expect(page.get_by_test_id("connection")).to_have_text("live", timeout=WAIT_MS)

            # the program's own preview moves (the avatar breathes and sways)
            counter = page.get_by_test_id("frame-counter")
            await pw_api.expect(counter).to_have_text(re.compile(r"frame \d+"), timeout=WAIT_MS)
            before = await screen_pixels(page)
            await pw_api.expect(counter).not_to_have_text(
                (await counter.text_content()) or "", timeout=WAIT_MS
            )
            await asyncio.sleep(1.0)
            assert await screen_pixels(page) != before, "the preview picture changes"

            # a talk on air; "say next" waits in the queue for its sentence, then airs
            await pw_api.expect(page.get_by_test_id("script-select")).to_have_value(
                re.compile(r".+"), timeout=WAIT_MS
            )
            await page.get_by_test_id("script-select").select_option("power-bank-pitch")
            await page.get_by_test_id("script-start").click()
            on_air = page.get_by_test_id("on-air")
            await pw_api.expect(on_air).not_to_have_text("", timeout=WAIT_MS)
            # two "say next" lines: the first waits for the talk's sentence, the second for the first line
            # (a moderator line is never cut by another), so it is seen waiting in the queue
            for line in ("A word from the moderator.", "And a second word from the moderator."):
                await page.get_by_test_id("say-text").fill(line)
                await page.get_by_test_id("say-next").click()
            queue = page.get_by_test_id("queue")
            await pw_api.expect(queue).to_contain_text("And a second word", timeout=WAIT_MS)
            await pw_api.expect(on_air).to_have_text("And a second word from the moderator.", timeout=WAIT_MS)
            await pw_api.expect(queue).not_to_contain_text("moderator", timeout=WAIT_MS)

            # "say now" cuts in at once
            await page.get_by_test_id("say-text").fill("Breaking news from the studio.")
            await page.get_by_test_id("say-now").click()
            await pw_api.expect(on_air).to_have_text("Breaking news from the studio.", timeout=WAIT_MS)

            # review mode: the viewer's question (posted at start) got a reply that waits for approval
            review = page.get_by_test_id("review")
            await pw_api.expect(review.get_by_test_id("review-text")).to_have_value(
                re.compile("ships today"), timeout=WAIT_MS
            )
            await pw_api.expect(review).to_contain_text("does it ship today?")
            # the chat view has the comment and its triage decision, from before the page was opened
            await pw_api.expect(page.get_by_test_id("chat")).to_contain_text("does it ship today?")
            await review.get_by_test_id("review-approve").click()
            await pw_api.expect(on_air).to_contain_text("ships today", timeout=WAIT_MS)
            await pw_api.expect(review.locator("li")).to_have_count(0)
    finally:
        process.terminate()
        done = finish(process, 60)
        await llm.close()
    assert done.code == 0, done.stderr[-3000:]
    director = done.summary["director"]
    assert director["review"] == 0 and director["interrupts"] >= 1, director
    assert llm.requests, "the reply was written by the LLM"

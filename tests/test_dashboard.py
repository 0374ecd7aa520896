"""The dashboard in Debian's Chromium (Playwright) against the real control server and a moving preview."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from broadcaster.control.hub import EventHub
from broadcaster.control.preview import PreviewSink
from broadcaster.control.settings import ControlConfig
from broadcaster.stream.tick import Tick
from tests.control_helpers import TOKEN, RecordingShow, running_server

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "needs Debian's Chromium at /usr/bin/chromium (apt install chromium)", allow_module_level=True
    )
pw_api = pytest.importorskip(
    "playwright.async_api", reason="needs the playwright package (pip install playwright)"
)
W, H, FPS, S = 320, 180, 25, 1920
WAIT_MS = 10_000


@contextmanager
def fake_program(sink: PreviewSink) -> Iterator[None]:
    """Ticks at 25 fps on the wall clock, a bar sweeping across the picture, into ``sink``."""
    stop = threading.Event()

    def run() -> None:
        start = time.monotonic()
        k = 0
        while not stop.wait(max(0.0, start + k / FPS - time.monotonic())):
            bgr = np.full((H, W, 3), 40, np.uint8)
            x = (k * 8) % W
            bgr[:, x : x + 24] = (0, 220, 255)
            audio = np.full((S, 2), 500 if k % 2 else -500, np.int16)
            sink.offer(Tick(k, cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420), audio))
            k += 1

    thread = threading.Thread(target=run, name="fake-program", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


@asynccontextmanager
async def browser_page() -> AsyncIterator[Any]:
    async with pw_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            yield page
            assert errors == [], errors
        finally:
            await browser.close()


async def screen_pixels(page: Any) -> list[int]:
    """A row of the picture on screen: the WebRTC video when it plays, else the preview canvas."""
    return list(
        await page.evaluate(
            """() => {
                const video = document.querySelector('[data-testid="live"]');
                let c = document.querySelector('[data-testid="preview"]');
                if (!video.hidden) {
                    c = document.createElement('canvas');
                    c.width = video.videoWidth;
                    c.height = video.videoHeight;
                    c.getContext('2d').drawImage(video, 0, 0);
                }
                return Array.from(c.getContext('2d').getImageData(0, c.height / 2, c.width, 1).data);
            }"""
        )
    )


async def test_the_dashboard_shows_the_program_and_drives_the_show() -> None:
    hub = EventHub()
    show = RecordingShow()
    sink = PreviewSink(hub, ControlConfig(preview_fps=10, preview_width=W), FPS)
    sink.start()
    try:
        async with running_server(show, hub, preview=sink) as server, browser_page() as page:
            with fake_program(sink):
                await page.goto(f"{server.url}#token={TOKEN}")
                await pw_api.expect(page.get_by_test_id("connection")).to_have_text("live", timeout=WAIT_MS)
                assert "token" not in page.url  # taken out of the address bar

                # the live preview: frames arrive and the picture moves
                counter = page.get_by_test_id("frame-counter")
                await pw_api.expect(counter).to_have_text(
                    re.compile(r"frame ([3-9]|\d\d+) "), timeout=WAIT_MS
                )
                before = await screen_pixels(page)
                seen = (await counter.text_content()) or ""
                await pw_api.expect(counter).not_to_have_text(seen, timeout=WAIT_MS)
                await pw_api.expect(counter).not_to_have_text(
                    (await counter.text_content()) or "", timeout=WAIT_MS
                )
                assert await screen_pixels(page) != before

                # the state snapshot filled the script picker
                await pw_api.expect(page.get_by_test_id("script-select")).to_have_value("morning")

                # say now
                await page.get_by_test_id("say-text").fill("hello from the console")
                await page.get_by_test_id("say-now").click()
                assert await show.wait_for("say") == ("hello from the console", "now")
                await pw_api.expect(page.get_by_test_id("say-text")).to_have_value("")

                # events show up
                hub.publish("on_air", {"item": 9, "lane": "moderator", "text": "hello from the console"})
                await pw_api.expect(page.get_by_test_id("on-air")).to_have_text("hello from the console")
                items = [
                    {"id": 1, "lane": "chat", "text": "an answer to Ada"},
                    {"id": 2, "lane": "chat", "text": "to Bob"},
                ]
                hub.publish("queue", {"items": items})
                queue = page.get_by_test_id("queue")
                await pw_api.expect(queue).to_contain_text("an answer to Ada")
                await queue.locator("li").first.get_by_title("down").click()
                assert await show.wait_for("queue_move") == (1, 1)
                await queue.locator("li").last.get_by_title("remove").click()
                assert await show.wait_for("queue_remove") == (2,)
                hub.publish(
                    "triage",
                    {"event": {"user": {"name": "Ada"}, "text": "what is this?"}, "verdict": "queued"},
                )
                await pw_api.expect(page.get_by_test_id("chat")).to_contain_text("what is this?")

                # review: approve a waiting reply
                question = {"question": {"user": "Ada", "text": "does it ship today?"}}
                hub.publish(
                    "review",
                    {"action": "waiting", "item": {"id": 7, "text": "a careful reply", "args": question}},
                )
                review = page.get_by_test_id("review")
                await pw_api.expect(review.get_by_test_id("review-text")).to_have_value("a careful reply")
                await review.get_by_test_id("review-approve").click()
                assert await show.wait_for("review_approve") == (7, None)
                await pw_api.expect(review).to_contain_text("Ada: does it ship today?")
                hub.publish("review", {"action": "approved", "item": {"id": 7, "text": "a careful reply"}})
                await pw_api.expect(review.locator("li")).to_have_count(0)
                # edit, then approve; and reject
                hub.publish("review", {"action": "waiting", "item": {"id": 8, "text": "a reply with a typo"}})
                await review.get_by_test_id("review-text").fill("a reply, corrected")
                await review.get_by_test_id("review-approve").click()
                assert await show.wait_for("review_approve", nth=2) == (8, "a reply, corrected")
                hub.publish("review", {"item": 9, "status": "pending", "text": "off topic"})  # the flat form
                await review.locator("li[data-item='9']").get_by_test_id("review-reject").click()
                assert await show.wait_for("review_reject") == (9,)

                # a dropped connection comes back by itself
                for session in list(server.sessions):
                    await session.ws.close()
                await pw_api.expect(page.get_by_test_id("connection")).to_have_text(
                    "disconnected", timeout=WAIT_MS
                )
                await pw_api.expect(page.get_by_test_id("connection")).to_have_text("live", timeout=WAIT_MS)
                await page.get_by_test_id("interrupt").click()
                assert await show.wait_for("interrupt") == ()
    finally:
        sink.close()

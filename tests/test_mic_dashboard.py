"""The dashboard's microphone panel in Debian's Chromium: a fake microphone (a WAV of speech) talks to
the real `broadcaster run` process over /mic; without a microphone the console says so and works."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect

from tests.conftest import free_port
from tests.control_helpers import TOKEN as SERVER_TOKEN
from tests.control_helpers import Console, RecordingShow, running_server
from tests.openai_double import ScriptedLlm
from tests.run_cli import finish
from tests.speech_samples import silence, speech, write_wav

pytest.importorskip("playwright.async_api", reason="needs the playwright package (pip install playwright)")
from tests.test_console_live import TOKEN, WAIT_MS, launch_show, wait_listening
from tests.test_dashboard import CHROMIUM, pw_api

RATE = 48000
QUESTION = "what is the price of the power bank"
HEARD = "price"  # the word of the question pocketsphinx reliably gets from the browser's audio
HOST = "host"  # voice_in.host_name
REPLY = "It costs twenty dollars today."
BROWSER_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
expect = pw_api.expect


def host_speech(path: Path) -> Path:
    """What the fake microphone plays, once: a greeting, then the question the test listens for.

    Chromium's noise suppressor (the page asks for it) adapts during the first second of speech it
    hears and mangles it: the question alone comes back from pocketsphinx as "what is ah". The
    greeting is that first second.
    """
    pcm = np.concatenate(
        [
            silence(1.0, RATE),
            speech("hello there", RATE),
            silence(1.5, RATE),  # longer than voice_in.turns.end_of_turn_ms: two turns
            speech(QUESTION, RATE),
            silence(2.0, RATE),
        ]
    )
    return write_wav(path, pcm, RATE)


def fake_microphone(wav: Path) -> list[str]:
    """Chromium flags: every page may use the microphone, which plays ``wav`` once (``%noloop``)."""
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
    ]


@asynccontextmanager
async def chromium(*flags: str) -> AsyncIterator[Any]:
    """Debian's Chromium, headless, with the other browser tests' flags plus ``flags``."""
    async with pw_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=[*BROWSER_FLAGS, *flags]
        )
        try:
            yield browser
        finally:
            await browser.close()


async def console_page(browser: Any, url: str, init_script: str = "") -> tuple[Any, list[str]]:
    """A new page on the dashboard at ``url`` (token included), and the errors it reports."""
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    if init_script:
        await page.add_init_script(init_script)
    await page.goto(url)
    await expect(page.get_by_test_id("connection")).to_have_text("live", timeout=WAIT_MS)
    return page, errors


async def mic_stats(page: Any) -> dict[str, Any]:
    return dict(await page.evaluate("() => window.micStats()"))


async def until(probe: Callable[[], Awaitable[Any]], within_s: float = WAIT_MS / 1000) -> Any:
    """``probe()``'s first truthy value, tried every 0.1 s for ``within_s``."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not (value := await probe()):
        assert asyncio.get_running_loop().time() < deadline, "never came true"
        await asyncio.sleep(0.1)
    return value


@asynccontextmanager
async def control_client(port: int) -> AsyncIterator[Console]:
    """A second, plain console on the show's /ws (no browser)."""
    async with connect(f"ws://127.0.0.1:{port}/ws?token={TOKEN}") as ws:
        yield Console(ws)


async def voice_state(control: Console) -> dict[str, Any]:
    reply = await control.call("state")
    assert reply["ok"], reply
    return dict(reply["result"]["voice"])


async def voice_reaches(control: Console, **want: object) -> None:
    """Wait until the show's ``state.voice`` has ``want`` (as another console sees it)."""

    async def reached() -> bool:
        voice = await voice_state(control)
        return all(voice.get(k) == v for k, v in want.items())

    await until(reached)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
async def test_the_host_talks_with_the_show_from_the_dashboard(avatar_root: Path, tmp_path: Path) -> None:
    wav = host_speech(tmp_path / "host.wav")
    llm = ScriptedLlm([w + " " for w in REPLY.split()])
    settings = {
        "llm.base_url": await llm.start(),
        "chat.interval_s": 0,
        "voice_in.mode": "conversation",
        "voice_in.asr.engine": "pocketsphinx",
    }
    port = free_port()
    process = launch_show(avatar_root, tmp_path, port, settings, "--for", "120")
    try:
        await wait_listening(port, process)
        async with chromium(*fake_microphone(wav)) as browser, control_client(port) as control:
            page, errors = await console_page(browser, f"http://127.0.0.1:{port}/#token={TOKEN}")
            mode = page.get_by_test_id("mic-mode")
            await expect(mode).to_have_value("conversation", timeout=WAIT_MS)  # from state.voice
            voice = await voice_state(control)
            assert voice["mode"] == "conversation" and voice["mic"] is False, voice

            # start: the socket goes live at the rate the page records at
            await page.get_by_test_id("mic-start").click()
            await expect(page.get_by_test_id("mic-state")).to_have_text(
                f"mic live ({RATE} Hz)", timeout=WAIT_MS
            )
            await expect(page.get_by_test_id("mic-start")).to_have_text("stop mic")
            live = await mic_stats(page)
            assert live["state"] == "live" and live["rate"] == RATE and live["tracks"] == 1, live
            await voice_reaches(control, mic=True)
            # blocks of 20 ms, sent as they are captured (about 50 a second), none dropped
            first = await mic_stats(page)
            await asyncio.sleep(2.0)
            later = await mic_stats(page)
            assert 80 <= later["sent_frames"] - first["sent_frames"] <= 120, (first, later)
            assert later["dropped_frames"] == 0, later

            # the greeting, then the question: speech starts and stops, the question is heard
            speaking = page.get_by_test_id("mic-speaking")
            await expect(speaking).to_have_attribute("data-speaking", "true", timeout=WAIT_MS)
            await expect(speaking).to_have_text("speaking")
            await page.wait_for_function(
                "() => document.querySelector('[data-testid=mic-level]').value > 0.05", timeout=WAIT_MS
            )
            await expect(speaking).to_have_attribute("data-speaking", "false", timeout=WAIT_MS)
            finals = page.get_by_test_id("mic-finals")
            await expect(finals).to_contain_text(HEARD, timeout=WAIT_MS)
            # the host's words are a chat event from the host, in the chat view
            said = page.get_by_test_id("chat").locator("li", has_text=HEARD)
            await expect(said.first).to_contain_text(HOST, timeout=WAIT_MS)

            # a second console cannot take the microphone while this one has it
            other, other_errors = await console_page(browser, f"http://127.0.0.1:{port}/#token={TOKEN}")
            await other.get_by_test_id("mic-start").click()
            busy = other.get_by_test_id("mic-notice")
            await expect(busy).to_have_class(re.compile(r"\berror\b"), timeout=WAIT_MS)
            await expect(busy).not_to_have_text("")
            await expect(other.get_by_test_id("mic-state")).to_have_text(
                re.compile("mic off|another console")
            )
            assert (await mic_stats(other))["tracks"] == 0, "the refused page let go of its microphone"
            assert (await mic_stats(page))["state"] == "live"
            await other.close()

            # the mode, from the page's selector and from another console: both agree
            await mode.select_option("passthrough")
            await voice_reaches(control, mode="passthrough")
            await page.wait_for_function("() => window.micStats().mode === 'passthrough'", timeout=WAIT_MS)
            assert (await control.call("voice.mode", mode="off"))["result"] == {"mode": "off"}
            await expect(mode).to_have_value("off", timeout=WAIT_MS)

            # a slow link: blocks are dropped and counted, never queued
            await page.evaluate(
                """() => Object.defineProperty(WebSocket.prototype, "bufferedAmount",
                       { get: () => 1 << 30, configurable: true })"""
            )
            before = await mic_stats(page)
            await page.wait_for_function(
                f"() => window.micStats().dropped_frames >= {before['dropped_frames'] + 10}", timeout=WAIT_MS
            )
            assert (await mic_stats(page))["sent_frames"] <= before["sent_frames"] + 1
            await page.evaluate("() => delete WebSocket.prototype.bufferedAmount")  # the real one again

            # stop: the tracks, the worklet, the context and the socket are let go
            await page.get_by_test_id("mic-start").click()
            await expect(page.get_by_test_id("mic-state")).to_have_text("mic off", timeout=WAIT_MS)
            stopped = await mic_stats(page)
            assert stopped["state"] == "off" and stopped["tracks"] == 0, stopped
            await voice_reaches(control, mic=False)
            await expect(page.get_by_test_id("mic-start")).to_have_text("start mic")
            assert errors == [] and other_errors == [], (errors, other_errors)
    finally:
        process.terminate()
        done = finish(process, 60)
        await llm.close()
    assert done.code == 0, done.stderr[-3000:]


NO_MEDIA_DEVICES = "Object.defineProperty(Navigator.prototype, 'mediaDevices', { get: () => undefined });"


@pytest.mark.parametrize(
    ("flags", "init_script", "notice"),
    [
        (["--use-fake-device-for-media-stream", "--deny-permission-prompts"], "", "refused"),
        ([], NO_MEDIA_DEVICES, "no microphone here"),
    ],
    ids=["refused", "unavailable"],
)
async def test_without_a_microphone_the_console_says_so_and_works(
    flags: list[str], init_script: str, notice: str
) -> None:
    show = RecordingShow()
    async with running_server(show) as server, chromium(*flags) as browser:
        page, errors = await console_page(browser, f"{server.url}#token={SERVER_TOKEN}", init_script)
        await page.get_by_test_id("mic-start").click()
        mic_notice = page.get_by_test_id("mic-notice")
        await expect(mic_notice).to_contain_text(notice, timeout=WAIT_MS)
        await expect(mic_notice).to_have_class(re.compile(r"\berror\b"))
        await expect(page.get_by_test_id("mic-state")).to_have_text("mic off")
        await expect(page.get_by_test_id("mic-start")).to_have_text("start mic")
        assert await mic_stats(page) == {
            "state": "off",
            "sent_frames": 0,
            "dropped_frames": 0,
            "rate": 0,
            "mode": "",
            "tracks": 0,
        }
        # everything else works
        await page.get_by_test_id("say-text").fill("still on the air")
        await page.get_by_test_id("say-now").click()
        assert await show.wait_for("say") == ("still on the air", "now")
        await expect(page.get_by_test_id("connection")).to_have_text("live")
        assert errors == [], errors

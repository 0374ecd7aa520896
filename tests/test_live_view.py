"""The dashboard's live view over WebRTC, in Debian's Chromium, from the real `broadcaster run` process:
frames and sound arrive and play, two viewers share the one encode, a viewer that leaves is let go."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from broadcaster.stream.rtc.viewers import ViewerError, Viewers
from tests.conftest import free_port
from tests.control_helpers import console, running_server
from tests.media import write_tone_wav
from tests.rtc_rig import RtcRig
from tests.run_cli import finish

pytest.importorskip("playwright.async_api", reason="needs the playwright package (pip install playwright)")
from tests.test_console_live import TOKEN, WAIT_MS, launch_show, wait_listening
from tests.test_dashboard import CHROMIUM, browser_page, pw_api, screen_pixels


def start_show(avatar_root: Path, tmp_path: Path, port: int, wav: Path) -> subprocess.Popen[str]:
    settings = {"rtc.host_addresses": ["127.0.0.1"], "rtc.video_bitrate_kbps": 1000}
    return launch_show(avatar_root, tmp_path, port, settings, "--for", "90", "--play-wav", str(wav))


async def live_stats(page: Any) -> dict[str, Any]:
    return dict(await page.evaluate("() => window.liveStats()"))


async def stats_reaching(page: Any, video: int, audio: int, within_s: float = 30.0) -> dict[str, Any]:
    """The live view's figures once it has decoded ``video`` frames and ``audio`` samples."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        stats = await live_stats(page)
        if stats["video"] >= video and stats["audio"] >= audio:
            return stats
        assert asyncio.get_running_loop().time() < deadline, (stats, video, audio)
        await asyncio.sleep(0.2)


def metric(port: int, name: str) -> float:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(f"broadcaster_{name} "):
                return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
async def test_the_program_plays_in_the_browser_over_webrtc(avatar_root: Path, tmp_path: Path) -> None:
    wav = tmp_path / "tone.wav"
    write_tone_wav(wav, 48000, 0.5, 60.0, 0.5)
    port = free_port()
    process = start_show(avatar_root, tmp_path, port, wav)
    try:
        await wait_listening(port, process)
        async with browser_page() as page:
            await page.goto(f"http://127.0.0.1:{port}/#token={TOKEN}")
            video = page.get_by_test_id("live")
            await pw_api.expect(video).to_be_visible(timeout=WAIT_MS)
            await pw_api.expect(page.get_by_test_id("preview")).to_be_hidden()
            await pw_api.expect(page.get_by_test_id("frame-counter")).to_contain_text(
                "WebRTC", timeout=WAIT_MS
            )
            first = await stats_reaching(page, video=40, audio=48000)  # frames and sound decoded
            assert first["mode"] == "webrtc"
            await live_stats(page)  # the first call attaches the meter
            await asyncio.sleep(0.5)
            assert (await live_stats(page))["level"] > 0.1, "the tone is heard"
            before = await screen_pixels(page)
            await asyncio.sleep(1.0)
            assert await screen_pixels(page) != before, "the picture moves"
            playing = await page.evaluate(
                "() => { const v = document.querySelector('[data-testid=live]'); "
                "return [v.paused, v.currentTime, v.getVideoPlaybackQuality().totalVideoFrames]; }"
            )
            assert playing[0] is False and playing[1] > 2 and playing[2] > 40, playing

            # a second viewer: both watch the one encode
            second = await page.context.browser.new_page()
            await second.goto(f"http://127.0.0.1:{port}/#token={TOKEN}")
            await pw_api.expect(second.get_by_test_id("live")).to_be_visible(timeout=WAIT_MS)
            assert metric(port, "webrtc_watching") == 2
            await stats_reaching(second, video=25, audio=1)
            await stats_reaching(page, video=first["video"] + 60, audio=1)  # the first kept playing
            await second.close()
            deadline = asyncio.get_running_loop().time() + 20
            while metric(port, "webrtc_watching") != 1:
                assert asyncio.get_running_loop().time() < deadline, "the viewer that left is still fed"
                await asyncio.sleep(0.3)
    finally:
        process.terminate()
        done = finish(process, 60)
    assert done.code == 0, done.stderr[-3000:]
    summary = done.summary
    rtc = summary["rtc_encoder"]
    # the WebRTC encode idled until the first viewer came (seconds after the start), then made each
    # tick once for both viewers
    assert 0 < rtc["ticks"] < summary["ticks"] - 50, (rtc, summary["ticks"])


@pytest.mark.usefixtures("loopback_ice")
async def test_watch_over_the_control_api_with_an_aiortc_viewer() -> None:
    """The signalling itself, without a browser: answer, frames, the viewer limit, cleanup on leaving."""
    with RtcRig() as rig:
        viewers = Viewers(rig.runtime, rig.encoder, rig.clock, max_viewers=1)
        async with running_server(viewers=viewers) as server:
            async with console(server) as c:
                pc = RTCPeerConnection()
                frames: list[int] = []
                pc.on("track", lambda track: asyncio.ensure_future(count(track, frames)))
                pc.addTransceiver("video", direction="recvonly")
                pc.addTransceiver("audio", direction="recvonly")
                await pc.setLocalDescription(await pc.createOffer())
                reply = await c.call("watch.offer", sdp=pc.localDescription.sdp)
                assert reply["ok"], reply
                assert "H264" in reply["result"]["sdp"] and "opus" in reply["result"]["sdp"]
                await pc.setRemoteDescription(RTCSessionDescription(reply["result"]["sdp"], "answer"))
                deadline = asyncio.get_running_loop().time() + 20
                while len(frames) < 25:
                    assert asyncio.get_running_loop().time() < deadline, "no frames"
                    await asyncio.sleep(0.1)
                assert viewers.stats.watching == 1
                # one viewer at most here: a second offer is refused, clearly
                other = RTCPeerConnection()
                other.addTransceiver("video", direction="recvonly")
                other.addTransceiver("audio", direction="recvonly")
                await other.setLocalDescription(await other.createOffer())
                refused = await c.call("watch.offer", sdp=other.localDescription.sdp)
                assert refused["error"]["code"] == "refused" and "max_viewers" in refused["error"]["message"]
                await other.close()
                bad = await c.call("watch.offer", sdp="v=0 not an offer at all")
                assert not bad["ok"]
                unknown = await c.call("watch.stop", viewer="nobody")
                assert unknown["error"]["code"] == "not_found"
            # the console left: its viewer is let go
            deadline = asyncio.get_running_loop().time() + 10
            while viewers.stats.watching:
                assert asyncio.get_running_loop().time() < deadline, "the viewer outlived its console"
                await asyncio.sleep(0.1)
            await pc.close()
        async with running_server() as server, console(server) as c:
            off = await c.call("watch.offer", sdp="v=0 " + "x" * 20)
            assert off["error"]["code"] == "unavailable"


async def count(track: MediaStreamTrack, frames: list[int]) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            if track.kind == "video":
                frames.append(frame.pts)


@pytest.mark.usefixtures("loopback_ice")
async def test_concurrent_offers_never_exceed_the_viewer_limit() -> None:
    with RtcRig() as rig:
        viewers = Viewers(rig.runtime, rig.encoder, rig.clock, max_viewers=1)
        peers = [RTCPeerConnection() for _ in range(3)]
        offers = []
        for pc in peers:
            pc.addTransceiver("video", direction="recvonly")
            pc.addTransceiver("audio", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            offers.append(pc.localDescription.sdp)
        results = await asyncio.gather(*(viewers.watch(o) for o in offers), return_exceptions=True)
        assert sum(not isinstance(r, BaseException) for r in results) == 1, results
        assert viewers.stats.watching == 1 and viewers.stats.refused == 2
        video_only = RTCPeerConnection()
        video_only.addTransceiver("video", direction="recvonly")
        await video_only.setLocalDescription(await video_only.createOffer())
        await viewers.close()
        try:
            await viewers.watch(video_only.localDescription.sdp)
            raise AssertionError("a video-only offer was answered")
        except ViewerError as exc:
            assert "one video and one audio" in str(exc)
        for pc in [*peers, video_only]:
            await pc.close()

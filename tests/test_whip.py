"""The WHIP push against a real WebRTC endpoint (aiohttp + aiortc) that decodes what arrives."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from broadcaster.config import ConfigError, output_from_target
from broadcaster.stream.outputs.whip import WhipOutput
from broadcaster.stream.rtc.settings import WhipOutputConfig, redact_url
from tests.rtc_rig import RtcRig
from tests.run_cli import finish, start
from tests.whip_endpoint import WhipEndpoint, serve_whip

pytestmark = pytest.mark.usefixtures("loopback_ice")


@pytest.fixture
async def endpoint() -> AsyncIterator[WhipEndpoint]:
    async with serve_whip(WhipEndpoint()) as ep:
        yield ep


@pytest.fixture
def rig() -> Iterator[RtcRig]:
    with RtcRig() as r:
        yield r


def whip(url: str, **extra: object) -> WhipOutputConfig:
    return WhipOutputConfig.model_validate({"type": "whip", "url": url, **extra})


async def until(check, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_h264_and_opus_arrive_decoded_and_the_session_is_deleted(
    endpoint: WhipEndpoint, rig: RtcRig
) -> None:
    out = WhipOutput(whip(endpoint.url), rig.runtime, rig.encoder, rig.clock)
    out.start()
    await until(lambda: endpoint.video_frames() >= 50 and endpoint.audio_samples() >= 96000)
    session = endpoint.latest
    assert endpoint.content_types == ["application/sdp"]
    assert "H264/90000" in session.offer and "VP8" not in session.offer
    assert "profile-level-id=42e01f" in session.offer and "packetization-mode=1" in session.offer
    assert "opus/48000/2" in session.offer
    assert session.audio_peak > 4000  # the tone, not silence
    assert out.stats.state == "live" and out.stats.packets > 0
    assert await asyncio.to_thread(out.close, 10)
    assert endpoint.deletes == 1 and session.deleted
    assert out.stats.state == "closed" and out.stats.errors == 0


async def test_a_dropped_connection_is_deleted_and_published_again(
    endpoint: WhipEndpoint, rig: RtcRig
) -> None:
    out = WhipOutput(whip(endpoint.url, backoff_initial_s=0.2), rig.runtime, rig.encoder, rig.clock)
    out.start()
    try:
        await until(lambda: endpoint.video_frames() >= 10)
        await endpoint.drop()  # the server loses the session without a DELETE
        await until(lambda: endpoint.posts == 2 and endpoint.latest.video_frames >= 25, timeout=40)
        first = next(iter(endpoint.sessions.values()))
        assert first.deleted, "the old session must be deleted before publishing again"
        assert out.stats.reconnects == 1 and out.stats.state == "live"
        assert "connection" in out.stats.last_error
    finally:
        await asyncio.to_thread(out.close, 10)


async def test_a_refusal_by_closing_the_connection_is_a_clear_error_and_retried(
    endpoint: WhipEndpoint, rig: RtcRig
) -> None:
    endpoint.refuse = True
    out = WhipOutput(whip(endpoint.url, backoff_initial_s=0.2), rig.runtime, rig.encoder, rig.clock)
    out.start()
    try:
        await until(lambda: endpoint.posts >= 2)
        assert "closed the connection without answering" in out.stats.last_error
        assert "publisher" in out.stats.last_error
        assert out.stats.state != "live"
        endpoint.refuse = False
        await until(lambda: endpoint.video_frames() >= 10, timeout=30)
        assert out.stats.state == "live"
    finally:
        await asyncio.to_thread(out.close, 10)


async def test_the_bearer_token_is_sent_and_a_wrong_one_is_named(rig: RtcRig, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("WHIP_TEST_TOKEN", "s3cret-token")
    async with serve_whip(WhipEndpoint(token="s3cret-token")) as ep:
        bad = WhipOutput(
            whip(ep.url, token="wrong", backoff_initial_s=5), rig.runtime, rig.encoder, rig.clock
        )
        bad.start()
        await until(lambda: bad.stats.errors >= 1)
        assert "HTTP 401" in bad.stats.last_error and "check the token" in bad.stats.last_error
        assert "wrong" not in bad.stats.last_error
        await asyncio.to_thread(bad.close, 5)
        good = WhipOutput(whip(ep.url, token_env="WHIP_TEST_TOKEN"), rig.runtime, rig.encoder, rig.clock)
        good.start()
        await until(lambda: ep.video_frames() >= 10)
        await asyncio.to_thread(good.close, 5)
        assert ep.deletes == 1


async def test_an_unreachable_endpoint_is_named_and_does_not_disturb_the_program(rig: RtcRig) -> None:
    out = WhipOutput(
        whip("http://127.0.0.1:9/whip", backoff_initial_s=0.2), rig.runtime, rig.encoder, rig.clock
    )
    before = rig.program.stats.ticks
    out.start()
    await until(lambda: out.stats.errors >= 2)
    assert "cannot connect to http://127.0.0.1:9/whip" in out.stats.last_error
    await asyncio.sleep(0.5)
    assert rig.program.stats.ticks > before + 10
    assert await asyncio.to_thread(out.close, 5)


def test_extra_query_parameters_and_secrets_kept_out_of_logs() -> None:
    cfg = whip("http://srs:1985/rtc/v1/whip/?app=live&stream=room1&secret=abc", query={"eip": "10.0.0.5"})
    assert cfg.endpoint() == "http://srs:1985/rtc/v1/whip/?app=live&stream=room1&secret=abc&eip=10.0.0.5"
    assert (
        redact_url(cfg.endpoint())
        == "http://srs:1985/rtc/v1/whip/?app=live&stream=room1&secret=***&eip=10.0.0.5"
    )
    assert redact_url("https://u:pw@host/whip?token=t") == "https://host/whip?token=***"
    out = output_from_target("whip+https://example.org/whip/endpoint")
    assert isinstance(out, WhipOutputConfig) and out.url == "https://example.org/whip/endpoint"
    with pytest.raises(ConfigError, match="URL of the WHIP endpoint"):
        output_from_target("whip+http://")


def test_run_with_a_whip_output_from_the_command_line(avatar_root: Path, tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int, int, dict[str, object]]:
        async with serve_whip(WhipEndpoint()) as ep:
            process = start(
                avatar_root,
                "--for",
                "6",
                "--output",
                f"whip+{ep.url}",
                "--set",
                'rtc.host_addresses=["127.0.0.1"]',
                "--set",
                "rtc.video_bitrate_kbps=800",
            )
            done = await asyncio.to_thread(finish, process)
            assert done.code == 0, done.stderr[-3000:]
            return ep.video_frames(), ep.audio_samples(), ep.deletes, done.summary

    frames, samples, deletes, summary = asyncio.run(scenario())
    whip_out = next(o for o in summary["outputs"] if o["kind"] == "whip")  # type: ignore[attr-defined]
    assert whip_out["errors"] == 0 and whip_out["packets"] > 100
    assert frames >= 50 and samples >= 48000 * 2
    assert deletes == 1


async def test_an_answer_arriving_in_pieces_is_read_whole(endpoint: WhipEndpoint, rig: RtcRig) -> None:
    endpoint.chunked = True
    out = WhipOutput(whip(endpoint.url), rig.runtime, rig.encoder, rig.clock)
    out.start()
    try:
        await until(lambda: endpoint.video_frames() >= 10)
        assert out.stats.errors == 0
    finally:
        await asyncio.to_thread(out.close, 10)


async def test_timestamps_step_by_ticks(endpoint: WhipEndpoint, rig: RtcRig) -> None:
    out = WhipOutput(whip(endpoint.url), rig.runtime, rig.encoder, rig.clock)
    out.start()
    try:
        await until(lambda: endpoint.video_frames() >= 50)
    finally:
        await asyncio.to_thread(out.close, 10)
    pts = endpoint.latest.video_pts
    steps = {b - a for a, b in itertools.pairwise(pts)}
    assert steps and all(step > 0 and step % 3600 == 0 for step in steps), steps  # 90 kHz / 25 fps


async def test_the_end_of_the_program_ends_the_push_without_publishing_again(
    endpoint: WhipEndpoint, rig: RtcRig
) -> None:
    out = WhipOutput(whip(endpoint.url, backoff_initial_s=0.2), rig.runtime, rig.encoder, rig.clock)
    out.start()
    await until(lambda: endpoint.video_frames() >= 10)
    rig.program.stop()
    rig.program.join(5)
    await asyncio.to_thread(rig.encoder.close, 5)  # the stream ends, as at shutdown
    await asyncio.sleep(2.0)  # more than the backoff: a new session would have been published by now
    assert endpoint.posts == 1 and out.stats.reconnects == 0
    assert await asyncio.to_thread(out.close, 10)
    assert endpoint.deletes == 1 and out.stats.state == "closed"

"""The WHIP push: the program sent over WebRTC to SRS or any WHIP server (RFC 9725).

Each session: an offer with send-only H.264 (constrained baseline) and Opus, POSTed to the endpoint;
the answer applied; packets of the shared WebRTC encode flow once ICE and DTLS connect. When the
connection fails, drops or never comes up, the session's resource is DELETEd (SRS refuses a second
publisher of a stream until the old one expires), and after a capped exponential backoff it starts
over. Everything runs on the RTC loop; the program and the other outputs never wait on it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time

from aiortc import RTCPeerConnection, RTCSessionDescription

from broadcaster.stream.clock import ProgramClock
from broadcaster.stream.outputs.base import Backoff, OutputStats, output_status
from broadcaster.stream.rtc.encoder import RtcEncoder
from broadcaster.stream.rtc.feed import PeerFeed, on_keyframe_request
from broadcaster.stream.rtc.peer import configuration, sending_offer
from broadcaster.stream.rtc.runtime import RtcRuntime
from broadcaster.stream.rtc.settings import WhipOutputConfig, redact_text, redact_url
from broadcaster.stream.rtc.whip_http import WhipClient, WhipError

log = logging.getLogger(__name__)

ENDED_STATES = ("failed", "closed")


class WhipOutput:
    """One WHIP destination."""

    kind = "whip"

    def __init__(
        self, cfg: WhipOutputConfig, runtime: RtcRuntime, encoder: RtcEncoder, clock: ProgramClock
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name or redact_url(cfg.url)
        self.stats = OutputStats()
        self._runtime = runtime
        self._encoder = encoder
        self._clock = clock
        self._job: concurrent.futures.Future[None] | None = None
        self._closing = asyncio.Event()  # bound to the RTC loop at its first wait

    def start(self) -> None:
        """Start publishing (on the RTC loop)."""
        self._job = self._runtime.submit(self._run())

    def close(self, timeout: float = 10.0) -> bool:
        """End the session (DELETE on the server) within ``timeout``; True when it has ended."""
        if self._job is None:
            return True
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self._runtime.loop.call_soon_threadsafe(self._closing.set)
        with contextlib.suppress(concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            self._job.result(timeout)
        if not self._job.done():
            self._job.cancel()
            with contextlib.suppress(concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
                self._job.result(2.0)
        return self._job.done()

    def status(self) -> str:
        """One short line for the status log."""
        return output_status(self.kind, self.name, self.stats)

    def fail(self, message: str) -> None:
        """Count and log an error of this output (URLs and credentials in it redacted)."""
        message = redact_text(message)
        self.stats.errors += 1
        self.stats.last_error = message
        log.warning("whip %s: %s", self.name, message)

    async def _run(self) -> None:
        try:
            await self._publish()
        except Exception:  # a bug: logged and shown, never a broken shutdown
            log.exception("whip %s crashed", self.name)
            self.stats.state = "crashed"

    async def _publish(self) -> None:
        backoff = Backoff(self.cfg.backoff_initial_s, self.cfg.backoff_max_s)
        async with WhipClient(self.cfg.endpoint(), self.cfg.bearer(), self.cfg.request_timeout_s) as client:
            # until closed, or the program has ended (the encoder has then nothing more to publish)
            while not self._closing.is_set() and not self._encoder.ended:
                self.stats.state = "connecting"
                wait = backoff.after(await self._session(client))
                if self._closing.is_set() or self._encoder.ended:
                    break
                self.stats.reconnects += 1
                self.stats.state = f"retrying in {wait:.0f}s"
                log.info("whip %s: publishing again in %.1f s", self.name, wait)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), wait)
        self.stats.state = "closed"

    async def _session(self, client: WhipClient) -> float:
        """Publish until the connection ends or the output closes; the seconds it was live."""
        loop = asyncio.get_running_loop()
        feed = PeerFeed(loop, self._clock, self._encoder.request_keyframe, self.cfg.queue_seconds)
        pc = RTCPeerConnection(configuration(self._runtime.cfg))
        changed = asyncio.Event()
        pc.on("connectionstatechange", changed.set)
        resource = None
        live_since: float | None = None
        base = (self.stats.packets, self.stats.bytes, self.stats.dropped)
        try:
            offer = await sending_offer(pc, feed.video, feed.audio)
            for transceiver in pc.getTransceivers():
                if transceiver.kind == "video":
                    on_keyframe_request(transceiver.sender, self._encoder.request_keyframe)
            if self._closing.is_set():
                return 0.0
            resource = await client.publish(offer)
            await pc.setRemoteDescription(RTCSessionDescription(resource.answer, "answer"))
            deadline = loop.time() + self._runtime.cfg.connect_timeout_s
            while not self._closing.is_set() and not feed.ended:
                state = pc.connectionState
                if state in ENDED_STATES:
                    raise WhipError(
                        f"the connection {state} (ICE/DTLS)"
                        if live_since
                        else f"ICE/DTLS {state} before the media flowed; is the server's candidate "
                        "address reachable from here (SRS: candidate / eip)?"
                    )
                if state == "connected" and live_since is None:
                    # packets flow from here (aiortc reads the tracks once DTLS is up): anything
                    # queued before would only arrive late, in a burst
                    live_since = time.monotonic()
                    self._encoder.add_sink(feed)
                    self._encoder.request_keyframe()
                    self.stats.state = "live"
                    log.info("whip %s: live", self.name)
                if live_since is None and loop.time() > deadline:
                    raise WhipError(
                        f"ICE/DTLS did not connect in {self._runtime.cfg.connect_timeout_s:.0f} s; is the "
                        "server's candidate address reachable from here (SRS: candidate / eip)?"
                    )
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wait_any(changed), 0.5)
                self._count(feed, base)
            if feed.ended:  # the program has ended: send what is queued, then stop for good
                await self._drain(feed)
        except WhipError as exc:
            self.fail(str(exc))
        except Exception as exc:  # aiortc or SDP trouble: a failed session, never a dead output
            log.exception("whip %s: the session failed", self.name)
            self.fail(f"session failed: {exc}")
        finally:
            self._encoder.remove_sink(feed)
            self._count(feed, base)
            try:
                if resource is not None:
                    await client.delete(resource)
            finally:  # cancelled mid-DELETE (a close that timed out): the peer still closes
                await asyncio.shield(pc.close())
        return 0.0 if live_since is None else time.monotonic() - live_since

    async def _drain(self, feed: PeerFeed, limit_s: float = 3.0) -> None:
        """Wait (at most ``limit_s``) until the feed's last packets have gone out."""
        for _ in range(round(limit_s / 0.05)):
            if feed.drained:
                return
            await asyncio.sleep(0.05)

    async def _wait_any(self, changed: asyncio.Event) -> None:
        waits = [asyncio.ensure_future(changed.wait()), asyncio.ensure_future(self._closing.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    def _count(self, feed: PeerFeed, base: tuple[int, int, int]) -> None:
        self.stats.packets = base[0] + feed.stats.packets
        self.stats.bytes = base[1] + feed.stats.bytes
        self.stats.dropped = base[2] + feed.stats.dropped

"""Browser previews over WebRTC: each viewer a send-only peer fed by the one WebRTC encode.

The dashboard sends its SDP offer over the (authenticated) control socket and gets the answer back;
from then on the program reaches it with the latency of a WebRTC call, with sound. However many watch,
the program is encoded once: viewers differ only in their packet queues and encryption.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from broadcaster.stream.clock import ProgramClock
from broadcaster.stream.rtc.encoder import RtcEncoder
from broadcaster.stream.rtc.feed import PeerFeed, on_keyframe_request
from broadcaster.stream.rtc.peer import add_sending, configuration
from broadcaster.stream.rtc.runtime import RtcRuntime

log = logging.getLogger(__name__)

QUEUE_SECONDS = 1.0


class ViewerError(Exception):
    """A watch request that cannot be served; the message is for the console."""


@dataclass
class ViewerStats:
    """Counters of the previews (read by /metrics)."""

    watching: int = 0
    viewers: int = 0
    refused: int = 0
    failed: int = 0
    packets: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, Any]:
        """A plain dict."""
        return vars(self).copy()


@dataclass
class _Viewer:
    pc: RTCPeerConnection
    feed: PeerFeed
    watchdog: asyncio.Task[None] | None = None
    fed: bool = False
    counted: list[int] = field(default_factory=lambda: [0, 0])


class Viewers:
    """The WebRTC previews; ``watch`` and ``stop`` may be awaited from any event loop."""

    def __init__(
        self, runtime: RtcRuntime, encoder: RtcEncoder, clock: ProgramClock, max_viewers: int
    ) -> None:
        self.runtime = runtime
        self.encoder = encoder
        self.clock = clock
        self.max_viewers = max_viewers
        self.stats = ViewerStats()
        self._peers: dict[str, _Viewer] = {}  # touched on the RTC loop only
        self._answering = 0  # offers being answered (they hold a place)
        self._ids = itertools.count(1)

    async def watch(self, offer: str) -> tuple[str, str]:
        """Answer a viewer's SDP offer: its id and the SDP answer."""
        return await self.runtime.call(self._watch(offer))

    async def stop(self, viewer: str) -> bool:
        """Stop sending to ``viewer``; False when there is no such viewer."""
        return await self.runtime.call(self._drop(viewer))

    async def close(self) -> None:
        """End every preview."""
        await self.runtime.call(self._close_all())

    async def _watch(self, offer: str) -> tuple[str, str]:
        if len(self._peers) + self._answering >= self.max_viewers:
            self.stats.refused += 1
            raise ViewerError(f"{self.max_viewers} viewers already watch (rtc.max_viewers)")
        kinds = sorted(line.split()[0][2:] for line in offer.splitlines() if line.startswith("m="))
        if kinds != ["audio", "video"]:
            self.stats.refused += 1
            raise ViewerError(f"the offer must receive one video and one audio track, not {kinds}")
        loop = asyncio.get_running_loop()
        feed = PeerFeed(loop, self.clock, self.encoder.request_keyframe, QUEUE_SECONDS)
        pc = RTCPeerConnection(configuration(self.runtime.cfg))
        self._answering += 1  # the slot is held from here: concurrent offers cannot overfill
        try:
            # the sending transceivers, with their codecs, exist before the offer is read: it is matched
            # to them, so the answer keeps H.264 + Opus whatever order the browser listed codecs in
            add_sending(pc, feed.video, feed.audio)
            await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            for transceiver in pc.getTransceivers():
                if transceiver.kind == "video":
                    on_keyframe_request(transceiver.sender, self.encoder.request_keyframe)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # a malformed or incompatible offer
            await pc.close()
            self.stats.refused += 1
            raise ViewerError(f"cannot answer this offer: {exc}") from exc
        except BaseException:  # cancelled: nothing is left behind
            await asyncio.shield(pc.close())
            raise
        finally:
            self._answering -= 1
        vid = str(next(self._ids))
        viewer = _Viewer(pc, feed)
        self._peers[vid] = viewer
        self.stats.viewers += 1
        self.stats.watching = len(self._peers)

        @pc.on("connectionstatechange")
        async def changed() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._drop(vid)
            elif pc.connectionState == "connected" and vid in self._peers and not viewer.fed:
                # packets flow from here: queued before, they would only arrive late, in a burst
                viewer.fed = True
                self.encoder.add_sink(feed)
                self.encoder.request_keyframe()

        viewer.watchdog = asyncio.create_task(self._watchdog(vid, viewer))
        log.info("preview: viewer %s watching (%d now)", vid, len(self._peers))
        return vid, pc.localDescription.sdp

    async def _watchdog(self, vid: str, viewer: _Viewer) -> None:
        """Give up on a viewer that does not connect in time; keep the counters current."""
        timeout = self.runtime.cfg.connect_timeout_s
        waited = 0.0
        while vid in self._peers:
            await asyncio.sleep(1.0)
            waited += 1.0
            self._count(viewer)
            if waited >= timeout and viewer.pc.connectionState in ("new", "connecting"):
                self.stats.failed += 1
                log.warning("preview: viewer %s did not connect in %.0f s", vid, timeout)
                await self._drop(vid)

    def _count(self, viewer: _Viewer) -> None:
        s = viewer.feed.stats
        self.stats.packets += s.packets - viewer.counted[0]
        self.stats.dropped += s.dropped - viewer.counted[1]
        viewer.counted[:] = [s.packets, s.dropped]

    async def _drop(self, vid: str) -> bool:
        viewer = self._peers.pop(vid, None)
        if viewer is None:
            return False
        self.encoder.remove_sink(viewer.feed)
        self._count(viewer)
        self.stats.watching = len(self._peers)
        if viewer.watchdog is not None and viewer.watchdog is not asyncio.current_task():
            viewer.watchdog.cancel()
        with contextlib.suppress(Exception):
            await viewer.pc.close()
        log.info("preview: viewer %s left (%d now)", vid, len(self._peers))
        return True

    async def _close_all(self) -> None:
        for vid in list(self._peers):
            await self._drop(vid)

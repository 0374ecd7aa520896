"""One WebRTC peer's share of the encode: a packet sink on the encoder's thread, two tracks on the loop.

The tracks hand aiortc pre-encoded packets (it packetises them without re-encoding) at the moment each
tick is due on the program clock, so every peer's RTP timestamps come from the tick number and its
sender reports map them to the wall clock the program keeps (invariant 1). A peer that cannot keep up
loses packets at its own bounded queue, up to the next keyframe (invariant 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import av
from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from broadcaster.stream.clock import ProgramClock
from broadcaster.stream.encoder import EncodedPacket
from broadcaster.stream.rtc.encoder import OPUS_FRAME

Kind = Literal["video", "audio"]


@dataclass
class FeedStats:
    """What one peer was sent and lost."""

    packets: int = 0
    bytes: int = 0
    dropped: int = 0


class PacedTrack(MediaStreamTrack):
    """A track of encoded packets, each released when its tick is due."""

    def __init__(self, feed: PeerFeed, kind: Kind, capacity: int) -> None:
        super().__init__()
        self.kind = kind
        self._feed = feed
        self._queue: queue.Queue[EncodedPacket | None] = queue.Queue(capacity)
        self._ready = asyncio.Event()
        timing = feed.clock.timing
        self._time_base = timing.video_time_base if kind == "video" else timing.audio_time_base
        # seconds of program time per pts unit: a frame, or a sample
        self._unit_s = 1 / timing.fps if kind == "video" else 1 / timing.sample_rate

    def put(self, packet: EncodedPacket | None) -> bool:
        """Queue a packet (any thread); False when the queue is full."""
        try:
            self._queue.put_nowait(packet)
        except queue.Full:
            return False
        self._feed.wake(self._ready)
        return True

    def finish(self) -> None:
        """End the track after what is queued (any thread)."""
        while not self.put(None):
            with contextlib.suppress(queue.Empty):
                self._queue.get_nowait()

    async def _next(self) -> EncodedPacket:
        while True:
            try:
                packet = self._queue.get_nowait()
            except queue.Empty:
                self._ready.clear()
                if self._queue.empty():
                    await self._ready.wait()
                continue
            if packet is None:
                self.stop()
                raise MediaStreamError
            return packet

    async def recv(self) -> av.Packet:
        """The next packet, at its due time."""
        if self.readyState != "live":
            raise MediaStreamError
        packet = await self._next()
        clock = self._feed.clock
        # due at its exact media time (an Opus packet starts mid-tick), on the program's clock
        wait = clock.due(0) + packet.pts * self._unit_s - clock.wall.now()
        if wait > 0:
            await asyncio.sleep(wait)
        out = av.Packet(packet.data)
        out.pts = out.dts = packet.pts
        out.time_base = self._time_base
        out.is_keyframe = packet.keyframe
        stats = self._feed.stats
        stats.packets += 1
        stats.bytes += len(packet.data)
        return out


class PeerFeed:
    """The packet sink of one peer: keyframe-gated, bounded, never blocking the encoder."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        clock: ProgramClock,
        request_keyframe: Callable[[], None],
        queue_seconds: float = 2.0,
    ) -> None:
        self.loop = loop
        self.clock = clock
        self.stats = FeedStats()
        self._request_keyframe = request_keyframe
        fps = clock.timing.fps
        self.video = PacedTrack(self, "video", max(2, round(queue_seconds * fps)))
        opus_per_s = clock.timing.sample_rate / OPUS_FRAME
        self.audio = PacedTrack(self, "audio", max(2, round(queue_seconds * opus_per_s)))
        self._skipping = True  # every peer starts at a keyframe
        self._audio_from: int | None = None  # the first keyframe's first sample: audio starts there
        self._ended = False

    def wake(self, event: asyncio.Event) -> None:
        """Wake a track waiting on the loop (from any thread)."""
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            self.loop.call_soon_threadsafe(event.set)

    def offer_packet(self, packet: EncodedPacket) -> bool:
        """Take a packet or drop it; after a video drop, skip to the next keyframe and ask for one."""
        if self._ended:
            return False
        if packet.kind == "audio":
            if self._audio_from is None or packet.pts < self._audio_from:
                return False  # before the picture starts (or the encoder's leftover from a gap)
            taken = self.audio.put(packet)
            self.stats.dropped += not taken
            return taken
        if self._skipping and not packet.keyframe:
            self.stats.dropped += 1
            return False
        if not self.video.put(packet):
            self.stats.dropped += 1
            if not self._skipping:
                self._skipping = True
                self._request_keyframe()
            return False
        if self._audio_from is None:
            self._audio_from = packet.pts * self.clock.timing.samples_per_tick
        self._skipping = False
        return True

    def end_of_stream(self) -> None:
        """The encoder has ended: the tracks end after what is queued."""
        self._ended = True
        self.video.finish()
        self.audio.finish()

    @property
    def ended(self) -> bool:
        """Whether the stream has ended."""
        return self._ended

    @property
    def drained(self) -> bool:
        """Whether both tracks have sent everything and ended."""
        return self.video.readyState == "ended" and self.audio.readyState == "ended"


def on_keyframe_request(sender: RTCRtpSender, request: Callable[[], None]) -> None:
    """Pass the receiver's keyframe requests (PLI/FIR) on to the encoder.

    aiortc only acts on them when it encodes itself; with pre-encoded packets the encoder must hear of
    them, so the sender's hook is wrapped.
    """
    hook = sender._send_keyframe

    def send_keyframe() -> None:
        hook()
        request()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]

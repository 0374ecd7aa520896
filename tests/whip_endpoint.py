"""A WHIP server for tests and benchmarks: aiohttp answers WHIP, aiortc receives and decodes the media.

It counts decoded video frames and audio samples per session, honours DELETE, can drop a session
without one (a lost connection), refuse publishes the way SRS does (closing the connection without an
HTTP answer) and require a bearer token. Host candidates are pinned to loopback by the caller
(``use_host_addresses(["127.0.0.1"])``): aioice never offers 127.0.0.1 by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import av
import numpy as np
from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from tests.http_servers import serve


@dataclass
class Session:
    """One publish: its peer and what was decoded."""

    pc: RTCPeerConnection
    offer: str
    video_frames: int = 0
    audio_samples: int = 0
    audio_peak: int = 0
    deleted: bool = False
    first_video_at: float | None = None
    video_pts: list[int] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class WhipEndpoint:
    """The server's state; ``serve_whip`` runs it."""

    def __init__(
        self, token: str = "", on_video: Callable[[av.VideoFrame, float], None] | None = None
    ) -> None:
        self.token = token
        self.on_video = on_video
        self.refuse = False
        self.chunked = False  # send the answer in two TCP writes, as a real network may deliver it
        self.sessions: dict[str, Session] = {}
        self.posts = 0
        self.options = 0
        self.authorizations: list[str] = []
        self.deletes = 0
        self.content_types: list[str] = []
        self._ids = itertools.count(1)
        self.url = ""

    @property
    def latest(self) -> Session:
        """The last session published."""
        return list(self.sessions.values())[-1]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Route one request."""
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=401, text="bad token")
        if request.method == "POST" and request.path == "/whip":
            return await self._publish(request)
        if request.method == "DELETE" and request.path.startswith("/whip/session/"):
            session = self.sessions.get(request.path.rsplit("/", 1)[-1])
            if session is None:
                return web.Response(status=404)
            self.deletes += 1
            session.deleted = True
            await self._end(session)
            return web.Response(status=200)
        if request.method == "OPTIONS":
            self.options += 1
            return web.Response(status=204, headers={"Accept-Post": "application/sdp"})
        return web.Response(status=405)

    async def _publish(self, request: web.Request) -> web.StreamResponse:
        self.posts += 1
        self.authorizations.append(request.headers.get("Authorization", ""))
        self.content_types.append(request.headers.get("Content-Type", ""))
        offer = await request.text()
        if self.refuse:  # what SRS does: no HTTP answer at all
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError
        pc = RTCPeerConnection()
        session = Session(pc, offer)
        sid = str(next(self._ids))
        self.sessions[sid] = session

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            session.tasks.append(asyncio.create_task(self._consume(session, track)))

        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        if self.chunked:
            answer = pc.localDescription.sdp.encode()
            reply = web.StreamResponse(
                status=201, headers={"Location": f"whip/session/{sid}", "Content-Type": "application/sdp"}
            )
            await reply.prepare(request)
            await reply.write(answer[:300])
            await asyncio.sleep(0.1)
            await reply.write(answer[300:])
            await reply.write_eof()
            return reply
        return web.Response(
            status=201,
            text=pc.localDescription.sdp,
            content_type="application/sdp",
            headers={"Location": f"whip/session/{sid}"},  # relative to the POST URL
        )

    async def _consume(self, session: Session, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if isinstance(frame, av.VideoFrame):
                    session.video_frames += 1
                    if frame.pts is not None:
                        session.video_pts.append(frame.pts)
                    if session.first_video_at is None:
                        session.first_video_at = time.monotonic()
                    if self.on_video is not None:
                        self.on_video(frame, time.monotonic())
                elif isinstance(frame, av.AudioFrame):
                    samples = frame.to_ndarray()
                    session.audio_samples += frame.samples
                    session.audio_peak = max(session.audio_peak, int(np.abs(samples).max(initial=0)))

    async def _end(self, session: Session) -> None:
        await session.pc.close()
        for task in session.tasks:
            task.cancel()
        await asyncio.gather(*session.tasks, return_exceptions=True)

    async def drop(self) -> None:
        """Close every session's connection without a DELETE (the network or the server lost it)."""
        for session in self.sessions.values():
            await self._end(session)

    async def close(self) -> None:
        """End every session."""
        await self.drop()

    def video_frames(self) -> int:
        """Decoded video frames over all sessions."""
        return sum(s.video_frames for s in self.sessions.values())

    def audio_samples(self) -> int:
        """Decoded audio samples (per channel) over all sessions."""
        return sum(s.audio_samples for s in self.sessions.values())


@asynccontextmanager
async def serve_whip(endpoint: WhipEndpoint) -> AsyncIterator[WhipEndpoint]:
    """Serve ``endpoint`` on loopback; its ``url`` is the WHIP endpoint."""
    async with serve(endpoint.handle) as base:
        endpoint.url = f"{base}/whip"
        try:
            yield endpoint
        finally:
            await endpoint.close()

"""The RTMP push: the shared encode, muxed to FLV and published through a relay child process.

The output thread paces packets to the wall clock (each is sent when its tick is due), feeds the relay
over a pipe, and treats a pipe that stops draining for ``stall_timeout_s`` as a stalled server. On any
failure it kills the relay, waits (capped exponential backoff), asks the encoder for a keyframe and
starts over on it. The program and the other outputs never notice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import av

from broadcaster.config import RtmpOutputConfig
from broadcaster.stream.clock import ProgramClock
from broadcaster.stream.encoder import EncodedPacket, StreamTemplates
from broadcaster.stream.mux import PacketMuxer
from broadcaster.stream.outputs.base import Backoff, EndOfStream, PacketOutput, pace
from broadcaster.stream.outputs.rtmp_relay import URL_ENV
from broadcaster.stream.rtc.settings import redact_text, redact_url

log = logging.getLogger(__name__)

STALE_S = 0.5


class StalledError(OSError):
    """The relay stopped taking data: the server or the network stalled."""


def redact(url: str) -> str:
    """The URL without its stream key (what follows the application), for logs."""
    return redact_url(url)


class PipeWriter:
    """A file-like sink onto the relay's stdin that refuses to block longer than ``timeout``.

    Once ``abandon``-ed it never touches the descriptor again: the relay's pipe may be closed and its
    number reused by then, and a muxer closed late (or collected) must not write its trailer there.
    """

    def __init__(self, process: subprocess.Popen[bytes], timeout: float, closing: threading.Event) -> None:
        assert process.stdin is not None
        self._fd = process.stdin.fileno()
        os.set_blocking(self._fd, False)
        self._timeout = timeout
        self._closing = closing
        self._abandoned = False

    def abandon(self) -> None:
        """Refuse every later write (the relay is being killed)."""
        self._abandoned = True

    def write(self, data: bytes) -> int:
        """Write all of ``data`` or raise StalledError (BrokenPipeError once abandoned)."""
        if self._abandoned:
            raise BrokenPipeError("the relay was abandoned")
        view = memoryview(data)
        deadline = time.monotonic() + self._timeout
        while view:
            try:
                view = view[os.write(self._fd, view) :]
                continue
            except BlockingIOError:
                pass
            left = deadline - time.monotonic()
            if left <= 0 or self._closing.is_set():
                raise StalledError(f"the server took no data for {self._timeout:.0f} s")
            select.select([], [self._fd], [], min(left, 0.25))
        return len(data)


class Relay:
    """Owns one relay child process, its pipes and the thread that reads what it says."""

    def __init__(self, url: str) -> None:
        self.live = threading.Event()
        self.last_error = ""
        # the URL holds the stream key: in the child's environment (private to this user), never on its
        # command line (which every user of the machine can read)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "broadcaster.stream.outputs.rtmp_relay"],
            env={**os.environ, URL_ENV: url},
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name="rtmp-relay-log", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode(errors="replace").strip()
            if line == "live":
                self.live.set()
            elif line:
                self.last_error = redact_text(line)
                log.debug("relay: %s", self.last_error)

    def finish(self, timeout: float) -> None:
        """Close stdin (end of stream) and reap the child, killed when it does not exit in time.

        Its stderr pipe is closed once the reader has seen the end of it, so no descriptor outlives
        the session.
        """
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(2.0)
        if self.process.stderr is not None and not self._reader.is_alive():
            self.process.stderr.close()

    def kill(self) -> None:
        """End the child now."""
        if self.process.poll() is None:
            self.process.kill()
        self.finish(2.0)


def _close_abandoned(muxer: PacketMuxer) -> None:
    """Close the container of a failed session; its trailer has nowhere to go, and is dropped."""
    with contextlib.suppress(OSError, av.FFmpegError):
        muxer.close()


class RtmpOutput(PacketOutput):
    """One RTMP(S) destination."""

    kind = "rtmp"

    def __init__(
        self,
        cfg: RtmpOutputConfig,
        templates: StreamTemplates,
        clock: ProgramClock,
        request_keyframe: Callable[[], None],
        capacity: int,
    ) -> None:
        super().__init__(cfg.name or redact(cfg.url), capacity)
        self.cfg = cfg
        self._templates = templates
        self._clock = clock
        self._request_keyframe = request_keyframe

    def _due(self, packet: EncodedPacket) -> float:
        k = packet.pts if packet.kind == "video" else packet.pts // self._clock.timing.samples_per_tick
        return self._clock.due(k)

    def _session(self, first: EncodedPacket) -> float:
        """Publish from ``first`` until the stream ends or fails; returns the seconds it was live."""
        relay = Relay(self.cfg.url)
        live_since: float | None = None
        clean = False
        writer: PipeWriter | None = None
        muxer: PacketMuxer | None = None
        try:
            writer = PipeWriter(relay.process, self.cfg.stall_timeout_s, self._closing)
            muxer = PacketMuxer(writer, "flv", self._templates, self._clock.timing)  # type: ignore[arg-type]
            packet = first
            while True:
                if pace(self._due(packet), self):
                    return 0.0
                if relay.process.poll() is not None:
                    raise ConnectionError(relay.last_error or f"relay exited with {relay.process.returncode}")
                muxer.write(packet)
                self.stats.packets += 1
                self.stats.bytes += len(packet.data)
                if live_since is None and relay.live.is_set():
                    live_since = time.monotonic()
                    self.stats.state = "live"
                    log.info("rtmp %s: live", self.name)
                try:
                    packet = self.next_packet()
                except EndOfStream:
                    muxer.close()
                    relay.finish(5.0)
                    clean = True
                    raise
        except (OSError, ConnectionError, av.FFmpegError) as exc:
            reason = relay.last_error if relay.process.poll() is not None and relay.last_error else str(exc)
            self.fail(f"connection lost: {redact_text(reason)}")
        finally:
            if not clean:
                if writer is not None:
                    writer.abandon()
                if muxer is not None:
                    _close_abandoned(muxer)
                relay.kill()
        return 0.0 if live_since is None else time.monotonic() - live_since

    def _run(self) -> None:
        backoff = Backoff(self.cfg.backoff_initial_s, self.cfg.backoff_max_s)
        while True:
            self._request_keyframe()
            self.stats.state = "connecting"
            first = self.next_keyframe()
            if self._due(first) < time.monotonic() - STALE_S:
                self.stats.dropped += 1
                continue
            wait = backoff.after(self._session(first))
            self.stats.reconnects += 1
            self.stats.state = f"retrying in {wait:.0f}s"
            log.info("rtmp %s: reconnecting in %.1f s", self.name, wait)
            if self.wait(wait):
                return

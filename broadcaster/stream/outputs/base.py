"""The base of every encoded output: a bounded packet queue, a thread, drop counting and a state.

Dropping is done where it is cheapest to keep the stream decodable: once a packet is dropped, the
queue refuses everything until the next video keyframe, so the consumer never sees a broken GOP.
"""

from __future__ import annotations

import abc
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from broadcaster.stream.encoder import EncodedPacket
from broadcaster.stream.rtc.settings import redact_text

log = logging.getLogger(__name__)


@dataclass
class OutputStats:
    """What the status line shows of an output."""

    state: str = "starting"
    packets: int = 0
    bytes: int = 0
    dropped: int = 0
    reconnects: int = 0
    errors: int = 0
    last_error: str = ""


class EndOfStream(Exception):
    """The encoder has ended and the queue is empty."""


class PacketOutput(abc.ABC):
    """An output fed by the encoder; subclasses implement ``_run`` in the output's own thread."""

    kind = "output"

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.stats = OutputStats()
        self._queue: queue.Queue[EncodedPacket] = queue.Queue(maxsize=capacity)
        self._skipping = False
        self._ended = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._guarded_run, name=f"{self.kind}:{name}", daemon=True)

    def offer_packet(self, packet: EncodedPacket) -> bool:
        """Queue a packet without blocking; after a drop, skip up to the next keyframe."""
        if self._skipping and not (packet.kind == "video" and packet.keyframe):
            self.stats.dropped += 1
            return False
        try:
            self._queue.put_nowait(packet)
        except queue.Full:
            self._skipping = True
            self.stats.dropped += 1
            return False
        self._skipping = False
        return True

    def end_of_stream(self) -> None:
        """The encoder has flushed: drain what is queued, then finish."""
        self._ended.set()

    def start(self) -> None:
        """Start the output's thread."""
        self._thread.start()

    def close(self, timeout: float = 10.0) -> bool:
        """Finish within ``timeout`` (draining if the stream ended); True when the thread has ended."""
        self._ended.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._closing.set()
            self._thread.join(2.0)
        return not self._thread.is_alive()

    def next_packet(self, timeout: float = 0.2) -> EncodedPacket:
        """The next queued packet; raises EndOfStream once the stream ended and the queue is empty."""
        while True:
            if self._closing.is_set():
                raise EndOfStream
            try:
                return self._queue.get(timeout=timeout)
            except queue.Empty:
                if self._ended.is_set():
                    raise EndOfStream from None

    def next_keyframe(self) -> EncodedPacket:
        """Discard packets up to the next video keyframe and return it."""
        while True:
            packet = self.next_packet()
            if packet.kind == "video" and packet.keyframe:
                return packet
            self.stats.dropped += 1

    def wait(self, seconds: float) -> bool:
        """Sleep, interruptibly; True when the output is closing."""
        return self._closing.wait(seconds)

    def fail(self, message: str) -> None:
        """Count and log an error of this output (URLs and credentials in it redacted)."""
        message = redact_text(message)
        self.stats.errors += 1
        self.stats.last_error = message
        log.warning("%s %s: %s", self.kind, self.name, message)

    def _guarded_run(self) -> None:
        try:
            self._run()
        except EndOfStream:
            pass
        except Exception:
            log.exception("%s %s crashed", self.kind, self.name)
            self.stats.state = "crashed"
            return
        self.stats.state = "closed"

    @abc.abstractmethod
    def _run(self) -> None:
        """Consume packets until EndOfStream."""

    def status(self) -> str:
        """One short line for the status log."""
        return output_status(self.kind, self.name, self.stats)


class Output(Protocol):
    """What the app starts, watches and closes: a packet output, or a WHIP push."""

    kind: str
    name: str
    stats: OutputStats

    def start(self) -> None:
        """Start sending."""
        ...

    def close(self, timeout: float = 10.0) -> bool:
        """Finish within ``timeout``; True when done."""
        ...

    def status(self) -> str:
        """One short line for the status log."""
        ...


STABLE_AFTER_S = 10.0


class Backoff:
    """Capped exponential waits between reconnections; a session that stayed up resets them."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self._next = initial_s

    def after(self, lived_s: float) -> float:
        """The wait before the next attempt, after a session that was up ``lived_s`` seconds."""
        if lived_s >= STABLE_AFTER_S:
            self._next = self.initial_s
        wait, self._next = self._next, min(self._next * 2, self.max_s)
        return wait


def output_status(kind: str, name: str, s: OutputStats) -> str:
    """The status line of an output."""
    line = f"{kind} {name}: {s.state} sent={s.packets} drop={s.dropped}"
    if s.reconnects:
        line += f" reconnects={s.reconnects}"
    return line


def pace(deadline: float, output: PacketOutput) -> bool:
    """Wait until the wall-clock ``deadline`` (monotonic seconds); True when the output is closing."""
    left = deadline - time.monotonic()
    return output.wait(left) if left > 0 else False

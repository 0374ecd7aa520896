"""The encoders: one H.264 + AAC encode of the program, shared by every muxed output.

The WebRTC encode (``stream/rtc/encoder.py``) shares the machinery. Each consumes ticks from its own
bounded queue in its own thread and fans packets out to its sinks (RTMP pushes, recorders, WebRTC
peers), each of which has a bounded queue of its own. Timestamps come from the tick
number only: video pts = k (time base 1/fps), audio pts = k*S (time base 1/sample_rate).
"""

from __future__ import annotations

import io
import logging
import queue
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, Protocol

import av
import numpy as np
from av.video.frame import PictureType

from broadcaster.config import EncoderConfig
from broadcaster.stream.clock import Timing
from broadcaster.stream.tick import Tick

log = logging.getLogger(__name__)

AAC_FRAME = 1024
MAX_AUDIO_GAP_S = 2.0


@dataclass(frozen=True, slots=True)
class EncodedPacket:
    """One compressed packet; ``pts``/``dts``/``duration`` count ticks (video) or samples (audio)."""

    kind: Literal["video", "audio"]
    data: bytes
    pts: int
    dts: int
    duration: int
    keyframe: bool


class PacketSink(Protocol):
    """An output fed by the encoder; ``offer_packet`` never blocks."""

    def offer_packet(self, packet: EncodedPacket) -> bool:
        """Take the packet or drop it (and count the drop)."""
        ...

    def end_of_stream(self) -> None:
        """No more packets will come."""
        ...


@dataclass(frozen=True)
class StreamTemplates:
    """Opened codec streams whose parameters (sizes, extradata) every muxer copies."""

    video: av.VideoStream
    audio: av.AudioStream


def x264_options(cfg: EncoderConfig, fps: int) -> dict[str, str]:
    """libx264 options: no B-frames, fixed closed GOP, VBV-capped bitrate that ingest servers accept."""
    v = cfg.video
    gop = max(1, round(v.gop_seconds * fps))
    params = [
        f"keyint={gop}",
        f"min-keyint={gop}",
        "scenecut=0",
        "bframes=0",
        "open-gop=0",
        "forced-idr=1",
        f"vbv-maxrate={v.bitrate_kbps}",
        f"vbv-bufsize={v.bitrate_kbps * (1 if v.rate_control == 'cbr' else 2)}",
    ]
    if v.filler:
        params.append("nal-hrd=cbr")
    return {
        "preset": v.preset,
        "tune": "zerolatency",
        "profile": v.profile,
        "threads": str(v.threads),
        "x264-params": ":".join(params),
    }


@dataclass
class EncoderStats:
    """Counters of the encode thread."""

    ticks: int = 0
    dropped: int = 0
    packets: int = 0
    bytes: int = 0
    keyframes: int = 0
    encode_s: float = 0.0


class Encodes(Protocol):
    """An opened codec (a stream or a codec context): frames in, packets out; None flushes."""

    def encode(self, frame: Any = None) -> list[av.Packet]:
        """Encode one frame."""
        ...


class TickEncoder:
    """A tick sink that encodes in its own thread and publishes packets to its packet sinks.

    Subclasses open the codecs; this class owns the queue, the thread, the audio framing and the
    fan-out. Sinks may be added and removed while it runs.
    """

    audio_frame_size = AAC_FRAME
    audio_format = "fltp"
    pad_last_audio_frame = False

    def __init__(
        self, timing: Timing, video: Encodes | None, audio: Encodes | None, queue_ticks: int, name: str
    ) -> None:
        self.timing = timing
        self.stats = EncoderStats()
        self._video = video
        self._audio = audio
        self._sinks: tuple[PacketSink, ...] = ()
        self._sinks_lock = threading.Lock()
        self._queue: queue.Queue[Tick | None] = queue.Queue(maxsize=queue_ticks)
        self._keyframe_wanted = threading.Event()
        self._forced_at = 0  # the tick of the last IDR forced on request (the first picture is one)
        self._audio_floor = -(10**12)  # audio packets before this sample are stale: not published
        self._ended = False
        self._fifo = np.zeros((0, 2), np.int16)
        self._fifo_start = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def add_sink(self, sink: PacketSink) -> None:
        """Feed ``sink`` too; a sink added after the stream ended is told so at once."""
        with self._sinks_lock:
            if not self._ended:
                self._sinks = (*self._sinks, sink)
                return
        sink.end_of_stream()

    def remove_sink(self, sink: PacketSink) -> None:
        """Stop feeding ``sink`` (it gets no end-of-stream)."""
        with self._sinks_lock:
            self._sinks = tuple(s for s in self._sinks if s is not sink)

    def request_keyframe(self) -> None:
        """Make the next picture an IDR frame (an output reconnected and wants to start).

        Requests are merged: at most one forced IDR a second, however many peers ask (a lossy viewer
        must not flood the shared encode, and every other peer, with keyframes).
        """
        self._keyframe_wanted.set()

    def start(self) -> None:
        """Start the encode thread."""
        self._thread.start()

    def offer(self, tick: Tick) -> bool:
        """Queue a tick for encoding; drop and count it when the encoder is behind."""
        try:
            self._queue.put_nowait(tick)
        except queue.Full:
            self.stats.dropped += 1
            return False
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Encode what is queued, flush the codecs and tell the sinks the stream ended."""
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def ended(self) -> bool:
        """Whether the encoder has finished (its sinks were told the stream ended)."""
        return self._ended

    @property
    def queued(self) -> int:
        """Ticks waiting to be encoded."""
        return self._queue.qsize()

    def _publish(self, packets: list[av.Packet], kind: Literal["video", "audio"], unit: Fraction) -> None:
        sinks = self._sinks
        for packet in packets:
            if packet.pts is None or packet.time_base is None:
                continue
            scale = packet.time_base / unit
            pts = int(packet.pts * scale)
            if kind == "audio" and pts < self._audio_floor:
                continue
            dts = int(packet.dts * scale) if packet.dts is not None else pts
            encoded = EncodedPacket(
                kind, bytes(packet), pts, dts, int((packet.duration or 0) * scale), bool(packet.is_keyframe)
            )
            self.stats.packets += 1
            self.stats.bytes += len(encoded.data)
            self.stats.keyframes += kind == "video" and encoded.keyframe
            for sink in sinks:
                sink.offer_packet(encoded)

    def _audio_frames(self, tick: Tick) -> list[av.AudioFrame]:
        start = tick.k * self.timing.samples_per_tick
        end = self._fifo_start + len(self._fifo)
        if start != end:
            gap = start - end
            if 0 < gap <= MAX_AUDIO_GAP_S * self.timing.sample_rate:
                self._fifo = np.concatenate([self._fifo, np.zeros((gap, 2), np.int16)])
            else:
                self._fifo, self._fifo_start = np.zeros((0, 2), np.int16), start
        self._fifo = np.concatenate([self._fifo, tick.audio]) if len(self._fifo) else tick.audio
        return self._drain_fifo(self.audio_frame_size)

    def _drain_fifo(self, minimum: int) -> list[av.AudioFrame]:
        """Audio frames of ``audio_frame_size`` from the FIFO; a small ``minimum`` takes a short last one."""
        size = self.audio_frame_size
        frames = []
        while len(self._fifo) >= minimum and len(self._fifo):
            chunk, self._fifo = self._fifo[:size], self._fifo[size:]
            if len(chunk) < size and self.pad_last_audio_frame:
                chunk = np.concatenate([chunk, np.zeros((size - len(chunk), 2), np.int16)])
            if self.audio_format == "s16":
                frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="stereo")
            else:
                planar = np.ascontiguousarray(chunk.T, dtype=np.float32) * (1.0 / 32768.0)
                frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout="stereo")
            frame.sample_rate = self.timing.sample_rate
            frame.pts = self._fifo_start
            frame.time_base = self.timing.audio_time_base
            self._fifo_start += len(chunk)
            frames.append(frame)
        return frames

    def _picture(self, tick: Tick) -> av.VideoFrame:
        """The tick's picture as a frame to encode (a subclass may scale it)."""
        return av.VideoFrame.from_ndarray(tick.video, format="yuv420p")

    def _codecs(self) -> tuple[Encodes, Encodes]:
        """The opened video and audio codecs (a subclass may open them on first use)."""
        assert self._video is not None and self._audio is not None
        return self._video, self._audio

    def _encode(self, tick: Tick) -> None:
        video, audio = self._codecs()
        frame = self._picture(tick)
        frame.pts = tick.k
        frame.time_base = self.timing.video_time_base
        if self._keyframe_wanted.is_set() and tick.k - self._forced_at >= self.timing.fps:
            self._keyframe_wanted.clear()
            self._forced_at = tick.k
            frame.pict_type = PictureType.I
        self._publish(video.encode(frame), "video", self.timing.video_time_base)
        for audio_frame in self._audio_frames(tick):
            self._publish(audio.encode(audio_frame), "audio", self.timing.audio_time_base)
        self.stats.ticks += 1

    def _run(self) -> None:
        try:
            while True:
                tick = self._queue.get()
                if tick is None:
                    break
                started = time.thread_time()
                try:
                    self._encode(tick)
                except av.FFmpegError:
                    self.stats.dropped += 1
                    log.exception("encoding tick %d failed; skipped", tick.k)
                self.stats.encode_s += time.thread_time() - started
            if self._video is not None and self._audio is not None:  # flush what was ever opened
                self._publish(self._video.encode(None), "video", self.timing.video_time_base)
                for audio_frame in self._drain_fifo(1):
                    self._publish(self._audio.encode(audio_frame), "audio", self.timing.audio_time_base)
                self._publish(self._audio.encode(None), "audio", self.timing.audio_time_base)
        finally:
            with self._sinks_lock:
                self._ended = True
                sinks = self._sinks
            for sink in sinks:
                sink.end_of_stream()


class Encoder(TickEncoder):
    """The H.264 + AAC encode shared by the RTMP pushes and the recorders."""

    def __init__(
        self, timing: Timing, size: tuple[int, int], cfg: EncoderConfig, queue_ticks: int = 50
    ) -> None:
        self._template = av.open(io.BytesIO(), "w", format="flv")
        video = self._template.add_stream("libx264", rate=timing.fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        video.bit_rate = cfg.video.bitrate_kbps * 1000
        video.codec_context.time_base = timing.video_time_base
        video.codec_context.options = x264_options(cfg, timing.fps)
        audio = self._template.add_stream("aac", rate=timing.sample_rate, layout="stereo")
        audio.bit_rate = cfg.audio.bitrate_kbps * 1000
        audio.codec_context.time_base = timing.audio_time_base
        video.codec_context.open()
        audio.codec_context.open()
        # Writing the (discarded) header copies the opened encoders' parameters, extradata included,
        # into the streams that every muxer uses as templates.
        self._template.start_encoding()
        self.templates = StreamTemplates(video, audio)
        super().__init__(timing, video, audio, queue_ticks, "encoder")

    def close(self, timeout: float = 10.0) -> None:
        """Flush as ``TickEncoder.close`` does, then close the template container once nothing encodes.

        The template's streams stay readable (PyAV frees the format context only with the container),
        so an output still opening a muxer from them is safe.
        """
        super().close(timeout)
        if not self._thread.is_alive():
            self._template.close()

"""Muxing encoded packets into one container (a file, or the FLV pipe of an RTMP push).

Each container starts at a video keyframe and its timestamps are rebased to that keyframe's tick, so
every file and every connection starts at zero while audio and video keep their exact tick alignment.
"""

from __future__ import annotations

from typing import IO, Any

import av

from broadcaster.stream.clock import Timing
from broadcaster.stream.encoder import EncodedPacket, StreamTemplates

FORMAT_BY_SUFFIX = {".flv": "flv", ".mp4": "mp4", ".mkv": "matroska"}
CONTAINER_OPTIONS = {
    # Fragmented MP4: a segment cut short by a crash or a power cut still plays.
    "mp4": {"movflags": "frag_keyframe+empty_moov+default_base_moof"},
    "flv": {"flvflags": "no_duration_filesize"},
    "matroska": {},
}


class PacketMuxer:
    """One container, written from encoded packets; the first packet written must be a video keyframe."""

    def __init__(self, target: str | IO[bytes], fmt: str, templates: StreamTemplates, timing: Timing) -> None:
        self._container: Any = av.open(
            target, "w", format=fmt, container_options=CONTAINER_OPTIONS.get(fmt, {})
        )
        self._video = self._container.add_stream_from_template(templates.video, opaque=True)
        self._audio = self._container.add_stream_from_template(templates.audio, opaque=True)
        self._video.time_base = timing.video_time_base
        self._audio.time_base = timing.audio_time_base
        self._timing = timing
        self.base_tick: int | None = None
        self.end_tick: int | None = None

    def owns_audio(self, packet: EncodedPacket) -> bool:
        """Whether an audio packet starts before this container's end (set when the next one began)."""
        return self.end_tick is not None and packet.pts < self.end_tick * self._timing.samples_per_tick

    def write(self, packet: EncodedPacket) -> None:
        """Mux one packet; audio before the first keyframe is skipped."""
        if self.base_tick is None:
            if packet.kind != "video" or not packet.keyframe:
                raise ValueError("a container must start with a video keyframe")
            self.base_tick = packet.pts
        stream: av.VideoStream | av.AudioStream
        if packet.kind == "video":
            offset, stream, time_base = self.base_tick, self._video, self._timing.video_time_base
        else:
            offset = self.base_tick * self._timing.samples_per_tick
            if packet.pts + packet.duration <= offset:
                return
            stream, time_base = self._audio, self._timing.audio_time_base
        av_packet = av.Packet(packet.data)
        av_packet.pts = packet.pts - offset
        av_packet.dts = packet.dts - offset
        av_packet.duration = packet.duration
        av_packet.time_base = time_base
        av_packet.is_keyframe = packet.keyframe
        av_packet.stream = stream
        self._container.mux(av_packet)

    def close(self) -> None:
        """Write the trailer and close the container."""
        self._container.close()

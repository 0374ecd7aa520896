"""The soak benchmark's media side: whether nginx-rtmp is here, and what a recording says about A/V.

The soak pushes to the tests' ``NginxRtmp`` (recording every published stream, so the push is proved
to have arrived) and stops it gracefully to close its recording. ``recording_offset`` decodes a
recorded file with PyAV and measures, in audio samples, where its audio ends against where its video
ends: on one program clock the two must end on the same tick boundary.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from tests.conftest import RTMP_MODULE


def nginx_available() -> bool:
    """Whether nginx and its RTMP module are installed."""
    return shutil.which("nginx") is not None and RTMP_MODULE.exists()


@dataclass
class RecordingAv:
    """A decoded recording: frames and samples, and where audio ends against video, in samples."""

    path: str
    video_frames: int
    audio_samples: int
    sample_rate: int
    fps: float
    video_start: int  # samples on the file's timeline (the first frame's pts)
    video_end: int  # the last frame's pts plus one frame
    audio_start: int
    audio_end: int  # the last audio packet's pts plus its duration, as the container declares them
    audio_decoded_end: int  # the last decoded frame's end: the decoder pads the last AAC frame to 1024
    decode_errors: int

    @property
    def offset_samples(self) -> int:
        """Audio end minus video end (0: they end on the same sample)."""
        return self.audio_end - self.video_end

    @property
    def padding_samples(self) -> int:
        """Samples the decoder put past the declared end (the last AAC frame's padding, under 1024)."""
        return self.audio_decoded_end - self.audio_end

    def as_dict(self) -> dict[str, Any]:
        """The figures, with the offset."""
        return {
            **asdict(self),
            "offset_samples": self.offset_samples,
            "padding_samples": self.padding_samples,
        }


def _samples(pts: int, time_base: Fraction, rate: int) -> Fraction:
    return pts * time_base * rate


def recording_offset(path: Path, fps: int, decode_video: bool = True) -> RecordingAv:
    """Decode ``path`` (audio always; video too unless ``decode_video`` is False, then its packets count).

    ``fps`` is the program's: a frame lasts one tick (the stream's average rate is no measure of that
    once the encoder has dropped a tick). Positions are exact fractions of samples on the file's
    timeline, rounded at the end; a frame's end is its pts plus its length (one tick for video, its
    sample count for audio). The audio's end is the one the container declares (its last packet's pts
    plus duration): the AAC decoder returns whole 1024-sample frames, so it plays the last frame's
    padding too (``padding_samples``, reported apart).
    """
    errors = 0
    with av.open(str(path)) as container:
        vs, aus = container.streams.video[0], container.streams.audio[0]
        vs.thread_type = "AUTO"
        rate = aus.rate or aus.codec_context.sample_rate
        tick = Fraction(rate, fps)
        frames = samples = 0
        v_first: Fraction | None = None
        v_last: Fraction | None = None
        a_first: Fraction | None = None
        a_end = a_declared = Fraction(0)
        for packet in container.demux(vs, aus):
            if packet.stream.type == "audio" and packet.pts is not None and packet.size:
                end = _samples(packet.pts + (packet.duration or 0), packet.time_base, rate)
                a_declared = max(a_declared, end)
            if packet.stream.type == "video" and not decode_video:
                if packet.pts is None or packet.size == 0:
                    continue
                pos = _samples(packet.pts, packet.time_base, rate)
                frames += 1
                v_first = pos if v_first is None else min(v_first, pos)
                v_last = pos if v_last is None else max(v_last, pos)
                continue
            try:
                decoded = packet.decode()
            except av.FFmpegError:
                errors += 1
                continue
            for frame in decoded:
                if not isinstance(frame, av.AudioFrame | av.VideoFrame):
                    continue
                if frame.pts is None or frame.time_base is None:
                    continue
                pos = _samples(frame.pts, frame.time_base, rate)
                if isinstance(frame, av.AudioFrame):
                    samples += frame.samples
                    a_first = pos if a_first is None else min(a_first, pos)
                    a_end = max(a_end, pos + frame.samples)
                else:
                    frames += 1
                    v_first = pos if v_first is None else min(v_first, pos)
                    v_last = pos if v_last is None else max(v_last, pos)
    if v_first is None or v_last is None or a_first is None:
        raise ValueError(f"{path}: no video or no audio decoded")
    return RecordingAv(
        str(path),
        frames,
        samples,
        rate,
        float(fps),
        round(v_first),
        round(v_last + tick),
        round(a_first),
        round(a_declared),
        round(a_end),
        errors,
    )

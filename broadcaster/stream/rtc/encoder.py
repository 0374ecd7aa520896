"""The WebRTC encode: H.264 constrained baseline (parameter sets in band) and Opus, once for all peers.

Every WHIP push and every preview viewer is a sink of this one encoder, so ten viewers cost what one
does. It encodes only while someone listens: with no sink, ticks are not even queued.
"""

from __future__ import annotations

from fractions import Fraction

import av

from broadcaster.stream.clock import Timing
from broadcaster.stream.encoder import Encodes, TickEncoder
from broadcaster.stream.rtc.settings import RtcConfig
from broadcaster.stream.tick import Tick

OPUS_FRAME = 960  # 20 ms at 48 kHz


def scaled(size: tuple[int, int], max_height: int) -> tuple[int, int]:
    """The WebRTC picture size: the program's, scaled down to ``max_height`` (0: never scaled)."""
    width, height = size
    if not max_height or height <= max_height:
        return size
    return round(width * max_height / height / 2) * 2, max_height


class RtcEncoder(TickEncoder):
    """A ``TickSink`` whose packets go to WebRTC peers (``rtc.feed.PeerFeed``)."""

    audio_frame_size = OPUS_FRAME
    audio_format = "s16"
    pad_last_audio_frame = True

    def __init__(self, timing: Timing, size: tuple[int, int], cfg: RtcConfig, queue_ticks: int = 50) -> None:
        super().__init__(timing, None, None, queue_ticks, "rtc-encoder")
        self._cfg = cfg
        self.size = scaled(size, cfg.max_height)

    def _codecs(self) -> tuple[Encodes, Encodes]:
        # opened at the first tick someone takes: a show nobody watches over WebRTC pays nothing
        if self._video is None or self._audio is None:
            self._video, self._audio = self._open()
        return self._video, self._audio

    def _open(self) -> tuple[Encodes, Encodes]:
        timing, cfg = self.timing, self._cfg
        video = av.CodecContext.create("libx264", "w")
        video.width, video.height = self.size
        video.pix_fmt = "yuv420p"
        video.time_base = timing.video_time_base
        video.framerate = Fraction(timing.fps, 1)
        video.bit_rate = cfg.video_bitrate_kbps * 1000
        gop = max(1, round(cfg.gop_seconds * timing.fps))
        video.options = {
            "preset": cfg.preset,
            "tune": "zerolatency",
            "profile": "baseline",
            "x264-params": ":".join(
                (
                    f"keyint={gop}",
                    f"min-keyint={gop}",
                    "scenecut=0",
                    "forced-idr=1",
                    "repeat-headers=1",
                    f"vbv-maxrate={cfg.video_bitrate_kbps}",
                    f"vbv-bufsize={cfg.video_bitrate_kbps}",
                )
            ),
        }
        audio = av.CodecContext.create("libopus", "w")
        audio.sample_rate = timing.sample_rate
        audio.layout = "stereo"
        audio.format = "s16"
        audio.bit_rate = cfg.audio_bitrate_kbps * 1000
        audio.time_base = timing.audio_time_base
        video.open()
        audio.open()
        return video, audio

    def _picture(self, tick: Tick) -> av.VideoFrame:
        frame = super()._picture(tick)
        if (frame.width, frame.height) == self.size:
            return frame
        return frame.reformat(width=self.size[0], height=self.size[1], interpolation="AREA")

    def offer(self, tick: Tick) -> bool:
        """Queue the tick for encoding while anyone listens; otherwise let it pass."""
        return super().offer(tick) if self._sinks else True

    def _audio_frames(self, tick: Tick) -> list[av.AudioFrame]:
        # After a gap (nobody listened, or ticks were dropped) the sound restarts at this tick: the
        # peers are new or resynchronise on a keyframe anyway, and padding the gap with silence would
        # send it all at once, late. What Opus still holds from before the gap is dropped.
        start = tick.k * self.timing.samples_per_tick
        if start != self._fifo_start + len(self._fifo):
            self._fifo = self._fifo[:0]
            self._fifo_start = start
            self._audio_floor = start - OPUS_FRAME
        return super()._audio_frames(tick)

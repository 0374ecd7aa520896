"""The WebRTC encode and a peer's feed: idle without listeners, sound restarting cleanly, keyframes."""

from __future__ import annotations

import asyncio
import time

import av
import numpy as np

from broadcaster.stream.clock import ProgramClock, Timing
from broadcaster.stream.encoder import EncodedPacket
from broadcaster.stream.rtc.encoder import RtcEncoder
from broadcaster.stream.rtc.feed import PeerFeed
from broadcaster.stream.rtc.settings import RtcConfig
from broadcaster.stream.tick import Tick

TIMING = Timing(25)
S = TIMING.samples_per_tick


class Collect:
    def __init__(self) -> None:
        self.packets: list[EncodedPacket] = []
        self.ended = False

    def offer_packet(self, packet: EncodedPacket) -> bool:
        self.packets.append(packet)
        return True

    def end_of_stream(self) -> None:
        self.ended = True


def tick(k: int) -> Tick:
    video = np.full((72 * 3 // 2, 128), k % 200, np.uint8)
    audio = np.full((S, 2), 1000, np.int16)
    return Tick(k, video, audio)


def encoder() -> RtcEncoder:
    return RtcEncoder(TIMING, (128, 72), RtcConfig(video_bitrate_kbps=300), queue_ticks=500)


def test_nothing_is_encoded_while_nobody_listens_and_sound_restarts_at_the_tick() -> None:
    enc = encoder()
    first = Collect()
    enc.add_sink(first)
    enc.start()
    for k in range(20):
        enc.offer(tick(k))
    for _ in range(200):
        if enc.stats.ticks == 20:
            break
        time.sleep(0.01)
    enc.remove_sink(first)
    for k in range(20, 45):  # 1 s with nobody listening: not even queued
        assert enc.offer(tick(k))
    assert enc.queued == 0
    second = Collect()
    enc.add_sink(second)
    for k in range(45, 70):
        enc.offer(tick(k))
    enc.close(10)
    assert enc.stats.ticks == 45  # 20 + 25: the idle second was never encoded
    audio = [p for p in second.packets if p.kind == "audio"]
    # no burst of stale sound on resuming: it starts near tick 45, not where it stopped at tick 20
    assert audio and audio[0].pts >= 44 * S, audio[0].pts
    assert len(audio) <= 25 * S // 960 + 3
    assert second.ended and not first.ended


def test_keyframe_requests_are_merged_to_one_a_second() -> None:
    enc = encoder()

    class Lossy(Collect):  # a viewer asking for a keyframe at every packet
        def offer_packet(self, packet: EncodedPacket) -> bool:
            enc.request_keyframe()
            return super().offer_packet(packet)

    sink = Lossy()
    enc.add_sink(sink)
    enc.start()
    for k in range(100):  # 4 s
        enc.offer(tick(k))
    enc.close(20)
    keyframes = [p.pts for p in sink.packets if p.kind == "video" and p.keyframe]
    assert keyframes == [0, 25, 50, 75], keyframes  # one a second, not 100


def test_a_sink_added_after_the_end_is_told_at_once() -> None:
    enc = encoder()
    enc.start()
    enc.close(5)
    late = Collect()
    enc.add_sink(late)
    assert late.ended and enc.ended


async def test_a_feed_starts_at_a_keyframe_with_the_sound_of_that_tick() -> None:
    clock = ProgramClock(TIMING)
    asked: list[int] = []
    feed = PeerFeed(asyncio.get_running_loop(), clock, lambda: asked.append(1), queue_seconds=1.0)

    def video(k: int, key: bool) -> EncodedPacket:
        return EncodedPacket("video", b"v", k, k, 1, key)

    def audio(pts: int) -> EncodedPacket:
        return EncodedPacket("audio", b"a", pts, pts, 960, False)

    assert not feed.offer_packet(audio(0))  # no picture yet: no sound either
    assert not feed.offer_packet(video(1, False))  # not a keyframe
    assert feed.offer_packet(video(2, True))
    assert not feed.offer_packet(audio(2 * S - 960))  # sound from before the keyframe
    assert feed.offer_packet(audio(2 * S))
    for k in range(3, 3 + 25):  # the video queue (1 s) fills: a drop, then skipping to a keyframe
        feed.offer_packet(video(k, False))
    assert feed.stats.dropped >= 1 and asked == [1]
    assert not feed.offer_packet(video(40, False))
    feed.end_of_stream()
    assert not feed.offer_packet(video(50, True))


def test_a_1080p_program_is_sent_over_webrtc_at_720p() -> None:
    enc = RtcEncoder(Timing(25), (1920, 1080), RtcConfig(video_bitrate_kbps=500), queue_ticks=50)
    assert enc.size == (1280, 720)
    sink = Collect()
    enc.add_sink(sink)
    enc.start()
    for k in range(5):
        video = np.full((1080 * 3 // 2, 1920), 90 + k, np.uint8)
        enc.offer(Tick(k, video, np.zeros((S, 2), np.int16)))
    enc.close(10)
    decoder = av.CodecContext.create("h264", "r")
    frames = []
    for packet in (p for p in sink.packets if p.kind == "video"):
        frames += decoder.decode(av.Packet(packet.data))
    assert frames and (frames[0].width, frames[0].height) == (1280, 720)
    assert RtcEncoder(Timing(25), (1920, 1080), RtcConfig(max_height=0)).size == (1920, 1080)
    assert RtcEncoder(Timing(25), (1280, 720), RtcConfig()).size == (1280, 720)

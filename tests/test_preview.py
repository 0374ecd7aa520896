"""The preview sink: JPEG pictures and PCM sound for the dashboard, only while watched, never blocking."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from broadcaster.control.hub import EventHub, Subscription
from broadcaster.control.preview import PreviewSink
from broadcaster.control.protocol import JPEG_MAGIC, PCM_MAGIC, PREVIEW_HEADER
from broadcaster.control.settings import ControlConfig
from broadcaster.stream.tick import Tick

W, H, FPS, S = 640, 360, 25, 1920


def picture(k: int) -> np.ndarray:
    """An I420 picture whose left half brightens with k (so pictures differ)."""
    bgr = np.zeros((H, W, 3), np.uint8)
    bgr[:, : W // 2] = (k * 10) % 256
    bgr[:, W // 2 :, 2] = 200
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)


def tick(k: int, left: int = 1000, right: int = 3000) -> Tick:
    audio = np.empty((S, 2), np.int16)
    audio[:, 0], audio[:, 1] = left, right
    return Tick(k, picture(k), audio)


@pytest.fixture
def hub() -> Iterator[EventHub]:
    hub = EventHub()
    yield hub
    hub.close()


async def payloads(sub: Subscription, pictures: int, sounds: int = 0) -> tuple[list[bytes], list[bytes]]:
    """The first ``pictures`` JPEG and ``sounds`` PCM payloads published."""
    out: dict[bytes, list[bytes]] = {JPEG_MAGIC: [], PCM_MAGIC: []}
    async with asyncio.timeout(5):
        while len(out[JPEG_MAGIC]) < pictures or len(out[PCM_MAGIC]) < sounds:
            topic, data = await sub.get()
            assert topic == "preview"
            out[data[:4]].append(data)
    return out[JPEG_MAGIC], out[PCM_MAGIC]


async def test_pictures_and_sound_are_published_while_watched(hub: EventHub) -> None:
    hub.bind(asyncio.get_running_loop())
    sink = PreviewSink(hub, ControlConfig(preview_fps=5, preview_width=320), FPS)
    sink.start()
    try:
        sub = hub.subscribe(["preview"], limit=1000)

        def render() -> list[bool]:  # a render loop's pace (5 ms a tick), in its own thread
            taken = []
            for k in range(25):
                taken.append(sink.offer(tick(k)))
                time.sleep(0.005)
            return taken

        assert all(await asyncio.to_thread(render))
        # 25 ticks of 40 ms: 8 chunks of sound of 3 ticks (120 ms each), the last tick still collecting
        pictures, sounds = await payloads(sub, 5, 8)
        magic, k, width, height = PREVIEW_HEADER.unpack(pictures[1][:16])
        assert (magic, k, width, height) == (JPEG_MAGIC, 5, 320, 180)
        jpeg = cv2.imdecode(np.frombuffer(pictures[1][16:], np.uint8), cv2.IMREAD_COLOR)
        assert jpeg.shape == (180, 320, 3)
        assert abs(int(jpeg[90, 40].mean()) - 50) < 8 and jpeg[90, 280, 2] > 180
        assert [PREVIEW_HEADER.unpack(p[:16])[1] for p in pictures] == [0, 5, 10, 15, 20]
    finally:
        sink.close()
    magic, k, rate, channels = PREVIEW_HEADER.unpack(sounds[1][:16])
    assert (magic, k, rate, channels) == (PCM_MAGIC, 3, 24000, 1)
    pcm = np.frombuffer(sounds[1][16:], "<i2")
    assert len(pcm) == 3 * S // 2 and (pcm == 2000).all()  # the mean of both channels, at half the rate
    assert sink.stats.frames == 5 and sink.stats.audio_chunks == 8 and sink.stats.frames_dropped == 0


async def test_nothing_is_encoded_while_nobody_watches(hub: EventHub) -> None:
    hub.bind(asyncio.get_running_loop())
    sink = PreviewSink(hub, ControlConfig(), FPS)
    sink.start()
    other = hub.subscribe(["queue"])
    for k in range(50):
        assert sink.offer(tick(k))
    sink.close()
    assert sink.stats.frames == 0 and sink.stats.audio_chunks == 0
    assert other.dropped == 0 and not other._items
    watcher = hub.subscribe(["preview"])
    hub.unsubscribe(watcher)
    assert not hub.wants("preview")


async def test_a_stalled_worker_drops_pictures_and_offer_never_waits(
    hub: EventHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.bind(asyncio.get_running_loop())
    sink = PreviewSink(hub, ControlConfig(preview_fps=25, preview_audio=False), FPS)
    release = threading.Event()
    real = sink.encode_picture

    def stalled(k: int, video: np.ndarray) -> bytes:
        release.wait(10)
        return real(k, video)

    monkeypatch.setattr(sink, "encode_picture", stalled)
    sink.start()
    sub = hub.subscribe(["preview"])
    ticks = [tick(k) for k in range(200)]
    started = time.perf_counter()
    taken = [sink.offer(t) for t in ticks]
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"offer waited: {elapsed:.3f} s for 200 ticks"
    assert taken[:2] == [True, True] and taken.count(True) == 2
    assert sink.stats.frames_dropped == 198
    release.set()
    pictures, _ = await payloads(sub, 2)  # the two it took are still shown
    assert [PREVIEW_HEADER.unpack(p[:16])[1] for p in pictures] == [0, 1]
    sink.close()


async def test_encoding_errors_are_counted_and_the_worker_goes_on(hub: EventHub) -> None:
    hub.bind(asyncio.get_running_loop())
    sink = PreviewSink(hub, ControlConfig(preview_fps=25, preview_audio=False), FPS)
    sink.start()
    sub = hub.subscribe(["preview"])
    sink.offer(Tick(0, np.zeros((7, 3), np.uint8), np.zeros((S, 2), np.int16)))  # not an I420 picture
    sink.offer(tick(1))
    (good,), _ = await payloads(sub, 1)
    assert PREVIEW_HEADER.unpack(good[:16])[1] == 1
    sink.close()
    assert sink.stats.errors == 1 and sink.stats.frames == 1


def test_close_without_start_and_offer_after_close_are_harmless(hub: EventHub) -> None:
    sink = PreviewSink(hub, ControlConfig(), FPS)
    hub.subscribe(["preview"])
    sink.close()
    assert sink.offer(tick(0)) is True
    assert sink.stats.frames == 0 and sink.stats.frames_dropped == 0

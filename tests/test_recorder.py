from pathlib import Path

import numpy as np
import pytest

from broadcaster.config import EncoderConfig
from broadcaster.stream.clock import Timing
from broadcaster.stream.encoder import Encoder
from broadcaster.stream.outputs.recorder import Recorder, segment_path
from broadcaster.stream.tick import Tick
from tests.media import read_back

W, H = 320, 240


def run_ticks(encoder: Encoder, count: int) -> None:
    rng = np.random.default_rng(0)
    for k in range(count):
        video = np.full((H * 3 // 2, W), 16 + k % 200, np.uint8)
        video[: H // 2, : W // 2] = rng.integers(0, 255, (H // 2, W // 2), dtype=np.uint8)
        audio = np.zeros((1920, 2), np.int16)
        if 50 <= k < 60:
            audio[:] = 8000
        assert encoder.offer(Tick(k, video, audio))
    encoder.close()


@pytest.mark.parametrize("suffix", [".mkv", ".mp4", ".flv"])
def test_segments_start_on_keyframes_and_carry_every_tick(tmp_path: Path, suffix: str) -> None:
    timing = Timing(25)
    encoder = Encoder(timing, (W, H), EncoderConfig(), queue_ticks=400)
    recorder = Recorder(
        tmp_path / f"rec{suffix}", encoder.templates, timing, segment_seconds=2, capacity=2000
    )
    encoder.add_sink(recorder)
    recorder.start()
    encoder.start()
    run_ticks(encoder, 150)
    assert recorder.close()
    assert [p.name for p in recorder.files] == [f"rec{suffix}", f"rec-001{suffix}", f"rec-002{suffix}"]
    total_frames = 0
    for path in recorder.files:
        back = read_back(path)
        assert back.video_codec == "h264" and back.audio_codec == "aac"
        assert back.keyframes[0]
        assert 0.0 <= back.video_pts[0] <= 1024 / 48000 + 0.001  # AAC priming may shift both streams
        assert all(b > a for a, b in zip(back.video_pts, back.video_pts[1:], strict=False))
        # each file's decoder trims one AAC frame of encoder priming
        assert abs(back.audio_seconds - back.frames / 25) <= 2 * 1024 / 48000
        total_frames += back.frames
    assert total_frames == 150
    assert encoder.stats.keyframes == 3
    assert recorder.stats.dropped == 0


def test_segment_names() -> None:
    assert segment_path(Path("a/b.mp4"), 0, 0) == Path("a/b.mp4")
    assert segment_path(Path("a/b.mp4"), 2, 0) == Path("a/b-002.mp4")
    assert segment_path(Path("a/{index}.flv"), 3, 0) == Path("a/3.flv")
    assert str(segment_path(Path("p-{start}.mkv"), 0, 0)).startswith("p-19")

from pathlib import Path

import av
import numpy as np
import pytest

from broadcaster.config import AvatarConfig, ClassicConfig
from broadcaster.face.avatar import load_avatar
from broadcaster.face.backdrop import Backdrop, decode_video, make_backdrop, seamless
from broadcaster.face.compositor import Compositor
from broadcaster.face.i420 import planes
from broadcaster.face.lipsync.classic import ClassicLipSync
from broadcaster.face.look import BackgroundVideoConfig, OverlayConfig

SIZE = (320, 180)


def levels(count: int) -> list[int]:
    return [20 + 16 * i % 224 for i in range(count)]


def encode_clip(path: Path, frames: int = 12, rate: int = 10, size: tuple[int, int] = (400, 240)) -> None:
    """A clip whose frame i is a flat grey of level 20 + 16 i (so a decoded frame says which it is)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        stream.options = {"crf": "10"}
        for level in levels(frames):
            image = np.full((size[1], size[0], 3), level, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def which(picture: np.ndarray, count: int = 12) -> int:
    """The source frame a decoded picture shows."""
    grey = float(planes(picture)[0].mean())
    return int(np.argmin([abs(grey - (16 + level * 219 / 255)) for level in levels(count)]))


def test_a_video_is_decoded_at_the_program_size_and_rate(tmp_path: Path) -> None:
    clip = tmp_path / "bg.mp4"
    encode_clip(clip)
    frames = decode_video(clip, SIZE, 25.0, 1000)
    assert frames.shape == (30, 270, 320)  # 1.2 s at 25 fps
    shown = [which(f) for f in frames]
    assert shown == [int((k + 0.5) * 10 / 25) for k in range(30)]  # each source frame held 2 or 3 ticks
    assert len(decode_video(clip, SIZE, 25.0, 7)) == 7


def test_the_loop_wraps_without_a_seam(tmp_path: Path) -> None:
    clip = tmp_path / "bg.webm"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libvpx", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        for level in levels(6):
            frame = av.VideoFrame.from_ndarray(np.full((96, 160, 3), level, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    backdrop = make_backdrop((64, 36), str(clip), tmp_path, 10.0, BackgroundVideoConfig(crossfade_s=0.2))
    n = len(backdrop.frames)
    assert n == 4  # 6 frames, 2 of them dissolved into the start
    means = [float(planes(backdrop.picture(k / 10))[0].mean()) for k in range(2 * n)]
    steps = np.abs(np.diff(means))
    assert steps[n - 1] <= steps[: n - 1].max()  # the wrap (n-1 -> 0) is no bigger a change than any other
    assert means[:n] == means[n:]
    assert np.shares_memory(backdrop.picture(0.0), backdrop.picture(n / 10))
    hard = make_backdrop((64, 36), str(clip), tmp_path, 10.0, BackgroundVideoConfig(crossfade_s=0))
    hard_means = [float(planes(hard.picture(k / 10))[0].mean()) for k in range(7)]
    assert abs(hard_means[6] - hard_means[5]) > 3 * steps.max()  # without the dissolve: a jump
    pingpong = make_backdrop((64, 36), str(clip), tmp_path, 10.0, BackgroundVideoConfig(loop="pingpong"))
    order = [which(pingpong.picture(k / 10), 6) for k in range(12)]
    assert order == [0, 1, 2, 3, 4, 5, 4, 3, 2, 1, 0, 1]
    frames = np.stack([np.full((6, 4), i, np.uint8) for i in range(9)])
    assert len(seamless(frames, 3)) == 6 and len(seamless(frames, 0)) == 9


def test_memory_cap_and_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clip = tmp_path / "bg.mkv"
    encode_clip(clip, frames=40)
    cfg = BackgroundVideoConfig(max_seconds=1.0, crossfade_s=0)
    with caplog.at_level("INFO"):
        capped = make_backdrop(SIZE, "bg.mkv", tmp_path, 25.0, cfg)
    assert len(capped.frames) == 25 and "MB in memory" in caplog.text and "capped" in caplog.text
    with pytest.raises(ValueError, match=r"program\.background = 'gone\.mp4'"):
        make_backdrop(SIZE, "gone.mp4", tmp_path, 25.0, cfg)
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(ValueError, match="cannot decode"):
        make_backdrop(SIZE, "junk.mp4", tmp_path, 25.0, cfg)
    still = make_backdrop(SIZE, "#102030", tmp_path, 25.0, cfg)
    assert len(still.frames) == 1 and np.shares_memory(still.picture(3.0), still.picture(0.0))


def test_program_frames_play_the_video_behind_the_avatar(tmp_path: Path, avatar_root: Path) -> None:
    clip = tmp_path / "bg.mov"
    encode_clip(clip)
    backdrop = make_backdrop(SIZE, str(clip), tmp_path, 25.0, BackgroundVideoConfig(crossfade_s=0))
    c = Compositor(
        SIZE,
        backdrop,
        [load_avatar(avatar_root, "sample")],
        AvatarConfig(scale=0.6, align="right"),
        ClassicLipSync(ClassicConfig()),
        overlay=OverlayConfig(captions={"enabled": False}, card={"enabled": False}),  # type: ignore[arg-type]
    )
    x = c.rect[0]
    first, later = c.frame(0.0), c.frame(0.8)
    assert planes(first)[0][:, : x - 2].std() < 2
    assert planes(later)[0][:, : x - 2].mean() > planes(first)[0][:, : x - 2].mean() + 50
    assert isinstance(c.backdrop, Backdrop) and not c.backdrop.frames.flags.writeable

import itertools

import numpy as np
import pytest

from broadcaster.config import IdleConfig
from broadcaster.face.i420 import from_bgr
from broadcaster.face.idle import PhotoIdle, VideoLoop


def portrait() -> np.ndarray:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (360, 300, 3), dtype=np.uint8)
    return np.asarray(np.clip(image.astype(np.int16) // 4 + 90, 0, 255), np.uint8)


def test_photo_moves_inside_but_its_edges_stay_put() -> None:
    image = portrait()
    still = from_bgr(image)
    idle = PhotoIdle(still, (150.0, 200.0), IdleConfig(sway_degrees=2.0, breathing_amount=0.02))
    pictures = [idle.picture(t) for t in np.linspace(0, 8, 9)]
    interior = [np.abs(p[60:300, 60:240].astype(int) - still[60:300, 60:240]).mean() for p in pictures]
    assert max(interior) > 2.0
    for p in pictures:
        assert p.shape == still.shape
        assert (p[:360][0] == still[0]).all() and (p[:360][-1] == still[359]).all()
        assert (p[:360][:, 0] == still[:360, 0]).all() and (p[:360][:, -1] == still[:360, -1]).all()


def test_motion_is_gentle_and_continuous() -> None:
    idle = PhotoIdle(from_bgr(portrait()), (150.0, 200.0), IdleConfig())
    h = 360
    worst, previous = 0.0, None
    for t in np.arange(0, 15, 0.04):
        a, b = idle.motion(float(t))
        corners = np.array([[-150, -200], [150, -200], [-150, 160], [150, 160]], dtype=float)
        shift = np.abs(corners @ a.T + b).max()
        worst = max(worst, shift)
        if previous is not None:
            assert np.abs(shift - previous) < 0.5
        previous = shift
    assert 0.5 < worst < 0.03 * h


def test_video_loop_is_ping_pong_without_a_jump() -> None:
    loop = VideoLoop(6, fps=25)
    indices = [loop.index(k / 25) for k in range(100)]
    assert indices[:12] == [0, 1, 2, 3, 4, 5, 4, 3, 2, 1, 0, 1]
    assert all(abs(a - b) == 1 for a, b in itertools.pairwise(indices))
    with pytest.raises(ValueError):
        VideoLoop(1, fps=25)


def test_video_loop_follows_its_own_frame_rate() -> None:
    loop = VideoLoop(30, fps=12.5)
    assert [loop.index(k / 25) for k in range(6)] == [0, 0, 1, 1, 2, 2]

from pathlib import Path

import cv2
import numpy as np
import pytest

from broadcaster.config import AvatarConfig, ClassicConfig, IdleConfig
from broadcaster.face.avatar import load_avatar
from broadcaster.face.compositor import Compositor, make_background
from broadcaster.face.i420 import planes, to_bgr
from broadcaster.face.lipsync.classic import ClassicLipSync
from broadcaster.face.stage import placement


@pytest.mark.parametrize("align", ["left", "center", "right"])
def test_placement_is_even_bottom_anchored_and_inside(align: str) -> None:
    for canvas in ((1280, 720), (1920, 1080)):
        for avatar, scale in (((512, 600), 1.0), ((1920, 600), 0.7), ((301, 999), 0.55)):
            x, y, w, h = placement(canvas, avatar, AvatarConfig(scale=scale, align=align))  # type: ignore[arg-type]
            assert all(v % 2 == 0 for v in (x, y, w, h))
            assert x >= 0 and x + w <= canvas[0] and y + h == canvas[1]


def test_background_colour_and_image(tmp_path: Path) -> None:
    colour = make_background((64, 36), "#102030", tmp_path)
    assert tuple(colour[0, 0]) == (0x30, 0x20, 0x10)
    image = np.zeros((100, 400, 3), np.uint8)
    image[:, 200:] = 255
    cv2.imwrite(str(tmp_path / "bg.png"), image)
    covered = make_background((64, 64), "bg.png", tmp_path)
    assert covered.shape == (64, 64, 3)
    assert covered[:, :28].max() == 0 and covered[:, 36:].min() == 255
    with pytest.raises(ValueError, match=r"program.background"):
        make_background((64, 36), "missing.png", tmp_path)


def test_frames_show_the_avatar_over_an_untouched_background(avatar_root: Path) -> None:
    avatar = load_avatar(avatar_root, "sample")
    background = make_background((1280, 720), "#204060", Path())
    compositor = Compositor(
        (1280, 720), background, [avatar], AvatarConfig(idle=IdleConfig()), ClassicLipSync(ClassicConfig())
    )
    x, y, w, h = compositor.rect
    first, later = compositor.frame(0.0), compositor.frame(1.7)
    assert first.shape == (1080, 1280)
    assert first is not later
    bgr = to_bgr(first)
    assert np.abs(bgr[10, 10].astype(int) - (0x60, 0x40, 0x20)).max() <= 3
    assert np.abs(bgr[:, :x].astype(int) - bgr[0, 0]).max() <= 3
    assert (planes(first)[0][:, :x] == planes(later)[0][:, :x]).all()
    assert not (planes(first)[0][y : y + h, x : x + w] == planes(later)[0][y : y + h, x : x + w]).all()

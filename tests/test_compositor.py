from pathlib import Path

import cv2
import numpy as np
import pytest

from broadcaster.config import AvatarConfig, ClassicConfig, IdleConfig
from broadcaster.face.avatar import load_avatar
from broadcaster.face.compositor import Compositor, make_background
from broadcaster.face.i420 import planes, to_bgr
from broadcaster.face.lipsync.classic import ClassicLipSync
from broadcaster.face.look import OverlayConfig
from broadcaster.face.stage import placement
from broadcaster.show.products import Product
from broadcaster.voice.speech_track import SpeechFrame, Utterance


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


def test_captions_and_card_are_drawn_over_the_program(avatar_root: Path) -> None:
    avatar = load_avatar(avatar_root, "sample")
    background = make_background((1280, 720), "#204060", Path())
    plain = Compositor(
        (1280, 720),
        background,
        [avatar],
        AvatarConfig(),
        ClassicLipSync(ClassicConfig()),
        overlay=OverlayConfig(captions={"enabled": False}, card={"enabled": False}),  # type: ignore[arg-type]
    )
    dressed = Compositor((1280, 720), background, [avatar], AvatarConfig(), ClassicLipSync(ClassicConfig()))
    assert (dressed.frame(0.5) == plain.frame(0.5)).all()  # nothing said, no product: nothing drawn
    speech = SpeechFrame(Utterance(1, 48000, text="欢迎来到直播间"), 0)
    dressed.show_card(Product(id="tea", name="西湖龙井", price=99.9, original_price=129))
    dressed.frame(1.0, speech)  # the card starts fading in
    changed = planes(dressed.frame(1.5, speech))[0] != planes(plain.frame(1.5, speech))[0]
    rows, cols = np.nonzero(changed)
    assert rows.max() > 600 and cols.max() > 1100 and rows.min() < 100  # the caption and the card
    dressed.show_card(None)
    dressed.frame(3.0)
    assert (dressed.frame(3.5) == plain.frame(3.5)).all()


def test_a_configured_font_that_does_not_exist_stops_the_start(avatar_root: Path) -> None:
    with pytest.raises(ValueError, match=r"overlay.font = 'fonts/none.ttf'"):
        Compositor(
            (1280, 720),
            make_background((1280, 720), "#204060", Path()),
            [load_avatar(avatar_root, "sample")],
            AvatarConfig(),
            ClassicLipSync(ClassicConfig()),
            overlay=OverlayConfig(font="fonts/none.ttf"),
        )

import logging
from pathlib import Path

import numpy as np
import pytest

from broadcaster.face import fonts
from broadcaster.face.caption import Captions, render_caption, wrap
from broadcaster.face.fonts import configured_font, find_cjk_font, overlay_font
from broadcaster.face.i420 import from_bgr, planes
from broadcaster.face.look import CaptionConfig
from broadcaster.voice.speech_track import SpeechFrame, Utterance

CANVAS = (1280, 720)
LONG = (
    "大家好，欢迎来到直播间！今天给大家带来的是正宗的西湖龙井，Hello everyone, welcome to the stream, "
    "明前采摘一芽一叶，香气清高，滋味鲜爽。"
)


def speaking(text: str) -> SpeechFrame:
    return SpeechFrame(Utterance(1, 48000, text=text), 0)


def blank() -> np.ndarray:
    return from_bgr(np.full((CANVAS[1], CANVAS[0], 3), (60, 50, 40), np.uint8))


def test_the_simplified_chinese_face_of_the_noto_collection_is_found() -> None:
    face = find_cjk_font()
    assert face is not None
    assert face.path.name == "NotoSansCJK-Regular.ttc" and face.index == 2
    assert face.name == "Noto Sans CJK SC"
    assert find_cjk_font(("/nowhere/font.ttf",), fontconfig=False) is None


def test_a_configured_font_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"overlay.font = 'missing.ttc'"):
        configured_font("missing.ttc", -1, tmp_path)
    (tmp_path / "junk.ttf").write_bytes(b"not a font")
    with pytest.raises(ValueError, match="not a font"):
        configured_font("junk.ttf", -1, tmp_path)
    face = configured_font("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 3, tmp_path)
    assert face.name == "Noto Sans CJK TC"


def test_without_a_cjk_font_one_warning_and_nothing_drawn(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fonts, "KNOWN_CJK_FONTS", ())
    monkeypatch.setattr(fonts, "find_cjk_font", lambda: None)
    with caplog.at_level(logging.WARNING):
        face = overlay_font("", -1, Path())
    assert face is None
    assert [r.levelno for r in caplog.records] == [logging.WARNING] and "fonts-noto-cjk" in caplog.text
    frame = blank()
    Captions(CaptionConfig(), face, CANVAS).draw(frame, 0.0, speaking("你好"))
    assert (frame == blank()).all()


def test_long_mixed_sentences_wrap_inside_the_width() -> None:
    face = find_cjk_font()
    assert face is not None
    font = face.at(36)
    lines = wrap(LONG, font, 1100)
    assert len(lines) == 3
    assert all(font.getlength(line) <= 1100 for line in lines)
    assert "".join(lines).replace(" ", "") == LONG.replace(" ", "")
    assert not any(line[0] in "，。！," for line in lines)
    assert lines[1].startswith("Hello everyone, welcome to the stream, ")  # Latin breaks between words
    assert wrap("word " * 40, font, 300)[0].endswith("word")


def test_a_caption_is_white_text_on_a_dark_band_within_its_lines() -> None:
    face = find_cjk_font()
    assert face is not None
    cfg = CaptionConfig()
    image = render_caption(LONG * 3, face, CANVAS, cfg)
    assert image.shape[1] <= CANVAS[0] * cfg.width + 100
    assert image.shape[0] < CANVAS[1] * cfg.size * 4  # two lines, cut short
    rgb, alpha = image[:, :, :3], image[:, :, 3]
    assert (rgb.min(axis=2) > 240).sum() > 500  # white strokes
    assert alpha[:, 24:-24].min() >= round(255 * cfg.band_opacity) - 1  # the band is under all the text


def test_caption_shows_while_speaking_then_holds_and_fades() -> None:
    face = find_cjk_font()
    assert face is not None
    captions = Captions(CaptionConfig(hold_s=0.6, fade_s=0.2), face, CANVAS)
    shown = blank()
    captions.draw(shown, 1.0, speaking("今天的茶叶特别好喝"))
    y = planes(shown)[0]
    changed = y != planes(blank())[0]
    rows = np.nonzero(changed.any(axis=1))[0]
    assert rows.min() > CANVAS[1] * 0.7 and rows.max() < CANVAS[1]
    assert y.max() > 200
    first = captions.overlay("今天的茶叶特别好喝")
    assert first is captions.overlay("今天的茶叶特别好喝")  # rendered once
    assert captions.opacity(1.5) == 1.0
    assert 0.0 < captions.opacity(1.7) < 1.0
    held = blank()
    captions.draw(held, 1.55, None)
    assert (held == shown).all()
    fading = blank()
    captions.draw(fading, 1.7, None)
    assert 0 < np.abs(planes(fading)[0].astype(int) - planes(blank())[0]).max() < y.max() - 60
    gone = blank()
    captions.draw(gone, 1.85, None)
    assert (gone == blank()).all()
    silent = blank()
    captions.draw(silent, 2.0, speaking(""))
    assert (silent == blank()).all()


def test_posted_words_show_hold_while_a_live_voice_plays_and_give_way_to_a_sentence() -> None:
    face = find_cjk_font()
    assert face is not None
    captions = Captions(CaptionConfig(hold_s=0.6, fade_s=0.2), face, CANVAS)
    captions.post("what is the price")  # the host's words, from the recogniser
    posted = blank()
    captions.draw(posted, 1.0, None)
    assert (posted != blank()).any()
    assert captions.overlay("what is the price") is not None
    live = blank()
    captions.draw(live, 3.0, speaking(""))  # a live voice (no sentence of its own) keeps them up
    assert (live == posted).all()
    replaced = blank()
    captions.draw(replaced, 3.04, speaking("今天的茶叶特别好喝"))  # the avatar's sentence takes over
    assert not (replaced == posted).all()
    captions.draw(blank(), 3.08, speaking(""))  # a wav without a sentence clears a sentence's caption
    silent = blank()
    captions.draw(silent, 3.12, speaking(""))
    assert (silent == blank()).all()

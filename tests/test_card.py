import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from broadcaster.face.card import CardContent, Cards, render_card
from broadcaster.face.fonts import find_cjk_font
from broadcaster.face.i420 import from_bgr, planes, to_bgr
from broadcaster.face.look import CardConfig
from broadcaster.show.products import Product

CANVAS = (1280, 720)


@dataclass(frozen=True)
class Pictured:
    """A product with a picture (the field products.Product is getting)."""

    name: str
    price: float
    original_price: float | None
    currency: str
    image: str = ""


def blank() -> np.ndarray:
    return from_bgr(np.full((CANVAS[1], CANVAS[0], 3), (60, 50, 40), np.uint8))


def test_card_texts_and_picture_path(tmp_path: Path) -> None:
    tea = Product(id="tea", name="西湖龙井", price=99.9, original_price=129)
    assert CardContent.of(tea, tmp_path) == CardContent("西湖龙井", "¥99.9", "¥129", None)
    cup = Pictured("Tea cup", 19.99, None, "USD", "cup.png")
    assert CardContent.of(cup, tmp_path) == CardContent("Tea cup", "$19.99", "", tmp_path / "cup.png")


def test_card_shows_picture_name_and_prices(tmp_path: Path) -> None:
    face = find_cjk_font()
    assert face is not None
    picture = np.zeros((120, 160, 3), np.uint8)
    picture[:] = (255, 0, 0)  # blue
    cv2.imwrite(str(tmp_path / "cup.png"), picture)
    content = CardContent.of(Pictured("景德镇 品茗杯", 39, 59, "CNY", "cup.png"), tmp_path)
    card = render_card(content, face, CANVAS, CardConfig())
    assert card.shape[1] == round(CANVAS[0] * 0.24)
    rgb = card[:, :, :3].astype(int)
    blue = (rgb[:, :, 2] > 200) & (rgb[:, :, 0] < 40)
    red = (rgb[:, :, 0] > 200) & (rgb[:, :, 1] < 120) & (rgb[:, :, 2] < 120)
    assert blue.sum() > 100 * 100 and red.sum() > 100  # the picture, the price
    plain = render_card(CardContent("景德镇 品茗杯", "¥39"), face, CANVAS, CardConfig())
    assert plain.shape[0] < card.shape[0] - 100  # no picture: a shorter card
    missing = render_card(CardContent("杯", "¥39", "", tmp_path / "gone.png"), face, CANVAS, CardConfig())
    assert missing.shape[0] < card.shape[0] - 100


@pytest.mark.parametrize("corner", ["top-left", "top-right", "bottom-left", "bottom-right"])
def test_card_fades_in_in_its_corner_and_out_when_taken_down(corner: str) -> None:
    face = find_cjk_font()
    assert face is not None
    cards = Cards(CardConfig(corner=corner, fade_s=0.3), face, CANVAS)  # type: ignore[arg-type]
    shower = threading.Thread(target=cards.show, args=(Product(id="tea", name="西湖龙井", price=99.9),))
    shower.start()
    shower.join()
    frames = []
    for t in (1.0, 1.15, 1.4):
        frame = blank()
        cards.draw(frame, t)
        frames.append(frame)
    diff = [np.abs(planes(f)[0].astype(int) - planes(blank())[0]) for f in frames]
    assert diff[0].max() == 0 and 0 < diff[1].max() < diff[2].max()
    rows, cols = np.nonzero(diff[2])
    top = corner.startswith("top")
    assert (rows.max() < CANVAS[1] / 2) if top else (rows.min() > CANVAS[1] / 2)
    left = corner.endswith("left")
    assert (cols.max() < CANVAS[0] / 2) if left else (cols.min() > CANVAS[0] / 2)
    price = to_bgr(frames[2])
    assert ((price[:, :, 2] > 200) & (price[:, :, 1] < 120)).sum() > 50
    cards.show(None)
    fading, gone = blank(), blank()
    cards.draw(fading, 2.0)
    cards.draw(fading, 2.15)
    cards.draw(gone, 2.4)
    assert not (fading == blank()).all() and (gone == blank()).all()


def test_the_card_on_air_shown_again_does_not_fade_again() -> None:
    cards = Cards(CardConfig(fade_s=0.3), find_cjk_font(), CANVAS)
    tea = Product(id="tea", name="西湖龙井", price=99.9)
    cards.show(tea)
    full, again = blank(), blank()
    cards.draw(blank(), 1.0)
    cards.draw(full, 1.5)
    cards.show(tea)  # the next segment of the same product's talk
    cards.draw(again, 1.6)
    assert (again == full).all(), "no fade out and in between two segments"


def test_card_disabled_draws_nothing() -> None:
    cards = Cards(CardConfig(enabled=False), find_cjk_font(), CANVAS)
    cards.show(Product(id="tea", name="西湖龙井", price=99.9))
    frame = blank()
    cards.draw(frame, 5.0)
    assert (frame == blank()).all()

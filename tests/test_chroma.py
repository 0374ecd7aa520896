import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from broadcaster.config import AvatarConfig, ClassicConfig, IdleConfig
from broadcaster.face.avatar import Avatar, load_avatar
from broadcaster.face.chroma import ChromaKey
from broadcaster.face.compositor import Compositor, make_background
from broadcaster.face.i420 import from_bgr, to_bgr
from broadcaster.face.lipsync.classic import ClassicLipSync
from broadcaster.face.look import ChromaConfig, OverlayConfig

GREEN = (0x40, 0xB1, 0x00)  # #00b140, BGR
MAGENTA = "#c03090"
SIZE = (640, 360)
NO_OVERLAY = OverlayConfig(captions={"enabled": False}, card={"enabled": False})  # type: ignore[arg-type]


def subject_mask(shape: tuple[int, int], shift: int = 0) -> np.ndarray:
    """A head and shoulders in 0..1, drawn at 4x and reduced, so its edge is anti-aliased."""
    h, w = shape
    big = np.zeros((h * 4, w * 4), np.uint8)
    cv2.ellipse(big, ((264 + shift) * 4, 250 * 4), (130 * 4, 170 * 4), 0, 0, 360, 255, -1)
    cv2.ellipse(big, ((256 + shift) * 4, 620 * 4), (230 * 4, 220 * 4), 0, 0, 360, 255, -1)
    return cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def green_screen(photo: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The photo's subject on an unevenly lit green screen, with green light spilled on its edge."""
    h, w = mask.shape
    light = np.linspace(0.9, 1.08, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 1), np.float32)
    screen = np.clip(np.array(GREEN, np.float32) * light, 0, 255)
    inner = cv2.erode(mask, np.ones((13, 13), np.uint8))
    spill = np.clip(mask - inner, 0, 1)[:, :, None] * 0.5
    subject = photo.astype(np.float32) * (1 - spill) + screen * spill
    out = subject * mask[:, :, None] + screen * (1 - mask[:, :, None])
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def greenness(bgr: np.ndarray) -> np.ndarray:
    """How much green stands out above red and blue."""
    b, g, r = (bgr[..., i].astype(int) for i in range(3))
    return g - np.maximum(r, b)


@pytest.fixture(scope="module")
def screen_root(avatar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Avatars 'screen' (a photo) and 'screenclip' (a 3-frame video) filmed on a green screen."""
    root = tmp_path_factory.mktemp("green")
    sample = avatar_root / "sample"
    photo = cv2.imread(str(sample / "photo.png"), cv2.IMREAD_COLOR)
    for name in ("screen", "screenclip"):
        shutil.copytree(sample, root / name, ignore=shutil.ignore_patterns(".cache", "photo.png"))
    cv2.imwrite(str(root / "screen" / "photo.png"), green_screen(photo, subject_mask(photo.shape[:2])))
    clip = root / "screenclip"
    (clip / "frames").mkdir()
    for i in range(3):
        picture = green_screen(np.roll(photo, 6 * i, axis=1), subject_mask(photo.shape[:2], 6 * i))
        cv2.imwrite(str(clip / "frames" / f"{i:04d}.jpg"), picture, [cv2.IMWRITE_JPEG_QUALITY, 92])
    manifest = json.loads((clip / "avatar.json").read_text())
    manifest.update(kind="video", frames=3)
    (clip / "avatar.json").write_text(json.dumps(manifest))
    points = np.load(clip / "landmarks.npy")
    np.save(clip / "landmarks.npy", np.repeat(points, 3, axis=0))
    return root


def compositor(avatar: Avatar, chroma: ChromaConfig | None) -> Compositor:
    return Compositor(
        SIZE,
        make_background(SIZE, MAGENTA, Path()),
        [avatar],
        AvatarConfig(idle=IdleConfig()),
        ClassicLipSync(ClassicConfig()),
        overlay=NO_OVERLAY,
        chroma=chroma,
    )


def regions(c: Compositor, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """In the avatar's rect on the canvas: clear screen, the subject's interior, and its edge band."""
    _, _, w, h = c.rect
    m = cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA)
    far = cv2.dilate(m, np.ones((15, 15), np.uint8)) == 0
    interior = cv2.erode(m, np.ones((15, 15), np.uint8)) >= 1.0
    edge = ~far & ~interior & (cv2.dilate(m, np.ones((5, 5), np.uint8)) > 0)
    return far, interior, edge


def crop(c: Compositor, picture: np.ndarray) -> np.ndarray:
    x, y, w, h = c.rect
    return to_bgr(picture)[y : y + h, x : x + w]


def test_key_colour_and_matte_of_a_plain_picture() -> None:
    bgr = np.zeros((64, 64, 3), np.uint8)
    bgr[:] = GREEN
    bgr[16:48, 16:48] = (90, 120, 200)  # a skin tone
    key = ChromaKey(ChromaConfig(key="green"))
    key.refine(from_bgr(bgr))
    full, half = key.matte(from_bgr(bgr))
    assert full.shape == (64, 64) and half.shape == (32, 32)
    assert full[:8].max() == 0 and full[24:40, 24:40].min() == 255
    assert ChromaKey(ChromaConfig(key="#0047bb")).matte(from_bgr(bgr))[0][24:40, 24:40].min() == 255
    with pytest.raises(ValueError):
        ChromaConfig(key="purple")


def test_green_screen_photo_is_keyed_over_the_background(avatar_root: Path, screen_root: Path) -> None:
    plain = compositor(load_avatar(avatar_root, "sample"), None)
    keyed = compositor(load_avatar(screen_root, "screen"), ChromaConfig(key="green"))
    raw = compositor(load_avatar(screen_root, "screen"), ChromaConfig(key="green", spill=0, shrink_px=0))
    photo = cv2.imread(str(screen_root / "screen" / "photo.png"))
    far, interior, edge = regions(keyed, subject_mask(photo.shape[:2]))
    magenta = np.array((0x90, 0x30, 0xC0))
    for t in (0.0, 1.8, 5.5):  # the photo sways: its matte must sway with it
        out = crop(keyed, keyed.frame(t))
        assert np.abs(out[far].astype(int) - magenta).max() <= 6
        reference = crop(plain, plain.frame(t))
        diff = np.abs(out[interior].astype(int) - reference[interior])
        assert diff.mean() < 3 and np.percentile(diff, 99) < 20
        assert greenness(out[edge]).max() < 12, t
    # without spill suppression and erosion the same edge keeps a green fringe: the check above can fail
    assert greenness(crop(raw, raw.frame(1.8))[edge]).max() > 24


def test_green_screen_video_mattes_follow_the_loop(screen_root: Path) -> None:
    c = compositor(load_avatar(screen_root, "screenclip"), ChromaConfig(key="green", avatars=("screenclip",)))
    shape = cv2.imread(str(screen_root / "screenclip" / "frames" / "0000.jpg")).shape[:2]
    magenta = np.array((0x90, 0x30, 0xC0))
    for index in range(3):
        t = index / 25
        assert c.stage.frame_index(t) == index
        first, again = c.stage.matte(t), c.stage.matte(t)
        assert first is not None and again is not None and np.shares_memory(first[0], again[0])
        far, _, edge = regions(c, subject_mask(shape, 6 * index))
        out = crop(c, c.frame(t))
        assert np.percentile(np.abs(out[far].astype(int) - magenta), 99.9) <= 10
        assert np.percentile(greenness(out[edge]), 99.5) < 12


def test_only_the_named_avatars_are_keyed(avatar_root: Path) -> None:
    c = compositor(load_avatar(avatar_root, "sample"), ChromaConfig(key="green", avatars=("other",)))
    assert c.stage.chroma is None and c.stage.matte(0.0) is None

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from broadcaster.face import landmarks as lm
from broadcaster.face.avatar import AvatarError, load_avatar
from broadcaster.face.builder import build_avatar
from broadcaster.face.i420 import from_bgr, to_bgr
from broadcaster.face.lipsync.painter import MouthPainter
from broadcaster.face.mouth import geometry
from tests.conftest import grace_hopper


def talking_clip(path: Path, root: Path, frames: int = 30, blank: int = 10) -> None:
    """A synthesised talking head: the portrait, drifting sideways, its mouth opening and closing;
    frame ``blank`` has no face at all."""
    build_avatar(grace_hopper(), "still", root)
    still = load_avatar(root, "still")
    w, h = still.manifest.size
    picture = still.pictures((w, h))[0]
    painter = MouthPainter(geometry(still.landmarks[0], (w, h)))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            frame = np.array(picture)
            painter.paint(frame, 0.5 + 0.5 * np.sin(i / 2.5), 0.5)
            bgr = np.roll(to_bgr(frame), i, axis=1)
            if i == blank:
                bgr[:] = 128
            out.mux(stream.encode(av.VideoFrame.from_ndarray(bgr, format="bgr24")))
        out.mux(stream.encode(None))


def test_a_photo_becomes_an_avatar_with_landmarks_mouth_and_mask(tmp_path: Path) -> None:
    folder = build_avatar(grace_hopper(), "gh", tmp_path)
    avatar = load_avatar(tmp_path, "gh")
    m = avatar.manifest
    assert (m.kind, m.size, m.frames) == ("photo", (512, 600), 1)
    x, y, w, h = m.face
    assert 100 < x + w / 2 < 400 and 100 < y + h / 2 < 350
    mx, my, mw, mh = m.mouth
    assert x < mx and mx + mw < x + w and y + h / 2 < my < y + h
    assert avatar.landmarks.shape == (1, lm.POINTS, 2)
    mouth = avatar.landmarks[0][lm.LIP_TOP_INNER]
    assert mx < mouth[0] < mx + mw and my < mouth[1] < my + mh
    assert lm.mouth_opening(avatar.landmarks[0]) < 0.03
    assert avatar.mask.shape == (128, 128) and avatar.mask.max() == 255 and avatar.mask[0].max() == 0
    raw = json.loads((folder / "avatar.json").read_text())
    assert raw["format"] == 2 and raw["detector"].startswith("mediapipe-face-mesh")
    assert raw["built_by"].startswith("broadcaster ")


def test_rebuilding_is_idempotent(tmp_path: Path) -> None:
    build_avatar(grace_hopper(), "gh", tmp_path)
    first = load_avatar(tmp_path, "gh")
    first.pictures((256, 300))
    build_avatar(grace_hopper(), "gh", tmp_path)
    again = load_avatar(tmp_path, "gh")
    assert again.manifest.face == first.manifest.face and again.manifest.mouth == first.manifest.mouth
    assert np.array_equal(again.landmarks, first.landmarks)
    assert np.array_equal(again.mask, first.mask)
    assert not (tmp_path / "gh" / ".cache").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gh"]


def test_a_talking_video_gets_smoothed_landmarks_and_its_faceless_frame_filled(
    tmp_path: Path,
) -> None:
    clip = tmp_path / "talk.mp4"
    talking_clip(clip, tmp_path / "work")
    build_avatar(clip, "talk", tmp_path / "avatars")
    avatar = load_avatar(tmp_path / "avatars", "talk")
    m = avatar.manifest
    assert (m.kind, m.fps, m.frames) == ("video", 25, 30)
    assert m.no_face_frames == (10,)
    centres = avatar.landmarks[:, lm.NOSE_TIP, 0]
    drift = np.diff(centres)
    assert np.all(np.abs(drift - 1.0) < 1.5), drift
    assert abs(centres[10] - (centres[9] + centres[11]) / 2) < 1.5
    openings = np.array([lm.mouth_opening(p) for p in avatar.landmarks])
    painted = 0.5 + 0.5 * np.sin(np.arange(30) / 2.5)
    keep = np.arange(30) != 10
    assert np.corrcoef(openings[keep], painted[keep])[0, 1] > 0.8


def test_frames_load_from_the_cache_after_the_first_time(tmp_path: Path) -> None:
    clip = tmp_path / "talk.mp4"
    talking_clip(clip, tmp_path / "work", frames=12, blank=-1)
    build_avatar(clip, "talk", tmp_path / "avatars")
    pictures = load_avatar(tmp_path / "avatars", "talk").pictures((200, 234))
    assert pictures.shape == (12, 351, 200)
    cached = load_avatar(tmp_path / "avatars", "talk").pictures((200, 234))
    assert isinstance(cached, np.memmap)
    assert np.array_equal(cached, pictures)


def test_a_folder_of_frames_becomes_a_video_avatar(tmp_path: Path) -> None:
    source = tmp_path / "frames"
    source.mkdir()
    image = cv2.imread(str(grace_hopper()))
    for i in range(4):
        cv2.imwrite(str(source / f"f{i}.png"), np.roll(image, 2 * i, axis=0))
    build_avatar(source, "f", tmp_path / "avatars")
    avatar = load_avatar(tmp_path / "avatars", "f")
    assert avatar.manifest.frames == 4 and avatar.manifest.no_face_frames == ()


def test_clear_errors_for_bad_input(tmp_path: Path) -> None:
    with pytest.raises(AvatarError, match=r"not found.*avatar build"):
        load_avatar(tmp_path, "nobody")
    with pytest.raises(AvatarError, match="no such file"):
        build_avatar(tmp_path / "missing.jpg", "x", tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(AvatarError, match="not a readable image"):
        build_avatar(tmp_path / "broken.jpg", "x", tmp_path)
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(AvatarError, match="not a readable photo or video"):
        build_avatar(tmp_path / "broken.mp4", "x", tmp_path)
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((400, 300, 3), 90, np.uint8))
    with pytest.raises(AvatarError, match="no face found"):
        build_avatar(tmp_path / "wall.png", "x", tmp_path)
    cv2.imwrite(str(tmp_path / "tiny.png"), cv2.resize(cv2.imread(str(grace_hopper())), (100, 117)))
    with pytest.raises(AvatarError, match="too small"):
        build_avatar(tmp_path / "tiny.png", "x", tmp_path)
    far = np.full((1000, 1000, 3), 200, np.uint8)
    far[400:517, 400:500] = cv2.resize(cv2.imread(str(grace_hopper())), (100, 117))
    cv2.imwrite(str(tmp_path / "far.png"), far)
    with pytest.raises(AvatarError, match=r"(face is \d+ px tall|no face found)"):
        build_avatar(tmp_path / "far.png", "x", tmp_path)
    assert not (tmp_path / "x").exists()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "avatar.json").write_text('{"format": 2}')
    with pytest.raises(AvatarError, match="not a valid manifest"):
        load_avatar(tmp_path, "bad")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "avatar.json").write_text('{"kind": "photo", "size": [10, 10]}')
    with pytest.raises(AvatarError, match=r"older version.*rebuild"):
        load_avatar(tmp_path, "old")


def test_pictures_are_the_frames_scaled_to_the_drawn_size(tmp_path: Path) -> None:
    build_avatar(grace_hopper(), "gh", tmp_path)
    avatar = load_avatar(tmp_path, "gh")
    small = avatar.pictures((256, 300))
    expected = from_bgr(cv2.resize(cv2.imread(str(grace_hopper())), (256, 300), interpolation=cv2.INTER_AREA))
    assert np.abs(small[0].astype(int) - expected).max() <= 1
    scaled = avatar.landmarks_at((256, 300))
    assert np.allclose(scaled * 2, avatar.landmarks, atol=1e-3)

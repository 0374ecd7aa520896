from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from broadcaster.face.avatar import AvatarError, load_avatar
from broadcaster.face.builder import build_avatar
from tests.conftest import grace_hopper


def test_a_photo_becomes_a_photo_avatar_with_its_face_found(tmp_path: Path) -> None:
    build_avatar(grace_hopper(), "gh", tmp_path)
    avatar = load_avatar(tmp_path, "gh")
    assert avatar.manifest.kind == "photo"
    assert avatar.manifest.size == (512, 600)
    x, y, w, h = avatar.manifest.face or (0, 0, 0, 0)
    assert 100 < x + w / 2 < 400 and 100 < y + h / 2 < 300


def test_a_video_becomes_a_looping_video_avatar(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(40):
            frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), i * 5, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    build_avatar(clip, "clip", tmp_path / "avatars", max_seconds=1.0)
    avatar = load_avatar(tmp_path / "avatars", "clip")
    assert avatar.manifest.kind == "video"
    assert avatar.manifest.fps == 25
    assert len(avatar.images) == 25
    assert avatar.images[0].mean() < avatar.images[-1].mean()


def test_a_folder_of_frames_becomes_a_video_avatar(tmp_path: Path) -> None:
    source = tmp_path / "frames"
    source.mkdir()
    for i in range(5):
        cv2.imwrite(str(source / f"f{i}.png"), np.full((60, 40, 3), i * 40, np.uint8))
    build_avatar(source, "f", tmp_path / "avatars")
    assert len(load_avatar(tmp_path / "avatars", "f").images) == 5


def test_clear_errors_for_missing_things(tmp_path: Path) -> None:
    with pytest.raises(AvatarError, match=r"not found.*avatar build"):
        load_avatar(tmp_path, "nobody")
    with pytest.raises(AvatarError, match="no such file"):
        build_avatar(tmp_path / "missing.jpg", "x", tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(AvatarError, match="not a readable image"):
        build_avatar(tmp_path / "broken.jpg", "x", tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "avatar.json").write_text("{}")
    with pytest.raises(AvatarError, match="not a valid manifest"):
        load_avatar(tmp_path, "bad")

"""Lip-sync costs: classic ms per frame (720p, 1080p; photo and video avatars), Wav2Lip inference speed,
avatar load times.

    python bench/lipsync.py [--wav2lip-seconds 8]

Prints ``RESULT {json}`` last. Wav2Lip is timed with a randomly initialised net (speed does not depend
on the weights) at batch 16, fp32 and bf16 autocast, on the CPU, and on CUDA when there is one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sync import syllable_train  # noqa: E402
from broadcaster.config import AvatarConfig, ClassicConfig  # noqa: E402
from broadcaster.face.avatar import load_avatar  # noqa: E402
from broadcaster.face.builder import build_avatar  # noqa: E402
from broadcaster.face.lipsync.classic import ClassicLipSync  # noqa: E402
from broadcaster.face.lipsync.wav2lip_net import Wav2LipNet, cpu_has_native_bf16, infer  # noqa: E402
from broadcaster.face.stage import Stage  # noqa: E402
from broadcaster.voice.speech_track import SpeechFrame, SpeechTrack  # noqa: E402
from tests.conftest import grace_hopper  # noqa: E402
from tests.test_builder import talking_clip  # noqa: E402

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def classic_ms(root: Path, name: str, size: tuple[int, int], frames: int = 250) -> dict[str, float]:
    """Per frame while speaking: the lip-sync draw alone, and the whole avatar picture."""
    stage = Stage(load_avatar(root, name), size, AvatarConfig())
    lips = ClassicLipSync(ClassicConfig())
    track = SpeechTrack(prepare=lips.prepare)
    utterance = track.append(syllable_train(frames / 25 + 1), 48000)
    draw_s, total_s, opened = 0.0, 0.0, 0
    original = lips.draw

    def timed(face, speech):  # type: ignore[no-untyped-def]
        nonlocal draw_s
        began = time.perf_counter()
        original(face, speech)
        draw_s += time.perf_counter() - began

    lips.draw = timed  # type: ignore[method-assign]
    for k in range(frames):
        began = time.perf_counter()
        stage.picture(k / 25, lips, SpeechFrame(utterance, k))
        total_s += time.perf_counter() - began
        opened += lips._state[0] > 0.005
    return {
        "lipsync_ms": draw_s / frames * 1000,
        "picture_ms": total_s / frames * 1000,
        "open_share": opened / frames,
    }


def wav2lip_fps(device: torch.device, precision: str, seconds: float, batch: int = 16) -> float:
    net = Wav2LipNet().to(device).eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    rng = np.random.default_rng(0)
    mels = rng.normal(0, 1, (batch, 80, 16)).astype(np.float32)
    faces = rng.integers(0, 255, (batch, 96, 96, 3), dtype=np.uint8)
    infer(net, mels, faces, precision)
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds or done == 0:
        infer(net, mels, faces, precision)
        done += batch
    return done / (time.perf_counter() - began)


def load_ms(root: Path, name: str, size: tuple[int, int]) -> float:
    began = time.perf_counter()
    avatar = load_avatar(root, name)
    Stage(avatar, size, AvatarConfig())
    return (time.perf_counter() - began) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wav2lip-seconds", type=float, default=8.0)
    args = parser.parse_args()
    import cv2  # noqa: PLC0415

    cv2.setNumThreads(1)
    result: dict[str, object] = {
        "torch_threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_has_native_bf16(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "avatars"
        build_avatar(grace_hopper(), "photo", root)
        talking_clip(Path(tmp) / "talk.mp4", Path(tmp) / "work", frames=250, blank=-1)
        build_avatar(Path(tmp) / "talk.mp4", "video", root)
        for label, size in SIZES.items():
            photo = classic_ms(root, "photo", size)
            video = classic_ms(root, "video", size)
            result[f"classic_ms_{label}"] = round(photo["lipsync_ms"], 2)
            result[f"classic_ms_{label}_video"] = round(video["lipsync_ms"], 2)
            result[f"avatar_picture_ms_{label}"] = round(photo["picture_ms"], 2)
            result[f"avatar_picture_ms_{label}_video"] = round(video["picture_ms"], 2)
            result["classic_open_share"] = round(photo["open_share"], 2)
        result["avatar_load_ms_photo"] = round(load_ms(root, "photo", SIZES["720p"]), 1)
        shutil.rmtree(root / "video" / ".cache")
        result["avatar_load_ms_video_first"] = round(load_ms(root, "video", SIZES["720p"]), 1)
        result["avatar_load_ms_video_cached"] = round(load_ms(root, "video", SIZES["720p"]), 1)
    cpu = torch.device("cpu")
    result["video_avatar_frames"] = 250
    result["wav2lip_cpu_fps_fp32"] = round(wav2lip_fps(cpu, "fp32", args.wav2lip_seconds), 1)
    result["wav2lip_cpu_fps_bf16"] = round(wav2lip_fps(cpu, "bf16", args.wav2lip_seconds), 1)
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        result["gpu"] = torch.cuda.get_device_name(0)
        result["wav2lip_gpu_fps_fp32"] = round(wav2lip_fps(gpu, "fp32", args.wav2lip_seconds), 1)
        result["wav2lip_gpu_fps_fp16"] = round(wav2lip_fps(gpu, "fp16", args.wav2lip_seconds), 1)
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()

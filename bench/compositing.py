"""Benchmark: what captions, the product card, a chroma key and a video background cost per program frame.

Times ``Compositor.frame`` at 720p (one OpenCV thread, as on air) for: the plain program (overlays
off, a colour background), with a caption on air, with a caption and a card, and a green-screen avatar
keyed over a looping video background. Also the one-off costs: drawing a new caption and a new card,
decoding the background video. Prints RESULT {json} on the last line.

Usage: python bench/compositing.py [--frames 250]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from broadcaster.config import AvatarConfig, ClassicConfig  # noqa: E402
from broadcaster.face.avatar import load_avatar  # noqa: E402
from broadcaster.face.backdrop import make_backdrop  # noqa: E402
from broadcaster.face.builder import build_avatar  # noqa: E402
from broadcaster.face.compositor import Compositor, make_background  # noqa: E402
from broadcaster.face.lipsync.classic import ClassicLipSync  # noqa: E402
from broadcaster.face.look import BackgroundVideoConfig, ChromaConfig, OverlayConfig  # noqa: E402
from broadcaster.show.products import Product  # noqa: E402
from broadcaster.voice.speech_track import SpeechFrame, Utterance  # noqa: E402
from tests.conftest import grace_hopper  # noqa: E402
from tests.test_chroma import green_screen, subject_mask  # noqa: E402

SIZE = (1280, 720)
FPS = 25
OFF = OverlayConfig(captions={"enabled": False}, card={"enabled": False})  # type: ignore[arg-type]
SENTENCES = [
    "大家好，欢迎来到直播间！今天给大家带来的是正宗的西湖龙井。",
    "明前采摘，一芽一叶，香气清高，滋味鲜爽，Hello everyone and welcome!",
]


def timed(compositor: Compositor, frames: int, speech: bool) -> dict[str, float]:
    """Mean and p95 wall ms, and mean thread-CPU ms, per frame over ``frames`` ticks (after a warm-up)."""
    utterances = [Utterance(i, 48000 * 4, text=s) for i, s in enumerate(SENTENCES)]
    for k in range(10):
        compositor.frame(k / FPS, SpeechFrame(utterances[0], k) if speech else None)
    walls: list[float] = []
    cpu0 = time.thread_time()
    for k in range(10, 10 + frames):
        said = SpeechFrame(utterances[(k // 100) % 2], k % 100) if speech else None
        began = time.perf_counter()
        compositor.frame(k / FPS, said)
        walls.append((time.perf_counter() - began) * 1000)
    cpu = (time.thread_time() - cpu0) * 1000 / frames
    walls.sort()
    return {"mean": statistics.fmean(walls), "p95": walls[int(len(walls) * 0.95)], "cpu": cpu}


def encode_background(path: Path, seconds: float) -> None:
    """A moving 720p test pattern (gradient sweep), H.264."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
        xs = np.linspace(0, 255, SIZE[0], dtype=np.float32)[None, :]
        ys = np.linspace(0, 255, SIZE[1], dtype=np.float32)[:, None]
        for k in range(int(seconds * FPS)):
            image = np.stack([(xs + 6 * k) % 256 + ys * 0, ys + xs * 0, (ys + 3 * k) % 256 + xs * 0], axis=2)
            frame = av.VideoFrame.from_ndarray(image.astype(np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=250)
    args = parser.parse_args()
    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_avatar(grace_hopper(), "sample", root)
        sample = root / "sample"
        photo = cv2.imread(str(sample / "photo.png"), cv2.IMREAD_COLOR)
        shutil.copytree(sample, root / "screen", ignore=shutil.ignore_patterns(".cache", "photo.png"))
        cv2.imwrite(str(root / "screen" / "photo.png"), green_screen(photo, subject_mask(photo.shape[:2])))
        avatar = load_avatar(root, "sample")
        colour = make_background(SIZE, "#204060", Path())

        def compositor(overlay: OverlayConfig = OFF) -> Compositor:
            return Compositor(
                SIZE, colour, [avatar], AvatarConfig(), ClassicLipSync(ClassicConfig()), overlay=overlay
            )

        plain = timed(compositor(), args.frames, speech=False)
        captioned = compositor(OverlayConfig(card={"enabled": False}))  # type: ignore[arg-type]
        began = time.perf_counter()
        captioned.captions.overlay("一个新句子：第一次出现的字幕要画一次，然后缓存。")
        result["caption_render_ms"] = (time.perf_counter() - began) * 1000
        caption = timed(captioned, args.frames, speech=True)
        carded = compositor(OverlayConfig())
        carded.show_card(Product(id="tea", name="西湖龙井 明前特级 250g", price=99.9, original_price=129))
        carded.frame(0.0)
        began = time.perf_counter()
        carded.cards.show(Product(id="cup", name="品茗杯", price=39, original_price=59))
        carded.frame(0.04)
        result["card_first_frame_ms"] = (time.perf_counter() - began) * 1000
        card = timed(carded, args.frames, speech=True)

        clip = root / "background.mp4"
        encode_background(clip, 8.0)
        began = time.perf_counter()
        backdrop = make_backdrop(SIZE, str(clip), root, FPS, BackgroundVideoConfig())
        result["video_decode_s"] = time.perf_counter() - began
        result["video_mb"] = backdrop.frames.nbytes / 2**20
        began = time.perf_counter()
        keyed = Compositor(
            SIZE,
            backdrop,
            [load_avatar(root, "screen")],
            AvatarConfig(),
            ClassicLipSync(ClassicConfig()),
            overlay=OFF,
            chroma=ChromaConfig(key="green"),
        )
        result["chroma_setup_s"] = time.perf_counter() - began
        video = timed(
            Compositor(
                SIZE, backdrop, [avatar], AvatarConfig(), ClassicLipSync(ClassicConfig()), overlay=OFF
            ),
            args.frames,
            speech=False,
        )
        chroma = timed(keyed, args.frames, speech=False)
    for name, figures in (
        ("plain", plain),
        ("caption", caption),
        ("card", card),
        ("video", video),
        ("chroma_video", chroma),
    ):
        result[f"frame_ms_{name}"] = figures["mean"]
        result[f"frame_ms_{name}_p95"] = figures["p95"]
        result[f"frame_cpu_ms_{name}"] = figures["cpu"]
    for name, value in result.items():
        print(f"{name:28s} {value:8.2f}")
    print("RESULT " + json.dumps({k: round(v, 3) for k, v in result.items()}))


if __name__ == "__main__":
    main()

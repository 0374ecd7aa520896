"""Benchmark: sustained CPU cost of the always-on program (idle avatar, render + encode + one RTMP push).

Runs the real command line against a real nginx-rtmp on loopback, twice per resolution (a short and a
long run), and takes the difference, so start-up cost cancels and what remains is the steady state:
render, encode, mux and the relay child, GIL contention included. Also times render and encode alone,
in process. Prints RESULT {json} on the last line.

Usage: python bench/program.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from broadcaster.config import AvatarConfig, ClassicConfig, EncoderConfig  # noqa: E402
from broadcaster.face.avatar import load_avatar  # noqa: E402
from broadcaster.face.builder import build_avatar  # noqa: E402
from broadcaster.face.compositor import Compositor, make_background  # noqa: E402
from broadcaster.face.lipsync.classic import ClassicLipSync  # noqa: E402
from broadcaster.stream.clock import Timing  # noqa: E402
from broadcaster.stream.encoder import Encoder  # noqa: E402
from broadcaster.stream.tick import Tick  # noqa: E402
from tests.conftest import NginxRtmp, grace_hopper  # noqa: E402
from tests.run_cli import command  # noqa: E402

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_program(avatar_root: Path, url: str, resolution: str, seconds: float) -> tuple[float, float]:
    """CPU seconds and peak RSS (MB, whole process tree) of one `run --for seconds`."""
    before = children_cpu()
    process = subprocess.Popen(
        command(
            "run",
            "--for",
            str(seconds),
            "--output",
            url,
            "--set",
            f'avatar.dir="{avatar_root}"',
            "--set",
            "outputs=[]",
            "--set",
            f'program.resolution="{resolution}"',
            "--set",
            'log.level="WARNING"',
        ),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        proc = psutil.Process(process.pid)
        while not stop.wait(0.25):
            try:
                tree = [proc, *proc.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree) / 2**20)
            except psutil.Error:
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = process.communicate()
    stop.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"run failed: {err[-2000:]}")
    return children_cpu() - before, peak


def in_process(avatar_root: Path, resolution: str, frames: int = 200) -> dict[str, float]:
    """Milliseconds of CPU per frame for rendering and for encoding, each alone."""
    size = SIZES[resolution]
    compositor = Compositor(
        size,
        make_background(size, "#1f2430", ROOT),
        [load_avatar(avatar_root, "sample")],
        AvatarConfig(),
        ClassicLipSync(ClassicConfig()),
    )
    started = time.thread_time()
    for k in range(frames):
        compositor.frame(k / 25)
    render_ms = (time.thread_time() - started) / frames * 1000
    pictures = [compositor.frame(k / 25) for k in range(frames)]
    encoder = Encoder(Timing(25), size, EncoderConfig())
    audio = np.zeros((1920, 2), np.int16)
    started = time.thread_time()
    for k, picture in enumerate(pictures):
        encoder._encode(Tick(k, picture, audio))
    encode_ms = (time.thread_time() - started) / frames * 1000
    return {"render_ms": round(render_ms, 2), "encode_ms": round(encode_ms, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    result: dict[str, object] = {"seconds": args.seconds, "fps": 25, "cores": psutil.cpu_count()}
    peak_rss = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        avatar_root = Path(tmp) / "avatars"
        build_avatar(grace_hopper(), "sample", avatar_root)
        server = NginxRtmp(Path(tmp) / "nginx")
        server.start()
        try:
            for resolution in SIZES:
                short_cpu, _ = run_program(avatar_root, server.url, resolution, 2.0)
                long_cpu, rss = run_program(avatar_root, server.url, resolution, 2.0 + args.seconds)
                steady = long_cpu - short_cpu
                frames = args.seconds * 25
                result[f"cpu_share_{resolution}25"] = round(steady / args.seconds, 3)
                result[f"cpu_fps_{resolution}25"] = round(frames / steady, 1)
                result[f"peak_rss_mb_{resolution}25"] = round(rss, 1)
                result[f"in_process_{resolution}"] = in_process(avatar_root, resolution)
                peak_rss = max(peak_rss, rss)
                print(
                    resolution, json.dumps({k: v for k, v in result.items() if resolution in k}), flush=True
                )
        finally:
            server.kill()
    result["peak_rss_mb"] = round(peak_rss, 1)
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()

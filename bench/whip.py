"""Glass-to-glass latency of the WHIP push, and what the WHIP output costs.

Runs the real program (720p25 by default, pictures that carry their tick number as a row of blocks),
the WebRTC encode and a WHIP output in this process, pushing on loopback to a WHIP endpoint (aiohttp +
aiortc, the one the tests use) that decodes every frame and reads its tick number back. For each
decoded frame:

- ``g2g``: from the moment the render loop made the tick (its picture drawn) to its decode at the
  endpoint. This includes the program's lead (``--lead-ms``): ticks are made that far ahead and sent
  when due, so it is the lead plus what the push adds;
- ``after_due``: from the moment the tick was due on the wall clock to its decode: what the push adds.

The CPU cost is the CPU time of the WebRTC encode thread and of the RTC loop thread (packetising,
encrypting and pacing), per second of wall time (1.0 = one core).

Then it drops the session at the endpoint (``--drops`` times, no DELETE, as a lost connection) and
times each recovery until frames decode again (``republish_s``; the backoff doubles while sessions
live under 10 s).

Prints ``RESULT {json}`` last. Usage: ``python bench/whip.py [--seconds 20] [--lead-ms 120]
[--resolution 720p] [--bitrate-kbps 2000] [--drops 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import percentile  # noqa: E402
from broadcaster.config import RESOLUTIONS  # noqa: E402
from broadcaster.stream.outputs.whip import WhipOutput  # noqa: E402
from broadcaster.stream.rtc.peer import use_host_addresses  # noqa: E402
from broadcaster.stream.rtc.settings import RtcConfig, WhipOutputConfig  # noqa: E402
from tests.rtc_rig import RtcRig, read_stamp  # noqa: E402
from tests.whip_endpoint import WhipEndpoint, serve_whip  # noqa: E402


def thread_cpu_s(thread: threading.Thread) -> float:
    """User + system CPU seconds of one thread (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks


async def measure(args: argparse.Namespace) -> dict[str, object]:
    size = RESOLUTIONS[args.resolution]
    decoded: list[tuple[int, float]] = []

    def on_video(frame: av.VideoFrame, at: float) -> None:
        luma = frame.to_ndarray(format="gray")
        decoded.append((read_stamp(luma, frame.width / size[0]), at))

    use_host_addresses(["127.0.0.1"])
    cfg = RtcConfig(host_addresses=["127.0.0.1"], video_bitrate_kbps=args.bitrate_kbps)
    async with serve_whip(WhipEndpoint(on_video=on_video)) as endpoint:
        with RtcRig(size, cfg, lead_s=args.lead_ms / 1000) as rig:
            output = WhipOutput(
                WhipOutputConfig(type="whip", url=endpoint.url), rig.runtime, rig.encoder, rig.clock
            )
            output.start()
            for _ in range(600):  # up to 30 s to connect
                if output.stats.state == "live":
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(2.0)  # settle: first keyframe, jitter buffers
            threads = {t.name: t for t in threading.enumerate() if t.name in ("rtc", "rtc-encoder")}
            cpu0 = {n: thread_cpu_s(t) for n, t in threads.items()}
            start, first = time.monotonic(), len(decoded)
            encoded0, encode_s0 = rig.encoder.stats.ticks, rig.encoder.stats.encode_s
            await asyncio.sleep(args.seconds)
            wall = time.monotonic() - start
            cpu = {n: thread_cpu_s(t) - cpu0[n] for n, t in threads.items()}
            window = decoded[first:]
            encoded = rig.encoder.stats.ticks - encoded0
            encode_ms = (rig.encoder.stats.encode_s - encode_s0) * 1000 / max(1, encoded)
            created, clock = rig.frames.created, rig.clock
            g2g = [(at - created[k]) * 1000 for k, at in window if k in created]
            after_due = [(at - clock.due(k)) * 1000 for k, at in window]
            republish = [await dropped_and_back(endpoint) for _ in range(args.drops)]
            await asyncio.to_thread(output.close, 10)
    expected = round(wall * 25)
    return {
        "resolution": args.resolution,
        "lead_ms": args.lead_ms,
        "bitrate_kbps": args.bitrate_kbps,
        "seconds": round(wall, 1),
        "frames_decoded": len(window),
        "frames_expected": expected,
        "g2g_p50_ms": percentile(g2g, 50),
        "g2g_p95_ms": percentile(g2g, 95),
        "g2g_max_ms": percentile(g2g, 100),
        "after_due_p50_ms": percentile(after_due, 50),
        "after_due_p95_ms": percentile(after_due, 95),
        "whip_cpu_share": round(sum(cpu.values()) / wall, 3),
        "rtc_encode_cpu_share": round(cpu.get("rtc-encoder", 0.0) / wall, 3),
        "rtc_loop_cpu_share": round(cpu.get("rtc", 0.0) / wall, 3),
        "rtc_encode_ms_per_tick": round(encode_ms, 2),
        "output_dropped": output.stats.dropped,
        # the endpoint dropped the session (no DELETE), one drop after another: until frames flow again
        "republish_s": republish,
    }


async def dropped_and_back(endpoint: WhipEndpoint) -> float:
    """Drop every session at the endpoint; the seconds until a new session decodes a frame."""
    sessions = len(endpoint.sessions)
    started = time.monotonic()
    await endpoint.drop()
    for _ in range(1200):  # 60 s at most
        if len(endpoint.sessions) > sessions and endpoint.latest.video_frames:
            break
        await asyncio.sleep(0.05)
    return round(time.monotonic() - started, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--lead-ms", type=int, default=120)
    parser.add_argument("--resolution", choices=sorted(RESOLUTIONS), default="720p")
    parser.add_argument("--bitrate-kbps", type=int, default=2000)
    parser.add_argument("--drops", type=int, default=3, help="sessions dropped at the end, one after another")
    result = asyncio.run(measure(parser.parse_args()))
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()

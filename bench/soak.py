"""Soak benchmark: the whole broadcaster for ``--minutes N``, or 24 h of its clock in seconds.

Real mode runs ``python -m broadcaster run`` as a user does (the shipped config.toml, overridden with
``--set``): it pushes RTMP to a real nginx-rtmp started here (which records what it receives) and
records an MP4; chat arrives in bursts from a real JSON relay WebSocket (DouyinBarrageGrab frames), is
triaged, logged and answered by the bundled local LLM (llama.cpp + SmolLM2) and the local TTS (espeak);
a ``[[schedule]]`` fires scripts and lines, and a moderator console on the control WebSocket queues
scripts and lines. Every few seconds the process is sampled (RSS, fds, threads; /metrics for the
ticks, lateness and reconnects). At the end it gets SIGTERM and must exit 0; its summary gives the
lateness and the outputs' reconnects, and the recordings are decoded to measure where the audio ends
against the video (``av_offset_samples``: 0 on one program clock).

Accelerated mode (``--simulate-hours H``, see ``bench/soak_sim.py``) drives the real clock, program
loop, speech track, encoder audio framing, scheduler and chat log through H hours of virtual time.

Prints a report and ``RESULT {json}`` last. Usage:
``python bench/soak.py --minutes 30`` or ``python bench/soak.py --simulate-hours 24``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.soak_media import nginx_available, recording_offset  # noqa: E402
from bench.soak_watch import Watch, growth_per_hour, http_get, tick_rate  # noqa: E402
from tests.conftest import NginxRtmp, free_port  # noqa: E402
from tests.json_relay_server import JsonRelay, douyin_chat_frames  # noqa: E402

FPS = 25
SAMPLE_RATE = 48000
# What the soak's schedule plays (also the accelerated mode's): a line every 2 minutes, a script
# segment every 10 minutes.
SCHEDULE = (
    '[{name="follow", say="喜欢主播的朋友点个关注，不迷路。", every_s=120},'
    ' {name="tea", script="longjing-intro", segments=1, cron="*/10 * * * *"}]'
)
CONSOLE_LINES = ["谢谢大家一直陪着我们。", "下单的朋友记得看一下优惠券。", "我们马上回到今天的好茶。"]
SCRIPTS = ["longjing-intro"]  # Chinese, as the default voice (espeak cmn) speaks it


@dataclass
class Pace:
    """How often the soak does each thing (scaled down for short runs)."""

    sample_s: float
    burst_s: float
    burst_size: int
    console_s: float


def pace_for(minutes: float) -> Pace:
    """Bursts every 20 s and a console command a minute on a long run; denser on a short one."""
    if minutes >= 5:
        return Pace(sample_s=5.0, burst_s=20.0, burst_size=40, console_s=60.0)
    return Pace(sample_s=2.0, burst_s=6.0, burst_size=20, console_s=8.0)


@dataclass
class Activity:
    """What the soak sent: comments through the relay, console commands and their errors."""

    bursts: int = 0
    comments: int = 0
    commands: int = 0
    command_errors: list[str] = field(default_factory=list)


def broadcaster_command(work: Path, port: int, relay_url: str, rtmp_url: str, mp4: Path) -> list[str]:
    """``broadcaster run`` with the shipped config, the soak's feed, schedule, store and outputs."""
    sets = [
        f"control.port={port}",
        f"store.path={json.dumps(str(work / 'show.sqlite3'))}",
        f"voice.cache.dir={json.dumps(str(work / 'tts'))}",
        "outputs=[]",  # the config's recorder writes under recordings/: the soak records in its folder
        f'feeds=[{{type="json", url="{relay_url}", preset="douyin_barrage_grab"}}]',
        f"schedule={SCHEDULE}",
        "llm.local_threads=1",  # a shared two-core machine: the model takes one...
        # ...and reads the system prompt (persona, product facts) slowly when the machine is busy: on a
        # loaded 2-core box the default 10 s first-token limit abandoned every reply
        "llm.first_token_timeout_s=30",
        "program.status_interval_s=30",
    ]
    args = [sys.executable, "-m", "broadcaster", "run", "--config", str(ROOT / "config.toml")]
    for item in sets:
        args += ["--set", item]
    return [*args, "--output", rtmp_url, "--output", str(mp4)]


async def wait_healthy(port: int, process: subprocess.Popen[bytes], within: float) -> None:
    """Wait until /healthz answers (the control server is up), or fail if the process ended."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"broadcaster exited with {process.returncode} before its console was up")
        with contextlib.suppress(OSError):
            status, _ = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/healthz", 2.0)
            if status in (200, 503):
                return
        await asyncio.sleep(0.25)
    raise TimeoutError("the control server did not answer /healthz")


async def chat_bursts(relay: JsonRelay, pace: Pace, activity: Activity) -> None:
    """A burst of fresh comments through the relay every ``burst_s``."""
    for n in itertools.count():
        await relay.wait_for(lambda: relay.clients > 0, timeout=60)
        frames = douyin_chat_frames(pace.burst_size, first_id=7_300_000_000_000_000_000 + n * 10_000, seed=n)
        await relay.push(*frames)
        activity.bursts += 1
        activity.comments += len(frames)
        await asyncio.sleep(pace.burst_s)


async def console(ws: ClientConnection, pace: Pace, activity: Activity) -> None:
    """A moderator: every ``console_s``, a script run or a line, alternately; every reply read."""
    ids = itertools.count(1)
    for n in itertools.count():
        await asyncio.sleep(pace.console_s)
        if n % 2 == 0:
            request: dict[str, Any] = {"cmd": "script.start", "script": SCRIPTS[(n // 2) % len(SCRIPTS)]}
        else:
            request = {"cmd": "say", "text": CONSOLE_LINES[(n // 2) % len(CONSOLE_LINES)], "mode": "next"}
        request_id = next(ids)
        await ws.send(json.dumps({"id": request_id, **request}))
        activity.commands += 1
        async with asyncio.timeout(30):
            while True:
                message = json.loads(await ws.recv())
                if message.get("id") == request_id:
                    break
        if not message.get("ok"):
            activity.command_errors.append(f"{request['cmd']}: {message.get('error')}")


def read_summary(log_text: str) -> dict[str, Any]:
    """The ``summary {json}`` line the run logs as it exits."""
    for line in reversed(log_text.splitlines()):
        if " summary {" in line:
            return dict(json.loads(line.split(" summary ", 1)[1]))
    return {}


def expected_fires(seconds: float) -> int:
    """Runs the soak's schedule should fire in ``seconds`` (every 120 s after start; each 10th minute)."""
    return int(seconds // 120) + int(seconds // 600)  # the cron's share is within one of this


async def real_run(minutes: float, keep: bool) -> dict[str, Any]:
    """Run the whole system for ``minutes``; the figures."""
    if not nginx_available():
        raise SystemExit("nginx with the RTMP module is needed (apt install nginx-light libnginx-mod-rtmp)")
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    pace = pace_for(minutes)
    nginx = NginxRtmp(work / "nginx")
    nginx.start()
    activity = Activity()
    port = free_port()
    token = secrets.token_urlsafe(24)
    mp4 = work / "program.mp4"
    log_path = work / "broadcaster.log"
    result: dict[str, Any] = {"mode": "real", "minutes": minutes, "workdir": str(work)}
    tasks: list[asyncio.Task[None]] = []
    try:
        async with JsonRelay() as relay:
            env = {**os.environ, "BROADCASTER_TOKEN": token}
            with log_path.open("wb") as log:
                process = subprocess.Popen(  # noqa: ASYNC220 (it runs for the whole soak: no wait here)
                    broadcaster_command(work, port, relay.url, nginx.url, mp4),
                    cwd=ROOT,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            try:
                started = time.monotonic()
                await wait_healthy(port, process, 180)
                result["startup_s"] = round(time.monotonic() - started, 1)
                watch = Watch(process.pid, f"http://127.0.0.1:{port}/metrics", token, pace.sample_s)
                ws = await connect(f"ws://127.0.0.1:{port}/ws?token={token}", max_size=None)
                tasks = [
                    asyncio.create_task(watch.run()),
                    asyncio.create_task(chat_bursts(relay, pace, activity)),
                    asyncio.create_task(console(ws, pace, activity)),
                ]
                ran = time.monotonic()
                deadline = ran + minutes * 60
                while time.monotonic() < deadline:
                    if process.poll() is not None:
                        raise RuntimeError(f"broadcaster exited with {process.returncode} during the soak")
                    if any(t.done() for t in tasks):
                        for t in tasks:
                            if t.done():
                                t.result()  # a helper died: say why
                    await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await asyncio.to_thread(watch.take)  # the last look before the stop
                await ws.close()
                result["ran_s"] = round(time.monotonic() - ran, 1)
                process.send_signal(signal.SIGTERM)
                stopping = time.monotonic()
                code = await asyncio.to_thread(process.wait, 120)
                result["exit_code"] = code
                result["shutdown_s"] = round(time.monotonic() - stopping, 1)
            finally:
                for t in tasks:
                    t.cancel()
                if process.poll() is None:  # the soak failed or was interrupted: stop it as a user would
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(60)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
    finally:
        nginx.stop()
    log_text = log_path.read_text(errors="replace")
    result.update(figures(log_text, watch, activity, nginx, mp4))
    if not keep and result.get("exit_code") == 0:
        shutil.rmtree(work, ignore_errors=True)
    return result


def figures(log_text: str, watch: Watch, activity: Activity, nginx: NginxRtmp, mp4: Path) -> dict[str, Any]:
    """The soak's figures from the summary, the samples and the recordings."""
    summary = read_summary(log_text)
    samples = watch.samples
    first, last = samples[0], samples[-1]
    outputs = summary.get("outputs", [])
    speech = summary.get("speech", {})
    encoder = summary.get("encoder", {})
    host = summary.get("host", {})
    chat = summary.get("chat", {})
    recorded = recording_offset(mp4, FPS)
    flvs = nginx.recordings()
    rtmp = [recording_offset(p, FPS, decode_video=False).as_dict() for p in flvs]
    fires = len(re.findall(r"schedule\[\d+\] .* fires", log_text))
    out: dict[str, Any] = {
        "ticks": summary.get("ticks"),
        **tick_rate(samples, FPS),
        "av_offset_samples": recorded.offset_samples,
        # the recording's audio against the program's own tick count: ticks x S samples, exactly
        "av_offset_vs_ticks_samples": (recorded.audio_end - summary["ticks"] * SAMPLE_RATE // FPS)
        if summary
        else None,
        # FLV stamps whole milliseconds and gives every AAC packet 21 ms, the short last one too: its
        # ends agree only to within one AAC frame (1024 samples) plus a millisecond
        "av_offset_rtmp_record_samples": [r["offset_samples"] for r in rtmp],
        "rtmp_record_within_one_aac_frame": all(abs(r["offset_samples"]) <= 1024 + 48 for r in rtmp),
        "rtmp_record_frames": [r["video_frames"] for r in rtmp],
        "rss_start_mb": round(first.rss_mb, 1),
        "rss_end_mb": round(last.rss_mb, 1),
        "rss_growth_mb_per_h": growth_per_hour(samples),
        "children_rss_start_mb": round(first.children_rss_mb, 1),
        "children_rss_end_mb": round(last.children_rss_mb, 1),
        "children_rss_growth_mb_per_h": growth_per_hour(samples, "children_rss_mb"),
        "fds_start": first.fds,
        "fds_end": last.fds,
        "fds_max": max(s.fds for s in samples),
        "threads_start": first.threads,
        "threads_end": last.threads,
        "threads_max": max(s.threads for s in samples),
        "reconnects": sum(int(o.get("reconnects", 0)) for o in outputs),
        "output_errors": sum(int(o.get("errors", 0)) for o in outputs),
        "output_dropped": sum(int(o.get("dropped", 0)) for o in outputs),
        "lateness_p99_ms": summary.get("late_p99_ms"),
        "lateness_p50_ms": summary.get("late_p50_ms"),
        "lateness_max_ms": summary.get("late_max_ms"),
        "lateness_p99_ms_live_max": max(
            (s.late_p99_ms for s in samples if s.late_p99_ms is not None), default=None
        ),
        "repeats": summary.get("repeats"),
        "resyncs": summary.get("resyncs"),
        "render_errors": summary.get("render_errors"),
        # every tick the program made was encoded or dropped (and counted) by the encoder
        "ticks_unaccounted": (summary["ticks"] - encoder["ticks"] - encoder["dropped"]) if encoder else None,
        # a dropped tick is a frame missing from the recording (its audio is filled with silence)
        "recording_frames_missing": (summary["ticks"] - recorded.video_frames) if summary else None,
        "encoder_ticks": encoder.get("ticks"),
        "encoder_dropped": encoder.get("dropped"),
        "speech_samples": speech.get("samples"),
        "replies": host.get("replies"),
        "replies_failed": host.get("failed"),
        "llm": summary.get("llm"),
        "chat_queued_end": chat.get("queued"),
        "comments_sent": activity.comments,
        "bursts": activity.bursts,
        "console_commands": activity.commands,
        "console_errors": activity.command_errors,
        "scheduled_fired": fires,
        "scheduled_expected_about": expected_fires(samples[-1].t),
        "metric_failures": watch.metric_failures,
        "samples": len(samples),
        "recording": recorded.as_dict(),
        "rtmp_records": rtmp,
        "log_errors": sum(" ERROR " in line for line in log_text.splitlines()),
        "log_warnings": sum(" WARNING " in line for line in log_text.splitlines()),
    }
    return out


def report(result: dict[str, Any]) -> None:
    """The human-readable lines before the RESULT."""
    if result["mode"] == "real":
        print(f"soak: {result['minutes']} min of the whole system (workdir {result['workdir']})")
        print(
            f"  ticks {result['ticks']}; measured {result.get('ticks_measured')} in "
            f"{result.get('measured_over_s')} s vs {result.get('ticks_expected')} expected "
            f"(ratio {result.get('tick_rate_ratio')})"
        )
        rec = result["recording"]
        print(
            f"  A/V at the end: recording {result['av_offset_samples']} samples "
            f"({rec['video_frames']} frames, {rec['audio_end']} samples; decoder padding "
            f"{rec['padding_samples']}), RTMP record {result['av_offset_rtmp_record_samples']}"
        )
        print(
            f"  RSS {result['rss_start_mb']} -> {result['rss_end_mb']} MB "
            f"({result['rss_growth_mb_per_h']} MB/h over the second half); children "
            f"{result['children_rss_start_mb']} -> {result['children_rss_end_mb']} MB"
        )
        print(
            f"  fds {result['fds_start']} -> {result['fds_end']} (max {result['fds_max']}), threads "
            f"{result['threads_start']} -> {result['threads_end']} (max {result['threads_max']})"
        )
        print(
            f"  lateness p50/p99/max {result['lateness_p50_ms']}/{result['lateness_p99_ms']}/"
            f"{result['lateness_max_ms']} ms, repeats {result['repeats']}, resyncs {result['resyncs']}"
        )
        print(
            f"  outputs: reconnects {result['reconnects']}, errors {result['output_errors']}, dropped "
            f"{result['output_dropped']}; exit code {result.get('exit_code')} after "
            f"{result.get('shutdown_s')} s"
        )
        print(
            f"  chat: {result['comments_sent']} comments in {result['bursts']} bursts, "
            f"{result['replies']} replies; console {result['console_commands']} commands "
            f"({len(result['console_errors'])} errors); schedule fired {result['scheduled_fired']} "
            f"(~{result['scheduled_expected_about']} expected)"
        )
    else:
        from bench.soak_sim import report_simulation  # noqa: PLC0415

        report_simulation(result)


VERBOSE = ("workdir", "recording", "rtmp_records", "llm", "console_errors", "hourly")  # the report shows them


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--minutes", type=float, help="run the whole system this long, in real time")
    mode.add_argument("--simulate-hours", type=float, help="drive this many hours of virtual time")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, recordings)")
    args = parser.parse_args()
    if args.minutes is not None:
        result = asyncio.run(real_run(args.minutes, args.keep))
    else:
        from bench.soak_sim import simulate  # noqa: PLC0415

        result = simulate(args.simulate_hours, SCHEDULE)
    report(result)
    print("RESULT " + json.dumps({k: v for k, v in result.items() if k not in VERBOSE}))


if __name__ == "__main__":
    main()

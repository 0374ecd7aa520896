"""Fuzz targets for every parser that faces the network (and the config), run with atheris.

Targets: ``bilibili`` (danmaku packets: lengths, zlib and brotli bodies, nesting, the message cmds),
``twitch`` (IRC lines and the feed's frames), ``json`` (relay frames through every preset and a
custom mapping), ``control`` (control API requests, the ``/mic`` session's text messages and
``mic.start``) and ``config`` (a ``config.toml`` plus ``--set`` overrides through ``load_config``).

Each input may raise only what its parser's contract allows (GarbageFrame, FeedError for a refusal,
ProtocolError, ValidationError, ConfigError); anything else is a crash. The feeds are also held to
their promise that one bad line or message costs only itself: a good line (or message) sent after
the fuzzed one must still come out. Memory is bounded by libFuzzer's ``-rss_limit_mb``: a bomb that
blows past it is a crash too.

atheris.Fuzz() never returns, so each target runs in a child process (this script with ``--child``),
instrumented for coverage (``atheris.instrument_imports`` over ``danmaku`` and ``broadcaster``), from
a seed corpus built here out of the frames the feed tests use. The parent reads each child's final
libFuzzer stats and its peak RSS (``wait4``), and prints one line per target and the figures as
``RESULT {json}``. A crash's input is kept (its path is printed).

Usage: python bench/fuzz.py --target bilibili --runs 100000
       python bench/fuzz.py --all --runs 20000 [--seconds 120] [--max-len 16384]
"""

# the parsers are imported inside functions on purpose: only after atheris has instrumented them
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = ("bilibili", "twitch", "json", "control", "config")
#: the modules under test, imported (with all of danmaku and broadcaster they pull in) instrumented
PARSERS = (
    "danmaku.feeds.bilibili",
    "danmaku.feeds.twitch",
    "danmaku.feeds.json_relay",
    "danmaku.config",
    "broadcaster.control.protocol",
    "broadcaster.control.mic_session",
    "broadcaster.config",
)
RSS_LIMIT_MB = 2048
INPUT_TIMEOUT_S = 20
OneInput = Callable[[bytes], None]


async def _sink(events: Sequence[Any]) -> None:
    """A feed's sink: the targets call ``handle`` directly, so nothing arrives here."""


# -- the targets: each returns its one-input function and its seeds (imports instrumented first) ------


def bilibili_target() -> tuple[OneInput, list[bytes]]:
    """A frame; first byte 1 to 4: the rest is a message in zlib, brotli or zlib packets, or plain."""
    import brotli

    from danmaku.feeds import bilibili_packet as wire
    from danmaku.feeds.base import GarbageFrame
    from danmaku.feeds.bilibili import BilibiliFeed, BilibiliFeedConfig
    from tests.bilibili_server import compact, danmu, danmu_frame, send_gift

    feed = BilibiliFeed(BilibiliFeedConfig(room_id=1), _sink)

    def one(data: bytes) -> None:
        mode, body = data[:1], data[1:]
        if mode == b"\x01":
            frame = wire.encode(wire.OP_MESSAGE, wire.encode(wire.OP_MESSAGE, body, wire.VER_JSON), 2)
        elif mode == b"\x02":
            frame = wire.HEADER.pack(16 + len(body), 16, wire.VER_BROTLI, 5, 1) + brotli.compress(body)
        elif mode == b"\x03":
            frame = wire.HEADER.pack(16 + len(body), 16, wire.VER_ZLIB, 5, 1) + zlib.compress(body)
        elif mode == b"\x04":
            frame = wire.encode(wire.OP_MESSAGE, body, wire.VER_JSON)
        else:
            frame = data
        try:
            packets: list[Any] | None = wire.decode(frame)
        except GarbageFrame:
            packets = None
        if packets is not None and len(packets) > wire.MAX_PACKETS:
            raise AssertionError(f"{len(packets)} packets from one frame")
        try:
            feed.handle(frame)
        except GarbageFrame:
            if packets is not None:
                raise AssertionError("decode read the frame, handle called it garbage") from None

    seeds = [
        danmu_frame(3),
        danmu_frame(2, ver=wire.VER_ZLIB),
        danmu_frame(2, ver=wire.VER_JSON),
        wire.encode_messages([compact(send_gift(1))], wire.VER_BROTLI),
        wire.encode(wire.OP_HEARTBEAT_REPLY, (1234).to_bytes(4, "big")),
        wire.encode(wire.OP_AUTH_REPLY, b'{"code":0}'),
        b"\x04" + compact(danmu(7)).encode(),
        b"\x04" + compact(send_gift(2)).encode(),
        b"\x01" + compact(danmu(8, text="你好")).encode(),
        b"\x03" + wire.encode(wire.OP_MESSAGE, b'{"cmd":"INTERACT_WORD","data":{"msg_type":1,"uid":5}}', 0),
        b"\x02" + danmu_frame(1, ver=wire.VER_JSON),
    ]
    return one, seeds


def twitch_target() -> tuple[OneInput, list[bytes]]:
    """A frame as bytes and as text; then as text followed by a good line that must still count."""
    from danmaku.feeds import irc
    from danmaku.feeds.base import FeedError, GarbageFrame
    from danmaku.feeds.twitch import TwitchFeed, TwitchFeedConfig
    from tests import twitch_server as ts

    feed = TwitchFeed(TwitchFeedConfig(channel="xyz"), _sink)
    good = "@id=fuzz-good;tmi-sent-ts=1 :good!good@good.tmi.twitch.tv PRIVMSG #xyz :still here"

    def one(data: bytes) -> None:
        feed.reset()  # the PONGs it queued
        text = data.decode("utf-8", "replace")  # websockets hands over text frames as valid UTF-8
        for line in irc.lines(text):
            with contextlib.suppress(irc.MalformedLine):
                irc.parse(line)
        with contextlib.suppress(GarbageFrame, FeedError):
            feed.handle(data)
        try:
            events = feed.handle(f"{text}\r\n{good}")
        except FeedError:  # a NOTICE refusing the login or the channel ends the session: its contract
            return
        if not any(event.id == "fuzz-good" for event in events):
            raise AssertionError("a bad line cost the good line after it")

    lines = [value for name, value in vars(ts).items() if name.isupper() and isinstance(value, str)]
    seeds = [line.encode() for line in lines if " " in line]
    seeds += [b"PING :tmi.twitch.tv\r\n", b":tmi.twitch.tv RECONNECT\r\n", "\r\n".join(lines[:4]).encode()]
    return one, seeds


def json_target() -> tuple[OneInput, list[bytes]]:
    """A frame through each preset and a custom mapping; a batch's good message must survive."""
    from danmaku.feeds.base import GarbageFrame
    from danmaku.feeds.json_presets import JsonMapping, resolve
    from danmaku.feeds.json_relay import JsonReader
    from tests import json_relay_server as jr

    custom = JsonMapping(
        data="payload",
        kind="t|type",
        kinds={"1": "chat", "2": "gift", "3": "superchat", "4": "ignore"},
        default_kind="chat",
        id="id",
        ts="when",
        ts_unit="s",
        user_id="u[0]",
        user_name="u[1]|name",
        user_level="u.2",
        roles={"moderator": "u[3]"},
        text="payload.text",
        gift_name="payload.g[0]",
        gift_count="payload.g[1]",
        gift_value="payload.g[2]",
        count_mode="increment",
        combo_group="payload.combo",
        value_scale=0.01,
    )
    readers = [
        JsonReader(*resolve("plain", "", 0.1, None)),
        JsonReader(*resolve("douyin_barrage_grab", "", 0.1, None)),
        JsonReader(*resolve("barrage_fly", "bilibili", 0.1, None)),
        JsonReader(*resolve("custom", "", 0.1, custom), combo_memory=64),
    ]
    plain = readers[0]
    good = {"user": "ok", "text": "still here", "id": "fuzz-good"}

    def one(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        for reader in readers:
            for frame in (data, text):
                with contextlib.suppress(GarbageFrame):
                    reader.read(frame)
        try:
            doc = json.loads(text)
            batch = json.dumps([doc, good])
        except (ValueError, RecursionError):
            return
        events, _ = plain.read(batch)
        if not any(event.id == "fuzz-good" for event in events):
            raise AssertionError("a bad message cost the good one after it in a batch")

    user = jr.douyin_user(7_000_001, "观众", fans_level=3)
    seeds = [
        jr.douyin_chat(1, user, "你好"),
        jr.douyin_gift(2, user, repeat=3, increment=2, diamonds=10),
        jr.barrage_fly_danmu(1, "a", "hi"),
        jr.barrage_fly_gift("1", "a", "flower", 2, 100),
        jr.barrage_fly_superchat("1", "a", "sc", 30),
        jr.plain_frame("a", "hello", type="gift", gift="rose", count=2, value=3),
        json.dumps([{"user": "a", "text": "x"}, {"user": "b", "ts": 1718000000}]),
        json.dumps({"t": 2, "id": 9, "when": 1718000000, "u": ["1", "n", 3, True],
                    "payload": json.dumps({"g": ["rose", 5, 10], "combo": "c1", "text": "x"})}),
    ]  # fmt: skip
    return one, [seed.encode() for seed in seeds]


def control_target() -> tuple[OneInput, list[bytes]]:
    """A text frame to the control API, and to the ``/mic`` session (its JSON and ``mic.start``)."""
    import asyncio

    from pydantic import ValidationError

    from broadcaster.control import mic_session as mic
    from broadcaster.control.protocol import COMMANDS, ProtocolError, parse_request

    codes = {"bad_json", "bad_request", "unknown_command"}
    none = cast(Any, None)
    session = mic.MicSession(none, none, none, authed=True)
    session.events = asyncio.Queue(mic.EVENT_QUEUE)

    def one(data: bytes) -> None:
        text = data.decode("utf-8", "replace")  # websockets hands over text frames as valid UTF-8
        try:
            parse_request(text)
        except ProtocolError as exc:
            if exc.code not in codes or not exc.message:
                raise AssertionError(f"an unclear error: {exc.code!r} {exc.message!r}") from None
        for frame in (text, data):
            request = session._json(frame)
            if request is None:
                if session.events.empty():
                    raise AssertionError("a frame refused without telling the console")
                continue
            try:
                start = mic._MicStart.model_validate(request)
            except ValidationError:
                continue
            if start.cmd != "mic.start" or not 8000 <= start.rate <= 48000:
                raise AssertionError(f"mic.start accepted {request!r}")
        while not session.events.empty():
            session.events.get_nowait()

    seeds = [json.dumps({"id": n, "cmd": cmd}) for n, cmd in enumerate(COMMANDS)]
    seeds += [
        '{"id":"a","cmd":"say","text":"大家好","mode":"now"}',
        '{"id":1,"cmd":"queue.move","item":3,"position":0}',
        '{"id":2,"cmd":"subscribe","topics":["on_air","queue"]}',
        '{"cmd":"auth","token":"secret"}',
        '{"cmd":"mic.start","rate":16000}',
        '{"cmd":"mic.stop"}',
    ]
    return one, [seed.encode() for seed in seeds]


def config_target() -> tuple[OneInput, list[bytes]]:
    """``config.toml`` bytes, then NUL-separated ``--set`` overrides (as argv gives them)."""
    from broadcaster.config import ConfigError, load_config

    folder = Path(tempfile.mkdtemp(prefix="fuzz-config-"))
    path = folder / "config.toml"

    def one(data: bytes) -> None:
        toml, *rest = data.split(b"\0")
        path.write_bytes(toml)
        overrides = [item.decode("utf-8", "surrogateescape") for item in rest[:4]]
        try:
            load_config(path, overrides)
        except ConfigError as exc:
            if not str(exc):
                raise AssertionError("a ConfigError without a message") from None

    shipped = (ROOT / "config.toml").read_bytes()
    seeds = [
        shipped,
        b"[program]\nfps = 30\nlead_ms = 200\n\0avatar.scale=0.5",
        b'[[feeds]]\ntype = "bilibili"\nroom_id = 1\n[[feeds]]\ntype = "twitch"\nchannel = "xyz"\n',
        b'[[feeds]]\ntype = "json"\nurl = "ws://127.0.0.1:1"\npreset = "custom"\n'
        b'[feeds.mapping]\ntext = "a.b[0]"\ndefault_kind = "chat"\n',
        b'[chat.thanks]\ntemplate = "{name}: {gifts}"\n[chat.limits]\nuser_max = 3\n',
        b"\0feeds=[{type='local'}]\0feeds.0.name='x'",
        b"\0program.lead_ms=300\0chat.exchange.USD=7.0",
    ]
    return one, seeds


MAKERS: dict[str, Callable[[], tuple[OneInput, list[bytes]]]] = {
    "bilibili": bilibili_target,
    "twitch": twitch_target,
    "json": json_target,
    "control": control_target,
    "config": config_target,
}


# -- the child: one target under libFuzzer --------------------------------------------------------------


def child(name: str, runs: int, seconds: int, max_len: int, seed: int, work: Path) -> None:
    """Fuzz ``name``; never returns (libFuzzer exits, with a crash's input in ``work``/artifacts)."""
    import logging

    import atheris

    logging.disable(logging.CRITICAL)  # the feeds log every garbage frame they skip
    with atheris.instrument_imports(include=["danmaku", "broadcaster"]):
        for module in PARSERS:
            importlib.import_module(module)
    one, seeds = MAKERS[name]()
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(seeds):
        (corpus / f"seed-{i:03d}").write_bytes(data)
    args = [
        sys.argv[0],
        f"-runs={runs}",
        f"-max_len={max_len}",
        f"-seed={seed}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-timeout={INPUT_TIMEOUT_S}",
        f"-artifact_prefix={work}/",
        "-print_final_stats=1",
        "-reload=0",
        str(corpus),
    ]
    if seconds:
        args.insert(2, f"-max_total_time={seconds}")
    atheris.Setup(args, one)
    atheris.Fuzz()


# -- the parent: every target in turn, in a child each ---------------------------------------------------


def run_target(name: str, runs: int, seconds: int, max_len: int, seed: int) -> dict[str, Any]:
    """One child fuzzing ``name``; its figures (and where a crash's input was kept)."""
    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    log_path = work / "fuzz.log"
    cmd = [sys.executable, __file__, "--child", name, "--runs", str(runs), "--seconds", str(seconds)]
    cmd += ["--max-len", str(max_len), "--seed", str(seed), "--work", str(work)]
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - started
    text = log_path.read_text("utf-8", "replace")
    executions = _stat(text, "number_of_executed_units")
    if executions is None:
        done = re.search(r"Done (\d+) runs", text)
        executions = int(done.group(1)) if done else 0
    artifacts = sorted(
        str(p) for p in work.glob("*-*") if p.is_file() and p.name[:5] in ("crash", "oom-", "timeo")
    )
    crashed = proc.returncode != 0 or bool(artifacts)
    figures: dict[str, Any] = {
        "executions": executions,
        "crashes": int(crashed),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "seconds": round(elapsed, 1),
        "exec_per_s": round(executions / elapsed) if elapsed else 0,
        "corpus": len(list((work / "corpus").glob("*"))),
    }
    if crashed:
        figures["exit_code"] = proc.returncode
        figures["artifacts"] = artifacts
        figures["log"] = str(log_path)
        tail = text[text.find("=== Uncaught Python exception") :] if "Uncaught" in text else text[-3000:]
        print(f"--- {name} crashed (log: {log_path}) ---\n{tail[:3000]}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return figures


def _stat(text: str, name: str) -> int | None:
    found = re.search(rf"stat::{name}:\s*(\d+)", text)
    return int(found.group(1)) if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", action="append", choices=TARGETS, help="a target (repeatable)")
    parser.add_argument("--all", action="store_true", help="every target, one after the other")
    parser.add_argument("--runs", type=int, default=100_000, help="inputs per target (default 100000)")
    parser.add_argument("--seconds", type=int, default=0, help="also stop each target after this long")
    parser.add_argument("--max-len", type=int, default=16_384, help="longest input (bytes)")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed")
    parser.add_argument("--child", choices=TARGETS, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.runs, args.seconds, args.max_len, args.seed, args.work)
        return 0
    names = list(TARGETS) if args.all else args.target
    if not names:
        parser.error("name a --target or give --all")
    started = time.monotonic()
    per_target: dict[str, dict[str, Any]] = {}
    for name in names:
        figures = run_target(name, args.runs, args.seconds, args.max_len, args.seed)
        per_target[name] = figures
        print(
            f"{name:9s} executions {figures['executions']:>9d}  crashes {figures['crashes']}  "
            f"peak RSS {figures['peak_rss_mb']:7.1f} MB  {figures['seconds']:6.1f} s  "
            f"{figures['exec_per_s']:>6d}/s",
            flush=True,
        )
    result = {
        "executions": sum(f["executions"] for f in per_target.values()),
        "crashes": sum(f["crashes"] for f in per_target.values()),
        "peak_rss_mb": max(f["peak_rss_mb"] for f in per_target.values()),
        "seconds": round(time.monotonic() - started, 1),
        "runs_per_target": args.runs,
        "max_len": args.max_len,
        "targets": per_target,
    }
    print("RESULT " + json.dumps(result))
    return 1 if result["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""The command line: ``run``, ``check-config``, ``doctor`` and ``avatar build``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from broadcaster.config import Config, ConfigError, load_config
from broadcaster.control.exposure import RedactingFormatter, exposed
from broadcaster.face.avatar import Avatar, AvatarError, load_avatar
from broadcaster.face.builder import build_avatar
from broadcaster.stream.rtc.settings import redact_text, redact_url

log = logging.getLogger("broadcaster")

EXIT_CONFIG = 2


def _default_config() -> Path | None:
    path = Path("config.toml")
    return path if path.is_file() else None


def add_output_option(p: argparse.ArgumentParser) -> None:
    """``--output TARGET`` (repeatable), as ``run`` and ``doctor`` take it."""
    p.add_argument(
        "--output",
        dest="outputs",
        action="append",
        default=[],
        metavar="TARGET",
        help="add an output: an rtmp(s):// or whip+http(s):// URL, or a .flv/.mp4/.mkv path (repeatable)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="broadcaster", description="A 24/7 AI virtual streamer.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config", type=Path, default=None, help="config file (default: ./config.toml if present)"
        )
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config key, e.g. --set program.fps=30 (repeatable)",
        )

    run = sub.add_parser("run", help="put the program on air")
    with_config(run)
    run.add_argument(
        "--for", dest="seconds", type=float, default=None, help="run this many seconds, then exit 0"
    )
    add_output_option(run)
    run.add_argument(
        "--play-wav",
        dest="play_wav",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="put an audio file on air, in order, from the first tick (repeatable)",
    )

    run.add_argument(
        "--say",
        action="append",
        default=[],
        metavar="TEXT",
        help="read a line aloud (through the safety filter and the TTS chain), in order (repeatable)",
    )
    run.add_argument(
        "--chat",
        action="append",
        default=[],
        metavar="NAME: TEXT",
        help="post a comment on the local feed after the --say lines; answered in turn (repeatable)",
    )

    check = sub.add_parser("check-config", help="validate the config; exit 2 naming the offending key")
    with_config(check)

    doctor = sub.add_parser(
        "doctor", help="check the config against the real world before going live (exit 1 if a check fails)"
    )
    with_config(doctor)
    add_output_option(doctor)
    from broadcaster.doctor import add_arguments  # noqa: PLC0415 (only its names, for the help)

    add_arguments(doctor)

    avatar = sub.add_parser("avatar", help="avatar assets")
    avatar_sub = avatar.add_subparsers(dest="avatar_command", required=True)
    build = avatar_sub.add_parser("build", help="build an avatar from a photo, a video or a folder of frames")
    with_config(build)
    build.add_argument("source", type=Path)
    build.add_argument("--name", required=True)
    build.add_argument("--max-seconds", type=float, default=20.0, help="longest video loop kept")
    return parser


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config if args.config is not None else _default_config(), args.overrides)


def load_configured_avatar(cfg: Config, name: str, *, preload: bool = False) -> Avatar:
    """Avatar ``name`` from ``avatar.dir``; a ConfigError naming the key when it cannot be loaded."""
    try:
        return load_avatar(cfg.resolve(cfg.avatar.dir), name)
    except AvatarError as exc:
        where = "avatar.preload" if preload else f"avatar.name = {name!r}"
        raise ConfigError(f"{where}: {exc}") from exc


def open_lipsync(cfg: Config) -> None:
    """Open the lip-sync backend ``face.lipsync`` names once (loading its weights), then close it."""
    from broadcaster.face.lipsync import create_lipsync  # noqa: PLC0415 (may import torch)
    from broadcaster.stream.clock import Timing  # noqa: PLC0415

    create_lipsync(cfg, Timing(cfg.program.fps, cfg.program.sample_rate)).close()


def check_background(cfg: Config) -> None:
    """``program.background`` is a colour or an existing picture or video file."""
    bg = cfg.program.background
    if not bg.startswith("#") and not cfg.resolve(bg).is_file():
        raise ConfigError(f"program.background = {bg!r}: no image or video at {cfg.resolve(bg)}")


def config_summary(cfg: Config, avatar_kind: str = "", outputs: int | None = None) -> str:
    """One line saying what the config puts on air."""
    kind = f" ({avatar_kind})" if avatar_kind else ""
    count = len(cfg.outputs) if outputs is None else outputs
    return (
        f"{cfg.program.resolution} {cfg.program.fps} fps, avatar {cfg.avatar.name!r}{kind}, "
        f"lip-sync {cfg.face.lipsync}, voice {' > '.join(cfg.voice.engines)}, "
        f"LLM {redact_url(cfg.llm.base_url) or 'local model'}, {len(cfg.feeds)} feed(s), {count} output(s)"
    )


def _check(cfg: Config) -> None:
    avatar = load_configured_avatar(cfg, cfg.avatar.name)
    for name in cfg.avatar.preload:
        load_configured_avatar(cfg, name, preload=True)
    if cfg.face.lipsync != "classic":
        open_lipsync(cfg)
    check_show_files(cfg)
    _open_chain(cfg)
    check_background(cfg)
    print(f"config OK: {config_summary(cfg, avatar.manifest.kind)}")


def check_show_files(cfg: Config) -> None:
    """Load the scripts, product facts, safety lists and chat block lists; ConfigError on a bad one."""
    from broadcaster.show.safety import RuleError, SafetyFilter  # noqa: PLC0415
    from broadcaster.show.show import load_library  # noqa: PLC0415
    from danmaku.triage.text import block_rules  # noqa: PLC0415

    catalog = load_library(cfg).catalog
    try:
        SafetyFilter.from_config(cfg, catalog)
    except RuleError as exc:
        raise ConfigError(f"safety.lists: {exc}") from exc
    try:
        block_rules(cfg.chat.block, [cfg.resolve(p) for p in cfg.chat.block.lists])
    except RuleError as exc:
        raise ConfigError(f"chat.block.lists: {exc}") from exc


def _open_chain(cfg: Config) -> None:
    """Open every TTS engine of the chain once, then close them."""
    from broadcaster.show.show import build_chain  # noqa: PLC0415

    chain = build_chain(cfg)

    async def close() -> None:
        for engine in chain.engines:
            await engine.aclose()

    asyncio.run(close())


def _run(args: argparse.Namespace, cfg: Config) -> int:
    from broadcaster.app import (  # noqa: PLC0415 (PyAV and OpenCV load only for run)
        Broadcaster,
        RunOptions,
        chat_from_arg,
    )

    missing = [str(p) for p in args.play_wav if not p.is_file()]
    if missing:
        raise ConfigError(f"--play-wav: no such file: {', '.join(missing)}")
    chat = [chat_from_arg(item) for item in args.chat]
    app = Broadcaster(cfg, RunOptions(args.seconds, args.outputs, args.play_wav, args.say, chat))
    summary = asyncio.run(app.run())
    log.info("summary %s", json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        cfg = _load(args)
        # the doctor's table is the report: its components say only what went wrong
        level = "WARNING" if args.command == "doctor" and cfg.log.level == "INFO" else cfg.log.level
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.basicConfig(level=level, handlers=[handler])
        config_file = args.config if args.config is not None else _default_config()
        warning = exposed(config_file) if config_file is not None else None
        if warning is not None and args.command != "doctor":  # the doctor has its own row for it
            log.warning("config: %s", warning)
        if args.command == "check-config":
            _check(cfg)
            return 0
        if args.command == "doctor":
            from broadcaster.doctor import run_doctor  # noqa: PLC0415

            return run_doctor(cfg, args)
        if args.command == "avatar":
            root = cfg.resolve(cfg.avatar.dir)
            folder = build_avatar(
                args.source, args.name, root, fps=float(cfg.program.fps), max_seconds=args.max_seconds
            )
            print(f"avatar {args.name!r} built in {folder}")
            return 0
        return _run(args, cfg)
    except (ConfigError, AvatarError) as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)  # a rejected value may hold a key
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130

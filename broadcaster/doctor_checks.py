"""The doctor's checks of this machine: config, avatars, fonts, the console and the store.

A check is a coroutine returning an ``Outcome`` (OK, WARN, FAIL or SKIP and a line saying why); checks
come in named groups (what ``--skip`` names), and a group may own something its checks share (an open
TTS chain, a model server) and close it after them. Blocking work runs in a daemon thread (``in_thread``)
so that a check stuck past its time limit is reported, and abandoned, rather than holding the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal, TypeVar

from broadcaster.cli import (
    check_background,
    check_show_files,
    config_summary,
    load_configured_avatar,
    open_lipsync,
)
from broadcaster.config import Config

T = TypeVar("T")
Status = Literal["OK", "WARN", "FAIL", "SKIP"]

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class Outcome:
    """What a check found: its result and one line saying what and, when it is not OK, what to do."""

    status: Status
    detail: str


@dataclass(frozen=True)
class Check:
    """One row of the report: a name and the coroutine that finds its outcome within ``limit_s``."""

    name: str
    run: Callable[[], Awaitable[Outcome]]
    limit_s: float


@dataclass
class Group:
    """Checks that ``--skip NAME`` skips together, and what closes what they share (after them)."""

    name: str
    checks: list[Check] = field(default_factory=list)
    close: Callable[[], Awaitable[None]] | None = None


async def in_thread(work: Callable[[], T]) -> T:
    """``work()`` in a daemon thread: a check that hangs is abandoned at its limit, not waited for at exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def target() -> None:
        try:
            result = work()
        except BaseException as exc:  # handed to the awaiting check, which reports it
            error = exc
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                loop.call_soon_threadsafe(settle, lambda: future.set_exception(error))
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, lambda: future.set_result(result))

    threading.Thread(target=target, name="doctor-check", daemon=True).start()
    return await future


def speaks_chinese(cfg: Config) -> bool:
    """Whether the host speaks Chinese: a persona or a filler line written in Chinese."""
    texts = [*cfg.show.fillers.lines]
    for persona in (cfg.persona, *cfg.personas.values()):
        texts += [persona.name, persona.style, persona.system_prompt]
    return any(_CJK.search(text) for text in texts)


def config_group(cfg: Config, outputs: int, timeout: float) -> Group:
    """[config]: the scripts, product facts, safety and block lists and the background load."""

    def files() -> None:
        check_show_files(cfg)
        check_background(cfg)

    async def run() -> Outcome:
        await in_thread(files)
        return Outcome("OK", config_summary(cfg, outputs=outputs))

    return Group("config", [Check("config", run, timeout)])


def avatar_group(cfg: Config, timeout: float) -> Group:
    """[avatar]: every avatar loads and the lip-sync backend opens."""

    async def avatar(name: str, preload: bool) -> Outcome:
        loaded = await in_thread(lambda: load_configured_avatar(cfg, name, preload=preload))
        m = loaded.manifest
        detail = f"{m.kind}, {m.size[0]}x{m.size[1]}, {m.frames} frame(s)"
        if m.no_face_frames:
            detail += f", {len(m.no_face_frames)} without a face (filled from their neighbours)"
        return Outcome("OK", f"{detail}, from {loaded.folder}")

    async def lipsync() -> Outcome:
        await in_thread(lambda: open_lipsync(cfg))
        return Outcome("OK", "opened and closed")

    checks = [Check(f"avatar {cfg.avatar.name}", partial(avatar, cfg.avatar.name, False), timeout)]
    for name in dict.fromkeys(cfg.avatar.preload):
        if name != cfg.avatar.name:
            checks.append(Check(f"avatar {name} (preload)", partial(avatar, name, True), timeout))
    # heavy backends load their weights (and torch) once at start, like the local model
    load_limit = timeout if cfg.face.lipsync == "classic" else max(timeout, 60.0)
    checks.append(Check(f"lip-sync {cfg.face.lipsync}", lipsync, load_limit))
    return Group("avatar", checks)


def fonts_group(cfg: Config, timeout: float) -> Group:
    """[fonts]: the caption font is found, with Chinese glyphs when the host speaks Chinese."""
    return Group("fonts", [Check("caption font", partial(_font, cfg), timeout)])


async def _font(cfg: Config) -> Outcome:
    from broadcaster.face.fonts import configured_font, draws_chinese, find_cjk_font  # noqa: PLC0415

    overlay = cfg.overlay
    if not overlay.captions.enabled and not overlay.card.enabled:
        return Outcome("SKIP", "captions and product cards are off")
    chinese = speaks_chinese(cfg)
    if overlay.font:
        try:
            face = await in_thread(lambda: configured_font(overlay.font, overlay.font_index, cfg.base_dir))
        except ValueError as exc:
            return Outcome("FAIL", str(exc))
        draws = await in_thread(lambda: draws_chinese(face.path, face.index))
    else:
        found = await in_thread(find_cjk_font)
        if found is None:
            return Outcome(
                "FAIL",
                "no font with Chinese glyphs found: captions and product cards are not drawn; "
                "install fonts-noto-cjk (apt) or set overlay.font",
            )
        face, draws = found, True
    where = f"{face.name} ({face.path}, face {face.index})"
    if chinese and not draws:
        return Outcome(
            "FAIL",
            f"{where} has no Chinese glyphs and the host speaks Chinese: captions show boxes; "
            "set overlay.font to a CJK font",
        )
    return Outcome("OK", where + (", draws Chinese" if draws else ""))


def control_group(cfg: Config, timeout: float, config_file: Path | None = None) -> Group:
    """[control]: the console's port is free and its token can be had; secrets are kept private."""
    return Group(
        "control",
        [
            Check("control port", partial(_control_port, cfg), timeout),
            Check("control token", partial(_control_token, cfg), timeout),
            Check("config secrets", partial(_config_secrets, config_file), timeout),
        ],
    )


async def _config_secrets(config_file: Path | None) -> Outcome:
    return await in_thread(lambda: _config_verdict(config_file))


def _config_verdict(config_file: Path | None) -> Outcome:
    from broadcaster.control.exposure import exposed, readable_by_others  # noqa: PLC0415

    if config_file is None or not config_file.is_file():
        return Outcome("SKIP", "no config file")
    warning = exposed(config_file)
    if warning is not None:
        return Outcome("WARN", warning)
    private = "private" if not readable_by_others(config_file) else "holds no secrets"
    return Outcome("OK", f"{config_file}: {private}")


async def _control_port(cfg: Config) -> Outcome:
    control = cfg.control
    if not control.enabled:
        return Outcome("SKIP", "control.enabled = false: no console")
    if control.port == 0:
        return Outcome("OK", f"{control.host}: any free port (control.port = 0)")
    where = f"{control.host}:{control.port}"
    try:
        infos = await in_thread(
            lambda: socket.getaddrinfo(control.host, control.port, type=socket.SOCK_STREAM)
        )
    except socket.gaierror as exc:
        return Outcome("FAIL", f"control.host = {control.host!r}: cannot resolve it: {exc.strerror}")
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return Outcome(
                "WARN",
                f"cannot listen on {where} ({exc.strerror or exc}): the show runs without its console; "
                "stop what holds the port (another broadcaster?) or change control.port",
            )
    return Outcome("OK", f"{where} is free")


async def _control_token(cfg: Config) -> Outcome:  # noqa: PLR0911 (one verdict per case)
    from broadcaster.control.settings import TokenError, is_loopback, load_token  # noqa: PLC0415

    control = cfg.control
    if not control.enabled:
        return Outcome("SKIP", "control.enabled = false: no console")
    path = cfg.resolve(control.token_file)
    from_env = os.environ.get(control.token_env, "").strip()
    if not from_env and not path.is_file() and is_loopback(control.host):
        # load_token would create it; the doctor only says it can be
        folder = _existing_parent(path)
        if not os.access(folder, os.W_OK | os.X_OK):
            return Outcome("FAIL", f"no token yet, and {folder} is not writable: {path} cannot be created")
        return Outcome("OK", f"none yet: the first start writes a new one to {path} (mode 0600)")
    try:
        token = load_token(control, cfg.base_dir)
    except (TokenError, OSError, UnicodeDecodeError) as exc:
        return Outcome("FAIL", str(exc))
    if token.source == "env":
        return Outcome("OK", f"from ${control.token_env}")
    if token.path is not None and token.path.stat().st_mode & 0o077:
        return Outcome("WARN", f"from {token.path}, which other users can read: chmod 600 it")
    return Outcome("OK", f"from {token.path}")


def _existing_parent(path: Path) -> Path:
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def store_group(cfg: Config, timeout: float) -> Group:
    """[store]: the SQLite store can be opened for writing (or created)."""
    return Group("store", [Check("store", partial(_store, cfg), timeout)])


async def _store(cfg: Config) -> Outcome:  # noqa: PLR0911 (one verdict per case)
    from broadcaster.store import Store, StoreError  # noqa: PLC0415

    path = cfg.resolve(cfg.store.path)
    if not path.exists():
        folder = _existing_parent(path)
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            return Outcome("FAIL", f"{path} cannot be created: {folder} is not a writable folder")
        return Outcome("OK", f"{path} does not exist yet: the first start creates it")
    if not path.is_file():
        return Outcome("FAIL", f"{path} is not a file")
    try:
        await in_thread(lambda: Store(path, cfg.store.synchronous).close())
    except StoreError as exc:
        return Outcome("FAIL", str(exc))
    if not os.access(path, os.W_OK):
        return Outcome("FAIL", f"{path} is read-only: the chat log and the queue cannot be written")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return Outcome("FAIL", f"{path.parent} is read-only: SQLite cannot write its WAL next to the store")
    return Outcome("OK", f"{path} opened ({path.stat().st_size / 1e6:.1f} MB)")

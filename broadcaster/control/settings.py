"""`[control]`: where the moderator console listens, and its token.

The token guards every command. It comes from the environment variable ``token_env`` when that is set,
else from ``token_file``; on a loopback address a missing file is created with a fresh random token
(mode 0600). A server reachable from other machines never invents its token: it refuses to start
unless one was provided.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16


class ControlConfig(BaseModel):
    """`[control]`: the moderator WebSocket API, /healthz, /metrics and the dashboard, on one port."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8765, ge=0, le=65535)  # 0: any free port (tests)
    token_env: str = Field("BROADCASTER_TOKEN", min_length=1)
    token_file: str = "data/control-token"
    # a text message longer than this gets an error reply; one past 16x this (at least 1 MiB) closes
    max_message_bytes: int = Field(65536, ge=1024, le=4 * 1024 * 1024)
    # wrong tokens (or commands before auth) on one connection before it is closed
    max_auth_failures: int = Field(5, ge=1, le=100)
    # seconds a new connection has to authenticate
    auth_timeout_s: float = Field(30.0, gt=0, le=3600)
    # events queued per console before the oldest are dropped (and the console told)
    subscriber_queue: int = Field(512, ge=16, le=100_000)
    # seconds between the snapshots published on the "metrics" topic
    metrics_interval_s: float = Field(2.0, ge=0.2, le=300)
    preview_fps: float = Field(10.0, gt=0, le=30)
    preview_width: int = Field(480, ge=64, le=1920)
    preview_quality: int = Field(70, ge=10, le=95)
    preview_audio: bool = True
    preview_audio_rate: Literal[24000, 48000] = 24000
    preview_audio_chunk_ms: int = Field(100, ge=20, le=1000)


class TokenError(Exception):
    """No usable token: the message says where one is looked for."""


@dataclass(frozen=True)
class Token:
    """The console token and where it came from (``env`` / ``file`` / ``created``; never logged)."""

    value: str = field(repr=False)
    source: str = ""
    path: Path | None = None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_token(cfg: ControlConfig, base_dir: Path, env: Mapping[str, str] | None = None) -> Token:
    """The token from ``cfg.token_env``, else ``cfg.token_file`` (relative to ``base_dir``).

    On a loopback host a missing file is created (0600) with a new random token; on any other host a
    missing token is a ``TokenError``. A token shorter than 16 characters is refused.
    """
    env = os.environ if env is None else env
    from_env = env.get(cfg.token_env, "").strip()
    if from_env:
        return _checked(Token(from_env, "env"), f"${cfg.token_env}")
    path = Path(cfg.token_file).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if path.is_file():
        mode = path.stat().st_mode & 0o077
        if mode:
            log.warning("control: %s is readable by other users; chmod 600 it", path)
        return _checked(Token(path.read_text(encoding="utf-8").strip(), "file", path), str(path))
    if not is_loopback(cfg.host):
        raise TokenError(
            f"control.host = {cfg.host!r} is reachable from other machines, so the console needs a token "
            f"you chose: set ${cfg.token_env} or write one ({MIN_TOKEN_CHARS}+ characters) to {path}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value + "\n")
    log.info("control: created a console token in %s", path)
    return Token(value, "created", path)


def _checked(token: Token, where: str) -> Token:
    if len(token.value) < MIN_TOKEN_CHARS:
        raise TokenError(f"the console token in {where} is too short (at least {MIN_TOKEN_CHARS} characters)")
    return token

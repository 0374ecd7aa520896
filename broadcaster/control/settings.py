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
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
    # /metrics and the detailed /healthz body need the token (Authorization: Bearer); false serves them
    # to anyone who reaches the port (a bare /healthz always answers its status with {"ok": ...})
    http_auth: bool = True
    # pages (besides the console's own, same host:port) allowed to open /ws and /mic, e.g.
    # "https://console.example.org"; a WebSocket from any other Origin is refused (403)
    allowed_origins: tuple[str, ...] = ()
    # commands per console per second (a burst of command_burst passes); past it a message gets a
    # "rate_limited" reply, and command_burst of those within 10 s close the connection (1008)
    commands_per_second: float = Field(20.0, ge=1, le=10_000)
    command_burst: int = Field(60, ge=1, le=100_000)
    # /ws and /mic connections open at once (authenticated or not); more get 503
    max_consoles: int = Field(16, ge=1, le=1000)
    # requests per client address per second (a burst of connect_burst); past it 429
    connects_per_second: float = Field(10.0, ge=0.1, le=10_000)
    connect_burst: int = Field(60, ge=1, le=100_000)
    # wrong tokens per client address (over any number of connections, HTTP included) before it is
    # locked out; one more is allowed every auth_lockout_s / auth_failures_per_address seconds
    auth_failures_per_address: int = Field(20, ge=1, le=10_000)
    auth_lockout_s: float = Field(300.0, gt=0, le=86_400)
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

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for origin in value:
            normal = normal_origin(origin)
            if normal is None:
                raise ValueError(f"{origin!r} is not an origin like https://console.example.org[:port]")
            out.append(normal)
        return tuple(out)


class TokenError(Exception):
    """No usable token: the message says where one is looked for."""


@dataclass(frozen=True)
class Token:
    """The console token and where it came from (``env`` / ``file`` / ``created``; never logged)."""

    value: str = field(repr=False)
    source: str = ""
    path: Path | None = None


DEFAULT_PORTS = {"http": 80, "https": 443}


def normal_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port, or None when it is not one."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username is not None:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    shown_port = "" if port in (None, DEFAULT_PORTS[parts.scheme]) else f":{port}"
    return f"{parts.scheme}://{host}{shown_port}"


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

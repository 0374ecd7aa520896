"""Where the program's secrets could be exposed: a config file others can read, and the log.

A stream key in an RTMP URL, a WHIP bearer token, a bilibili auth body: each is better kept in the
environment (the ``*_env`` keys), but some are written into ``config.toml``. Then the file must be
private (mode 0600), like the console's token file: ``exposed`` says, naming the keys (never their
values), when it is not. The program warns at start and the doctor says so too.

Our own log lines redact what they show (``redact_url``, ``redact_text``); ``RedactingFormatter`` is
the net under them for the lines of libraries (httpx logs every request's URL, passwords included).
"""

from __future__ import annotations

import logging
import re
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from broadcaster.stream.rtc.settings import redact_text, redact_url

_SECRET_NAME = re.compile(r"token|secret|password|passwd|cookie|auth_body|api_key|credential", re.IGNORECASE)
_NOT_A_VALUE = ("_env", "_file", "_path", "_url")  # names of where a secret is, not the secret


def secret_keys(data: Any, prefix: str = "") -> Iterator[str]:
    """The dotted keys of ``data`` (parsed TOML) whose values are, or carry, a secret."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from secret_keys(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from secret_keys(value, f"{prefix}.{i}")
    elif isinstance(data, str) and data.strip():
        name = prefix.rsplit(".", 1)[-1]
        named = _SECRET_NAME.search(name) is not None and not name.endswith(_NOT_A_VALUE)
        if named or ("://" in data and redact_url(data) != data):
            yield prefix


def readable_by_others(path: Path) -> bool:
    """Whether users other than the owner may read ``path``."""
    return bool(stat.S_IMODE(path.stat().st_mode) & (stat.S_IRGRP | stat.S_IROTH))


def exposed(path: Path) -> str | None:
    """A warning when ``path`` (a config file) holds secrets and others may read it, else None."""
    try:
        if not readable_by_others(path):
            return None
        keys = list(secret_keys(tomllib.loads(path.read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    if not keys:
        return None
    mode = stat.S_IMODE(path.stat().st_mode)
    shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
    return (
        f"{path} holds secrets ({shown}) and other users of this machine can read it (mode {mode:04o}): "
        f"chmod 600 {path}, or move them to environment variables (the *_env keys)"
    )


class RedactingFormatter(logging.Formatter):
    """A log formatter whose every line, traceback included, goes through ``redact_text``."""

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record, with URLs redacted and credentials masked."""
        return redact_text(super().format(record))

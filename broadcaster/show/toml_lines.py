"""Where a key sits in a TOML file: so a bad value is reported as ``file:line``, not only by its key.

``tomllib`` gives values without positions. ``key_lines`` scans the source once and maps every key path
(``("segments", 2, "text")``, ``("specs", "净含量")``) to the line that writes it; array-of-tables headers
(``[[segments]]``) map to their own line, and elements of a multi-line array written one per line map to
their line. ``line_of`` finds the closest written ancestor of a path (a missing key: its table's header).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Loc = tuple[str | int, ...]

_PART = r'(?:"(?:[^"\\]|\\.)*"|\'[^\']*\'|[A-Za-z0-9_-]+)'
_DOTTED = rf"{_PART}(?:\s*\.\s*{_PART})*"
_ARRAY_TABLE = re.compile(rf"^\s*\[\[\s*({_DOTTED})\s*\]\]")
_TABLE = re.compile(rf"^\s*\[\s*({_DOTTED})\s*\]")
_KEY = re.compile(rf"^\s*({_DOTTED})\s*=\s*(.*)$")
_ELEMENT = re.compile(r"""^\s*(\{.*\}|"(?:[^"\\]|\\.)*"|'[^']*'|[-+0-9.eE_:TZ]+|true|false)\s*,?\s*(#.*)?$""")
_SYNTAX_LINE = re.compile(r"\(at line (\d+), column \d+\)")


def _parts(dotted: str) -> list[str]:
    return [p.strip()[1:-1] if p.strip()[:1] in "\"'" else p.strip() for p in re.findall(_PART, dotted)]


def _opens_multiline(rest: str) -> str | None:
    for quote in ('"""', "'''"):
        if rest.count(quote) % 2 == 1:
            return quote
    return None


def key_lines(text: str) -> dict[Loc, int]:
    """Every key path written in ``text`` and its line (1-based)."""
    lines: dict[Loc, int] = {(): 1}
    table: Loc = ()
    arrays: dict[tuple[str, ...], int] = {}  # array-of-tables name → index of its latest element
    quote: str | None = None  # inside a multi-line string closed by this
    array: Loc | None = None  # inside a multi-line array written at this key
    element = 0

    def resolve(names: list[str]) -> Loc:
        path: list[str | int] = []
        for i in range(len(names)):
            path.append(names[i])
            if tuple(names[: i + 1]) in arrays:
                path.append(arrays[tuple(names[: i + 1])])
        return tuple(path)

    for number, line in enumerate(text.splitlines(), 1):
        if quote is not None:
            if line.count(quote) % 2 == 1:
                quote = None
            continue
        if array is not None:
            if line.strip().startswith("]"):
                array = None
            elif _ELEMENT.match(line):
                lines[(*array, element)] = number
                element += 1
            elif line.strip() and not line.strip().startswith("#"):
                array = None  # several elements on a line: their lines are not told apart
            continue
        if match := _ARRAY_TABLE.match(line):
            names = _parts(match.group(1))
            arrays[tuple(names)] = arrays.get(tuple(names), -1) + 1
            table = resolve(names)
            lines[table] = number
        elif match := _TABLE.match(line):
            table = resolve(_parts(match.group(1)))
            lines.setdefault(table, number)
        elif match := _KEY.match(line):
            path = (*table, *_parts(match.group(1)))
            lines[path] = number
            rest = match.group(2)
            quote = _opens_multiline(rest)
            if rest.startswith("[") and rest.count("[") > rest.count("]"):
                array, element = path, 0
    return lines


def line_of(lines: dict[Loc, int], loc: Sequence[str | int]) -> int:
    """The line of ``loc``, or of its closest ancestor that is written (1 when none is)."""
    path = tuple(loc)
    while path not in lines:
        path = path[:-1]
    return lines[path]


def syntax_line(exc: tomllib.TOMLDecodeError) -> int:
    """The line a TOML syntax error points at (1 when the message has none)."""
    match = _SYNTAX_LINE.search(str(exc))
    return int(match.group(1)) if match else 1


def read_toml_lines(path: Path, error: type[Exception]) -> tuple[dict[str, Any], dict[Loc, int]]:
    """A TOML file's data and its key lines; raises ``error`` as ``file:line: what is wrong``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}:1: cannot read: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}:{syntax_line(exc)}: not valid TOML: {exc}") from exc
    return data, key_lines(text)


def describe(error: Any) -> str:
    """A pydantic error as ``key: what is wrong`` (``key = value: ...`` when a value was given)."""
    key = ".".join(str(p) for p in error["loc"]) or "(file)"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if error["type"] == "missing":
        return f"{key}: missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if isinstance(error.get("input"), dict | list):
        return f"{key}: {message}"
    return f"{key} = {error.get('input')!r}: {message}"

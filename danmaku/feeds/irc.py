"""IRC lines with IRCv3 message tags: what Twitch chat (and any IRC-over-WebSocket feed) speaks.

A line is ``[@tags ][:prefix ]COMMAND[ params][ :trailing]``. ``parse`` turns one line into an
``IrcMessage`` (tags unescaped, the trailing parameter last in ``params``) and raises ``MalformedLine``
for a line no server would send, so a feed can skip that one line and keep the rest of its frame.
``lines`` splits a frame into lines; ``format_line`` builds what we send and refuses anything that
would smuggle a second command in (CR, LF, NUL).

Chat reads thousands of lines a minute, so parsing uses ``str.partition`` and ``split``, no regex, and
unescapes a tag value only when it holds a backslash.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from danmaku.feeds.base import GarbageFrame

__all__ = [
    "IrcMessage",
    "MalformedLine",
    "escape_tag_value",
    "format_line",
    "lines",
    "parse",
    "unescape_tag_value",
]

# IRCv3 message-tags: \: is ';', \s is space, \\ is '\', \r and \n are CR and LF; any other escaped
# character stands for itself, and a lone backslash at the end is dropped
_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_ESCAPES = str.maketrans({";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"})
_FORBIDDEN = ("\r", "\n", "\0")


class MalformedLine(GarbageFrame):
    """A line that is not IRC: skipped and counted, the rest of the frame still read."""


@dataclass(slots=True)
class IrcMessage:
    """One IRC line: ``params`` ends with the trailing parameter when the line has one."""

    command: str
    params: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    prefix: str = ""

    @property
    def nick(self) -> str:
        """The sender's nick (``nick`` of ``nick!user@host``); a server prefix as it is."""
        return self.prefix.partition("!")[0]

    @property
    def trailing(self) -> str:
        """The last parameter (a chat message's text), or "" when the line has none."""
        return self.params[-1] if self.params else ""

    def param(self, index: int) -> str:
        """Parameter ``index``, or "" when the line is shorter (IRC servers omit empty ones)."""
        return self.params[index] if index < len(self.params) else ""


def unescape_tag_value(value: str) -> str:
    """A tag value as the IRCv3 message-tags spec unescapes it."""
    if "\\" not in value:
        return value
    out: list[str] = []
    start = 0
    end = len(value)
    while True:
        i = value.find("\\", start)
        if i < 0:
            out.append(value[start:])
            break
        out.append(value[start:i])
        if i + 1 == end:  # a lone trailing backslash is dropped
            break
        c = value[i + 1]
        out.append(_UNESCAPES.get(c, c))
        start = i + 2
    return "".join(out)


def escape_tag_value(value: str) -> str:
    """A tag value escaped for sending (the inverse of ``unescape_tag_value``)."""
    return value.translate(_ESCAPES)


def _command_ok(command: str) -> bool:
    return command.isascii() and (command.isalpha() or (len(command) == 3 and command.isdigit()))


def parse(line: str) -> IrcMessage:
    """One line (without its CRLF) into a message; ``MalformedLine`` when it is not IRC."""
    tags: dict[str, str] = {}
    rest = line
    if rest.startswith("@"):
        raw_tags, sep, rest = rest[1:].partition(" ")
        if not sep:
            raise MalformedLine("tags without a command")
        for item in raw_tags.split(";"):
            if not item:
                continue
            key, _, value = item.partition("=")
            if not key:
                raise MalformedLine("a tag without a name")
            tags[key] = unescape_tag_value(value) if "\\" in value else value
        rest = rest.lstrip(" ")
    prefix = ""
    if rest.startswith(":"):
        prefix, sep, rest = rest[1:].partition(" ")
        if not sep or not prefix:
            raise MalformedLine("a prefix without a command")
        rest = rest.lstrip(" ")
    head, sep, trailing = rest.partition(" :")
    params = head.split(" ")
    command = params.pop(0).upper()
    if not _command_ok(command):
        raise MalformedLine(f"not an IRC command: {command[:20]!r}" if command else "no command")
    if "" in params:
        params = [p for p in params if p]
    if sep:
        params.append(trailing)
    return IrcMessage(command, params, tags, prefix)


def lines(frame: str) -> Iterator[str]:
    """The non-empty lines of a frame (CRLF or bare LF separated; a last line without one counts).

    Splits on line feeds only: ``str.splitlines`` would also break a chat message at U+2028 and the
    other Unicode separators a viewer can type.
    """
    for raw in frame.split("\n"):
        line = raw[:-1] if raw.endswith("\r") else raw
        if line:
            yield line


def format_line(command: str, *params: str, tags: Mapping[str, str] | None = None) -> str:
    """A line to send, CRLF included; the last parameter goes as trailing when it needs to.

    Raises ValueError for a parameter holding CR, LF or NUL (it would start a second command), a
    middle parameter with a space or a leading colon, or a bad command.
    """
    if not _command_ok(command):
        raise ValueError(f"not an IRC command: {command!r}")
    parts: list[str] = []
    if tags:
        parts.append("@" + ";".join(k if v == "" else f"{k}={escape_tag_value(v)}" for k, v in tags.items()))
    parts.append(command)
    for i, param in enumerate(params):
        if any(c in param for c in _FORBIDDEN):
            raise ValueError(f"parameter {i} of {command} holds CR, LF or NUL")
        last = i == len(params) - 1
        if last and (not param or " " in param or param.startswith(":")):
            parts.append(":" + param)
        elif not param or " " in param or param.startswith(":"):
            raise ValueError(f"parameter {i} of {command} must be the last one")
        else:
            parts.append(param)
    return " ".join(parts) + "\r\n"

"""The control API's messages: requests (one model per command), replies, events and preview frames.

A request is a JSON object ``{"id": <anything>, "cmd": "<name>", ...fields}``; its reply echoes the id,
``{"id": ..., "ok": true, "result": ...}`` or ``{"id": ..., "ok": false, "error": {"code", "message"}}``.
Events are ``{"event": "<topic>", "data": ...}``; preview pictures and sound are binary frames that
start with a 16-byte header (see ``preview_header``). ``docs/control-api.md`` is the reference.

Validation is strict: no extra fields, no coercion ("3" is not an item id), text within its limit.
"""

from __future__ import annotations

import json
import struct
from typing import Annotated, Any, Literal, get_args

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from broadcaster.control.hub import TOPICS

MAX_TEXT_CHARS = 500
MAX_NAME_CHARS = 128

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_CHARS)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME_CHARS)]
ItemId = Annotated[int, Field(ge=0)]
Topic = Literal["on_air", "queue", "triage", "review", "state", "metrics", "preview"]

# the binary preview frames: magic, tick, and two numbers that depend on the kind
PREVIEW_HEADER = struct.Struct("<4sIII")
JPEG_MAGIC = b"JPEG"  # then: width, height
PCM_MAGIC = b"PCM1"  # then: sample rate, channels; the payload is s16le


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: Any = None


class Auth(_Request):
    """Authenticate the connection (the first message, unless the upgrade carried the token)."""

    cmd: Literal["auth"]
    token: Annotated[str, StringConstraints(max_length=1024)]


class Say(_Request):
    """A moderator line: ``now`` cuts what is on air, ``next`` follows the sentence on air."""

    cmd: Literal["say"]
    text: Text
    mode: Literal["now", "next"] = "next"


class Interrupt(_Request):
    """Cut whatever is on air."""

    cmd: Literal["interrupt"]


class Skip(_Request):
    """Cut the item on air and go on with the next."""

    cmd: Literal["skip"]


class ChatPause(_Request):
    """Stop answering chat (comments are still logged and triaged)."""

    cmd: Literal["chat.pause"]


class ChatResume(_Request):
    """Answer chat again."""

    cmd: Literal["chat.resume"]


class QueueList(_Request):
    """The queued items in airing order."""

    cmd: Literal["queue.list"]


class QueueRemove(_Request):
    """Remove a queued item."""

    cmd: Literal["queue.remove"]
    item: ItemId


class QueueMove(_Request):
    """Move a queued item to ``position`` (0 = first) within its lane."""

    cmd: Literal["queue.move"]
    item: ItemId
    position: Annotated[int, Field(ge=0, le=100_000)]


class ScriptStart(_Request):
    """Queue a run of a script, from ``segment`` or where it last stopped."""

    cmd: Literal["script.start"]
    script: Name
    segment: Name | None = None


class ScriptStop(_Request):
    """Stop the script on air (its place is kept)."""

    cmd: Literal["script.stop"]


class ScriptJump(_Request):
    """Move a script's place to ``segment``."""

    cmd: Literal["script.jump"]
    script: Name
    segment: Name


class AvatarSwitch(_Request):
    """Put a preloaded avatar on air."""

    cmd: Literal["avatar.switch"]
    name: Name


class PersonaSwitch(_Request):
    """Answer chat as another persona."""

    cmd: Literal["persona.switch"]
    name: Name


class ReviewOn(_Request):
    """LLM replies wait for approval."""

    cmd: Literal["review.on"]


class ReviewOff(_Request):
    """LLM replies air without approval."""

    cmd: Literal["review.off"]


class ReviewApprove(_Request):
    """Air a reply that waits for review, optionally as edited."""

    cmd: Literal["review.approve"]
    item: ItemId
    text: Text | None = None


class ReviewReject(_Request):
    """Drop a reply that waits for review."""

    cmd: Literal["review.reject"]
    item: ItemId


class State(_Request):
    """A snapshot: on air, queue, reviews, switches, scripts."""

    cmd: Literal["state"]


class Subscribe(_Request):
    """Receive events of ``topics`` (all when omitted); replaces an earlier subscription."""

    cmd: Literal["subscribe"]
    topics: list[Topic] = Field(
        default_factory=lambda: list(get_args(Topic)), min_length=1, max_length=len(TOPICS)
    )


class Unsubscribe(_Request):
    """Receive no more events."""

    cmd: Literal["unsubscribe"]


class WatchOffer(_Request):
    """Watch the program over WebRTC: the browser's SDP offer; the result carries the answer."""

    cmd: Literal["watch.offer"]
    sdp: str = Field(min_length=16, max_length=60_000)


class WatchStop(_Request):
    """Stop a WebRTC preview started by this console."""

    cmd: Literal["watch.stop"]
    viewer: str = Field(min_length=1, max_length=32)


class VoiceMode(_Request):
    """What the console's microphone does: ``off``, ``passthrough`` (on air) or ``conversation``."""

    cmd: Literal["voice.mode"]
    mode: Literal["off", "passthrough", "conversation"]


class Ping(_Request):
    """Answered with ``{"pong": true}``."""

    cmd: Literal["ping"]


Request = Annotated[
    Auth
    | Say
    | Interrupt
    | Skip
    | ChatPause
    | ChatResume
    | QueueList
    | QueueRemove
    | QueueMove
    | ScriptStart
    | ScriptStop
    | ScriptJump
    | AvatarSwitch
    | PersonaSwitch
    | ReviewOn
    | ReviewOff
    | ReviewApprove
    | ReviewReject
    | State
    | Subscribe
    | Unsubscribe
    | WatchOffer
    | WatchStop
    | VoiceMode
    | Ping,
    Field(discriminator="cmd"),
]
REQUEST = TypeAdapter[Request](Request)
COMMANDS: tuple[str, ...] = tuple(
    get_args(m.model_fields["cmd"].annotation)[0] for m in get_args(get_args(Request)[0])
)


class ProtocolError(Exception):
    """A message that cannot be a request; ``code`` goes in the error reply, with ``id`` when known."""

    def __init__(self, code: str, message: str, rid: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = rid


def parse_request(text: str) -> _Request:
    """One text frame into a validated request, or ``ProtocolError`` saying what is wrong."""
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as exc:  # orjson stops at 1024 levels, json at the stack
            raise ProtocolError("bad_json", f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ProtocolError("bad_request", f"a request is a JSON object, not {type(raw).__name__}")
    rid = raw.get("id")
    cmd = raw.get("cmd")
    if not isinstance(cmd, str):
        raise ProtocolError("bad_request", 'a request needs "cmd", a string', rid)
    if cmd not in COMMANDS:
        raise ProtocolError(
            "unknown_command", f"unknown cmd {cmd[:64]!r}; commands: {', '.join(COMMANDS)}", rid
        )
    try:
        return REQUEST.validate_python(raw)
    except ValidationError as exc:
        raise ProtocolError("bad_request", f"{cmd}: {_explain(exc)}", rid) from None


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"][1:]) or "message"  # loc[0] is the union tag
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def dumps(message: dict[str, Any]) -> str:
    """A message as JSON text (numpy numbers and other odd values are turned into plain JSON)."""
    return orjson.dumps(
        message, default=str, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    ).decode()


def ok(rid: Any, result: Any) -> str:
    """A success reply."""
    return dumps({"id": rid, "ok": True, "result": result})


def error(rid: Any, code: str, message: str) -> str:
    """An error reply."""
    return dumps({"id": rid, "ok": False, "error": {"code": code, "message": message}})


def event(topic: str, data: Any) -> str:
    """An event frame."""
    return dumps({"event": topic, "data": data})


def preview_header(magic: bytes, k: int, a: int, b: int) -> bytes:
    """The 16-byte header of a binary preview frame (little-endian: magic, tick, a, b)."""
    return PREVIEW_HEADER.pack(magic, k & 0xFFFFFFFF, a, b)

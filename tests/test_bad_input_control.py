"""Bad input for the control API's requests and the ``/mic`` session's text messages."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from broadcaster.control import mic_session as mic
from broadcaster.control import protocol as p

CODES = {"bad_json", "bad_request", "unknown_command"}
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)
LETTERS = st.characters(blacklist_categories=["Cc", "Cs", "Zs", "Zl", "Zp"])
FIELDS = ["text", "mode", "item", "position", "script", "segment", "name", "topics", "token", "sdp", "viewer"]


@given(st.text(max_size=300))
def test_any_text_is_a_request_or_a_protocol_error(text: str) -> None:
    try:
        p.parse_request(text)
    except p.ProtocolError as exc:
        assert exc.code in CODES
        assert exc.message


@given(
    st.sampled_from(p.COMMANDS),
    JSON,
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), JSON, max_size=4),
)
def test_a_command_with_any_fields_is_valid_or_named(cmd: str, rid: Any, fields: dict[str, Any]) -> None:
    """The error names the command and echoes the id, so the console can match it to its request."""
    text = json.dumps({**fields, "id": rid, "cmd": cmd})
    try:
        request = p.parse_request(text)
    except p.ProtocolError as exc:
        assert (exc.code, exc.message.split(":")[0]) == ("bad_request", cmd)
        assert json.dumps(exc.id) == json.dumps(json.loads(text)["id"])
    else:
        assert request.model_dump()["cmd"] == cmd


@given(JSON, st.text(LETTERS, min_size=1, max_size=p.MAX_TEXT_CHARS - 2), st.sampled_from(["now", "next"]))
def test_say_round_trip(rid: Any, text: str, mode: str) -> None:
    message = {"id": rid, "cmd": "say", "text": f" {text}\n", "mode": mode}
    request = p.parse_request(json.dumps(message))
    assert isinstance(request, p.Say)
    assert (request.text, request.mode) == (text, mode)
    reply = json.loads(p.ok(request.id, {"queued": 1}))
    assert reply["ok"] and reply["result"] == {"queued": 1}


def test_deep_nesting_is_bad_json() -> None:
    """Regression: json's RecursionError escaped ``parse_request`` (orjson stops at 1024 levels)."""
    for text in ("[" * 100_000, '{"a":' * 5000):
        with pytest.raises(p.ProtocolError) as caught:
            p.parse_request(text)
        assert caught.value.code == "bad_json"


# -- /mic ---------------------------------------------------------------------------------------------


def _session() -> mic.MicSession:
    none = cast(Any, None)  # _json and send touch neither the server, the listener nor the socket
    return mic.MicSession(none, none, none, authed=True)


@given(st.text(max_size=200) | st.binary(max_size=50))
def test_a_mic_message_is_an_object_or_an_error_event(message: str | bytes) -> None:
    session = _session()
    request = session._json(message)
    if request is None:
        event = json.loads(session.events.get_nowait())
        assert event["event"] == "error" and event["data"]["code"] in ("bad_json", "bad_request")
        return
    assert isinstance(request, dict) and session.events.empty()
    try:
        start = mic._MicStart.model_validate(request)
    except ValidationError:
        return
    assert start.cmd == "mic.start" and 8000 <= start.rate <= 48000


@given(st.text(max_size=12), st.integers(8000, 48000))
def test_mic_start_is_exactly_mic_start(cmd: str, rate: int) -> None:
    """Regression: the pattern ``^mic.start$`` let ``micXstart`` (any character for the dot) through."""
    message = {"cmd": cmd, "rate": rate}
    if cmd == "mic.start":
        assert mic._MicStart.model_validate(message).rate == rate
    else:
        with pytest.raises(ValidationError):
            mic._MicStart.model_validate(message)


def test_mic_start_refuses_a_lookalike() -> None:
    with pytest.raises(ValidationError, match=r"mic\.start"):
        mic._MicStart.model_validate({"cmd": "mic_start", "rate": 16000})


def test_a_slow_console_gets_the_newest_events_only() -> None:
    session = _session()
    for n in range(mic.EVENT_QUEUE + 5):
        session._json(f"not json {n}")
    assert session.dropped == 5
    assert session.events.qsize() == mic.EVENT_QUEUE

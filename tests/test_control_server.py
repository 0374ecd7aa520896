"""The control server over real WebSockets and real HTTP, with a recording stand-in for the director."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from broadcaster.control.hub import ControlError, EventHub
from broadcaster.control.protocol import COMMANDS, MAX_TEXT_CHARS
from broadcaster.control.settings import ControlConfig, TokenError, load_token
from tests.control_helpers import TOKEN, RecordingShow, console, running_server, ws_url


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as r:
        return r.status, dict(r.headers), await r.read()


async def raw_get(port: int, target: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    return data


# -- authentication ----------------------------------------------------------------------------------


async def test_auth_by_message_then_commands_work() -> None:
    show = RecordingShow()
    async with running_server(show) as server, console(server) as c:
        assert (await c.call("ping")) == {"id": 2, "ok": True, "result": {"pong": True}}


@pytest.mark.parametrize(
    ("query", "headers"),
    [("", {"Authorization": f"Bearer {TOKEN}"}), (f"?token={TOKEN}", {})],
    ids=["bearer-header", "query"],
)
async def test_auth_on_the_upgrade(query: str, headers: dict[str, str]) -> None:
    async with (
        running_server() as server,
        console(server, auth=False, query=query, additional_headers=headers) as c,
    ):
        assert (await c.call("ping"))["ok"]


@pytest.mark.parametrize("how", ["header", "query"])
async def test_wrong_token_on_the_upgrade_is_refused_with_401(how: str) -> None:
    async with running_server() as server:
        kwargs: dict[str, Any] = (
            {"additional_headers": {"Authorization": "Bearer nope"}} if how == "header" else {}
        )
        url = ws_url(server, "?token=nope" if how == "query" else "")
        with pytest.raises(InvalidStatus) as info:
            async with connect(url, **kwargs):
                pass
        assert info.value.response.status_code == 401
        assert server.stats()["auth_failures"] == 1


async def test_commands_before_auth_are_refused_and_change_nothing() -> None:
    show = RecordingShow()
    async with running_server(show) as server, console(server, auth=False) as c:
        for cmd, args in [("say", {"text": "hi", "mode": "now"}), ("interrupt", {}), ("subscribe", {})]:
            reply = await c.call(cmd, **args)
            assert reply["ok"] is False and reply["error"]["code"] == "unauthorized"
        assert show.calls == []
        assert not server.hub.wants("queue")
        assert (await c.call("auth", token=TOKEN))["ok"]
        assert (await c.call("interrupt"))["ok"]
        assert show.calls == [("interrupt", ())]


async def test_wrong_tokens_close_the_connection_after_the_limit() -> None:
    async with running_server(max_auth_failures=3) as server, console(server, auth=False) as c:
        for left in (2, 1):
            reply = await c.call("auth", token="wrong-token-wrong-token")
            assert reply["error"]["code"] == "unauthorized"
            assert f"{left} attempt" in reply["error"]["message"]
        await c.send({"id": 9, "cmd": "auth", "token": "still-wrong"})
        assert (await c.reply(9))["error"]["code"] == "unauthorized"
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(c.ws.recv(), 5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008


async def test_a_silent_unauthenticated_connection_is_closed() -> None:
    async with running_server(auth_timeout_s=0.2) as server, console(server, auth=False) as c:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(c.ws.recv(), 5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008


# -- commands ----------------------------------------------------------------------------------------

COMMAND_CALLS: list[tuple[dict[str, Any], tuple[str, tuple[Any, ...]]]] = [
    ({"cmd": "say", "text": "  hello  ", "mode": "now"}, ("say", ("hello", "now"))),
    ({"cmd": "say", "text": "later"}, ("say", ("later", "next"))),
    ({"cmd": "interrupt"}, ("interrupt", ())),
    ({"cmd": "skip"}, ("skip", ())),
    ({"cmd": "chat.pause"}, ("chat_answering", (False,))),
    ({"cmd": "chat.resume"}, ("chat_answering", (True,))),
    ({"cmd": "queue.list"}, ("queue_list", ())),
    ({"cmd": "queue.remove", "item": 2}, ("queue_remove", (2,))),
    ({"cmd": "queue.move", "item": 1, "position": 3}, ("queue_move", (1, 3))),
    ({"cmd": "script.start", "script": "morning"}, ("script_start", ("morning", None))),
    ({"cmd": "script.start", "script": "morning", "segment": "news"}, ("script_start", ("morning", "news"))),
    ({"cmd": "script.stop"}, ("script_stop", ())),
    ({"cmd": "script.jump", "script": "morning", "segment": "intro"}, ("script_jump", ("morning", "intro"))),
    ({"cmd": "avatar.switch", "name": "sample"}, ("switch_avatar", ("sample",))),
    ({"cmd": "persona.switch", "name": "host"}, ("switch_persona", ("host",))),
    ({"cmd": "review.on"}, ("review_mode", (True,))),
    ({"cmd": "review.off"}, ("review_mode", (False,))),
    ({"cmd": "review.approve", "item": 5}, ("review_approve", (5, None))),
    ({"cmd": "review.approve", "item": 5, "text": "edited"}, ("review_approve", (5, "edited"))),
    ({"cmd": "review.reject", "item": 6}, ("review_reject", (6,))),
    ({"cmd": "state"}, ("state", ())),
    ({"cmd": "voice.mode", "mode": "passthrough"}, ("voice_mode", ("passthrough",))),
]


def test_every_show_command_is_covered() -> None:
    covered = {request["cmd"] for request, _ in COMMAND_CALLS}
    stream = {"auth", "subscribe", "unsubscribe", "ping", "watch.offer", "watch.stop"}
    assert covered | stream == set(COMMANDS)


async def test_every_command_reaches_the_backend_with_its_arguments() -> None:
    show = RecordingShow()
    async with running_server(show) as server, console(server) as c:
        for i, (request, expected) in enumerate(COMMAND_CALLS):
            await c.send({"id": f"r{i}", **request})
            reply = await c.reply(f"r{i}")
            assert reply["ok"], (request, reply)
            assert show.calls[-1] == expected
        assert len(show.calls) == len(COMMAND_CALLS)
        listing = await c.call("queue.list")
        assert listing["result"] == {"items": show.items}
        state = await c.call("state")
        assert state["result"]["scripts"][0]["id"] == "morning"
        assert server.stats()["commands"] == len(COMMAND_CALLS) + 2


BAD_MESSAGES: list[tuple[str | bytes, str]] = [
    ("{not json", "bad_json"),
    ("[1, 2]", "bad_request"),
    ('{"id": 1}', "bad_request"),
    ('{"id": 1, "cmd": "launch"}', "unknown_command"),
    ('{"id": 1, "cmd": "say"}', "bad_request"),
    ('{"id": 1, "cmd": "say", "text": "hi", "mode": "loud"}', "bad_request"),
    ('{"id": 1, "cmd": "say", "text": 5}', "bad_request"),
    ('{"id": 1, "cmd": "say", "text": "   "}', "bad_request"),
    ('{"id": 1, "cmd": "queue.remove", "item": "2"}', "bad_request"),
    ('{"id": 1, "cmd": "queue.remove", "item": true}', "bad_request"),
    ('{"id": 1, "cmd": "queue.move", "item": 1, "position": -1}', "bad_request"),
    ('{"id": 1, "cmd": "interrupt", "force": true}', "bad_request"),
    ('{"id": 1, "cmd": "subscribe", "topics": ["gossip"]}', "bad_request"),
    (json.dumps({"id": 1, "cmd": "say", "text": "x" * (MAX_TEXT_CHARS + 1)}), "bad_request"),
    (b'{"id": 1, "cmd": "interrupt"}', "bad_frame"),
    (json.dumps({"id": 1, "cmd": "say", "text": "x" * 5000}), "too_large"),
]


@pytest.mark.parametrize(
    ("message", "code"), BAD_MESSAGES, ids=[c + str(i) for i, (_, c) in enumerate(BAD_MESSAGES)]
)
async def test_bad_messages_get_an_error_and_change_nothing(message: str | bytes, code: str) -> None:
    show = RecordingShow()
    async with running_server(show, max_message_bytes=4096) as server, console(server) as c:
        await c.send(message)
        reply = await c.reply()
        assert reply["ok"] is False
        assert reply["error"]["code"] == code, reply
        assert reply["error"]["message"]
        if code not in ("bad_json", "bad_frame", "too_large") and message.startswith('{"id": 1'):  # type: ignore[arg-type]
            assert reply["id"] == 1
        assert show.calls == []
        assert not server.hub.wants("queue")
        assert (await c.call("ping"))["ok"]  # the connection stays open


async def test_a_frame_past_the_size_limit_closes_the_connection() -> None:
    async with running_server(max_message_bytes=1024) as server, console(server) as c:
        await c.send("x" * (2 << 20))
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(c.ws.recv(), 5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        async with console(server) as again:  # the server goes on
            assert (await again.call("ping"))["ok"]


async def test_backend_errors_become_error_replies_and_the_server_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    show = RecordingShow()
    async with running_server(show) as server, console(server) as c:
        reply = await c.call("queue.remove", item=99)
        assert reply["error"] == {"code": "unknown_item", "message": "no queued item 99"}
        show.fail = ControlError("nothing_on_air", "nothing to interrupt")
        assert (await c.call("interrupt"))["error"]["code"] == "nothing_on_air"
        show.fail = RuntimeError("the director tripped")
        reply = await c.call("skip")
        assert reply["error"] == {"code": "internal", "message": "RuntimeError: the director tripped"}
        assert "the director tripped" in caplog.text and "Traceback" in caplog.text
        assert (await c.call("skip"))["ok"]
        assert show.calls == [("skip", ())]
        assert server.stats()["errors"] == 3


# -- events ------------------------------------------------------------------------------------------


async def test_subscribers_receive_events_until_they_unsubscribe() -> None:
    hub = EventHub()
    async with running_server(hub=hub) as server, console(server) as c, console(server) as other:
        reply = await c.call("subscribe", topics=["queue", "on_air", "preview"])
        assert reply["result"] == {"topics": ["queue", "on_air", "preview"]}
        assert (await other.call("subscribe", topics=["review"]))["ok"]
        hub.publish("queue", {"items": [{"id": 3}]})
        hub.publish("triage", {"verdict": "queued"})  # nobody asked for it
        hub.publish("on_air", {"item": 3, "lane": "chat", "text": "你好"})
        hub.publish("preview", b"JPEG" + bytes(12) + b"\xff\xd8")
        hub.publish("review", {"item": 4, "status": "pending"})
        assert await c.event(lambda t, _: t == "queue") == ("queue", {"items": [{"id": 3}]})
        assert (await c.event(lambda t, _: t == "on_air"))[1]["text"] == "你好"
        assert (await c.frame()).startswith(b"JPEG")
        assert (await other.event(lambda t, _: True)) == ("review", {"item": 4, "status": "pending"})
        assert all(topic != "triage" for topic, _ in c.events)
        assert (await c.call("unsubscribe"))["result"] == {"topics": []}
        assert not hub.wants("queue") and not hub.wants("preview") and hub.wants("review")


async def test_a_slow_subscriber_loses_old_events_and_is_told_without_holding_up_others() -> None:
    hub = EventHub()
    async with (
        running_server(hub=hub, subscriber_queue=16) as server,
        console(server, max_queue=1) as slow,
        console(server) as quick,
    ):
        assert (await slow.call("subscribe", topics=["triage"]))["ok"]
        assert (await quick.call("subscribe", topics=["queue"]))["ok"]
        blob = "x" * 20_000
        for i in range(2000):  # far more than the socket buffers hold: the slow console's sender stalls
            hub.publish("triage", {"n": i, "blob": blob})
            if i % 100 == 0:
                await asyncio.sleep(0)  # let the server write what it can
        hub.publish("queue", {"items": []})
        assert await quick.event(lambda t, _: t == "queue") == ("queue", {"items": []})
        assert (await quick.call("ping"))["ok"]
        _, notice = await slow.event(lambda t, _: t == "dropped")
        assert notice["count"] > 0
        _, last = await slow.event(lambda t, d: t == "triage" and d["n"] == 1999)
        assert last["n"] == 1999
        assert server.stats()["events_dropped"] >= notice["total"]


async def test_metrics_snapshots_are_published_on_the_metrics_topic() -> None:
    stats = {"ticks": 250, "late_p99_ms": 12.0, "chat": {"queued": 4, "feeds": {}}}
    async with running_server(stats=lambda: stats, metrics_interval_s=0.2) as server, console(server) as c:
        assert (await c.call("subscribe", topics=["metrics"]))["ok"]
        _, snap = await c.event(lambda t, _: t == "metrics")
        assert snap["ticks"] == 250 and snap["late_p99_ms"] == 12.0
        assert snap["chat"] == {"queued": 4, "feeds": {}}
        assert snap["control"]["clients"] == 1


# -- HTTP --------------------------------------------------------------------------------------------


async def test_healthz_is_200_when_every_component_is_ok_and_503_otherwise() -> None:
    components = {"program": {"ok": True, "state": "on air"}, "rtmp": {"ok": True, "state": "live"}}

    def boom() -> dict[str, Any]:
        raise RuntimeError("health is ill")

    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with running_server(health=lambda: components) as server:
        status, headers, body = await get(server.url + "healthz", auth)
        assert status == 200 and headers["Content-Type"] == "application/json"
        doc = json.loads(body)
        assert doc["ok"] is True and doc["components"]["rtmp"]["state"] == "live"
        assert doc["components"]["control"]["ok"] is True
        components["rtmp"] = {"ok": False, "state": "retrying in 4s"}
        status, _, body = await get(server.url + "healthz", auth)
        assert status == 503 and json.loads(body)["components"]["rtmp"]["ok"] is False
        status, _, body = await get(server.url + "healthz")  # a probe without the token: the verdict
        assert status == 503 and json.loads(body) == {"ok": False, "degraded": False}
    async with running_server(health=boom) as server:
        status, _, body = await get(server.url + "healthz", auth)
        assert status == 503 and "health is ill" in json.loads(body)["components"]["health"]["error"]


async def test_the_dashboard_and_its_assets_are_served_locally() -> None:
    async with running_server() as server:
        status, headers, body = await get(server.url)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        assert b'data-testid="preview"' in body and b"http" not in body.replace(b"http-equiv", b"")
        for asset, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
            status, headers, body = await get(server.url + "static/" + asset)
            assert status == 200 and headers["Content-Type"].startswith(kind) and body
        for path in ("/nope", "/static/missing.js", "/static/../server.py", "/static/%2e%2e/server.py"):
            assert (await raw_get(server.port, path)).startswith(b"HTTP/1.1 404"), path


async def test_a_foreign_host_header_is_refused_on_loopback() -> None:
    async with running_server() as server:
        status, _, _ = await get(server.url + "healthz", headers={"Host": "evil.example:80"})
        assert status == 421
        status, _, _ = await get(server.url + "healthz", headers={"Host": f"localhost:{server.port}"})
        assert status == 200


# -- the token ---------------------------------------------------------------------------------------


def test_the_token_comes_from_the_environment_first(tmp_path: Path) -> None:
    token = load_token(ControlConfig(), tmp_path, {"BROADCASTER_TOKEN": "from-the-environment-123"})
    assert (token.value, token.source) == ("from-the-environment-123", "env")
    assert "from-the-environment" not in repr(token)
    assert not (tmp_path / "data").exists()


def test_a_missing_token_file_is_created_private_on_loopback(tmp_path: Path) -> None:
    first = load_token(ControlConfig(), tmp_path, {})
    path = tmp_path / "data" / "control-token"
    assert first.source == "created" and first.path == path and len(first.value) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_token(ControlConfig(), tmp_path, {})
    assert (again.value, again.source) == (first.value, "file")


def test_a_public_host_needs_a_token_it_was_given(tmp_path: Path) -> None:
    cfg = ControlConfig(host="0.0.0.0")
    with pytest.raises(TokenError, match="BROADCASTER_TOKEN"):
        load_token(cfg, tmp_path, {})
    assert not (tmp_path / "data").exists()
    (tmp_path / "token").write_text("short\n")
    with pytest.raises(TokenError, match="too short"):
        load_token(cfg.model_copy(update={"token_file": "token"}), tmp_path, {})
    (tmp_path / "token").write_text("a-token-long-enough-for-this\n")
    assert load_token(cfg.model_copy(update={"token_file": "token"}), tmp_path, {}).source == "file"

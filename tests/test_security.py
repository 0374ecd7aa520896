"""The control plane's defences over real sockets: Origin, HTTP auth, rate limits, lockouts, the
console cap, loopback by default, private config files, and no secret in any log line, reply or figure
of the real process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from broadcaster.control.exposure import exposed, secret_keys
from broadcaster.control.limits import AddressLimits, Limits, TokenBucket
from broadcaster.control.settings import ControlConfig
from broadcaster.doctor import GROUPS
from tests.conftest import free_port
from tests.control_helpers import TOKEN, Console, console, running_server, ws_url
from tests.http_servers import serve
from tests.run_cli import ROOT, run

BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as r:
        return r.status, dict(r.headers), await r.read()


async def refused_with(url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, **kwargs):
            pass
    return info.value.response.status_code


# -- Origin ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ws", "/mic"])
async def test_a_websocket_from_another_site_is_refused_before_any_token(path: str) -> None:
    async with running_server() as server:
        url = f"ws://127.0.0.1:{server.port}{path}"
        for origin in ("http://evil.example", "null", f"http://127.0.0.1:{server.port + 1}"):
            status = await refused_with(url, origin=origin, additional_headers=BEARER)
            assert status == 403, origin
        assert server.stats()["refused"] == 3
        assert server.stats()["auth_failures"] == 0  # refused before the token was looked at


async def test_the_consoles_own_origin_and_allowed_origins_open_and_no_origin_still_needs_the_token() -> None:
    async with running_server(allowed_origins=("https://Console.Example.org:443/",)) as server:
        assert server.cfg.allowed_origins == ("https://console.example.org",)
        for origin in (f"http://127.0.0.1:{server.port}", "https://console.example.org"):
            async with connect(ws_url(server), origin=origin) as ws:  # type: ignore[arg-type]
                assert (await Console(ws).call("auth", token=TOKEN))["ok"]
        async with console(server, auth=False) as c:  # no Origin: a script, not a page
            assert (await c.call("ping"))["error"]["code"] == "unauthorized"


def test_a_malformed_allowed_origin_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="not an origin"):
        ControlConfig(allowed_origins=("console.example.org/path",))


# -- HTTP auth ---------------------------------------------------------------------------------------


async def test_metrics_need_the_token_and_a_bare_healthz_says_only_its_verdict() -> None:
    health = {"rtmp:main": {"ok": True, "state": "live"}}
    async with running_server(health=lambda: health, stats=lambda: {"ticks": 5}) as server:
        status, headers, body = await get(server.url + "metrics")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert b"broadcaster_" not in body
        status, _, _ = await get(server.url + "metrics", {"Authorization": "Bearer wrong-token-wrong"})
        assert status == 401 and server.stats()["auth_failures"] == 1
        status, _, body = await get(server.url + "metrics", BEARER)
        assert status == 200 and b"broadcaster_program_ticks_total 5" in body

        status, _, body = await get(server.url + "healthz")
        assert (status, json.loads(body)) == (200, {"ok": True, "degraded": False})
        status, _, body = await get(server.url + "healthz", BEARER)
        assert status == 200 and json.loads(body)["components"]["rtmp:main"]["state"] == "live"
        status, _, _ = await get(server.url + "healthz", {"Authorization": "Bearer wrong-token-wrong"})
        assert status == 401
    async with running_server(stats=lambda: {"ticks": 5}, http_auth=False) as server:
        status, _, body = await get(server.url + "metrics")
        assert status == 200 and b"broadcaster_program_ticks_total" in body


# -- rate limits -------------------------------------------------------------------------------------


async def test_commands_past_the_rate_get_rate_limited_and_a_flood_closes_the_connection() -> None:
    async with running_server(commands_per_second=1, command_burst=4) as server, console(server) as c:
        replies = [await c.call("ping") for _ in range(8)]  # the auth took one token of the burst
        assert [r["ok"] for r in replies[:3]] == [True, True, True]
        # a token comes back each second: however slow the machine, the burst runs out within 8 calls
        refused = [r for r in replies if not r["ok"]]
        assert refused and refused[0]["error"]["code"] == "rate_limited"
        with pytest.raises(ConnectionClosed) as info:
            for i in range(20):
                await c.send({"id": f"f{i}", "cmd": "ping"})
                await c.reply(f"f{i}")
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008
        assert server.stats()["rate_limited"] >= 5
        async with console(server) as again:  # another connection has its own bucket
            assert (await again.call("ping"))["ok"]


async def test_wrong_tokens_over_many_connections_lock_the_address_out() -> None:
    async with running_server(auth_failures_per_address=3, auth_lockout_s=600) as server:
        wrong = {"Authorization": "Bearer wrong-token-wrong-token"}
        for _ in range(2):
            assert await refused_with(ws_url(server), additional_headers=wrong) == 401
        async with console(server, auth=False) as c:
            assert (await c.call("auth", token="still-wrong-token-here"))["error"]["code"] == "unauthorized"
            locked = await c.call("auth", token=TOKEN)  # the right token, but guessing is over for now
            assert locked["error"]["code"] == "rate_limited"
        assert await refused_with(ws_url(server), additional_headers=BEARER) == 429
        assert await refused_with(f"ws://127.0.0.1:{server.port}/mic", additional_headers=BEARER) == 429
        status, headers, _ = await get(server.url + "metrics", BEARER)
        assert status == 429 and int(headers["Retry-After"]) > 100
        assert (await get(server.url + "healthz"))[0] == 200  # probes still work
        assert server.stats()["auth_failures"] == 3


def test_an_address_bucket_refills_and_forgets_nothing_it_should_remember() -> None:
    now = [0.0]
    limits = AddressLimits(
        Limits(connect_rate=1, connect_burst=2, auth_failures=2, auth_lockout_s=10), lambda: now[0]
    )
    assert [limits.connect("a"), limits.connect("a"), limits.connect("a"), limits.connect("b")] == [
        True,
        True,
        False,
        True,
    ]
    limits.failed("a")
    limits.failed("a")
    assert limits.locked("a") == pytest.approx(5.0) and limits.locked("b") == 0
    now[0] = 5.0
    assert limits.locked("a") == 0 and limits.connect("a")
    bucket = TokenBucket(2, 1, lambda: now[0])
    assert bucket.take() and not bucket.take() and bucket.wait_s() == pytest.approx(0.5)


async def test_connection_attempts_per_address_are_limited() -> None:
    async with running_server(connects_per_second=0.1, connect_burst=3) as server:
        statuses = [(await get(server.url + "metrics", BEARER))[0] for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        # a bare liveness probe is never limited: a 429 would read as a dead show
        assert [(await get(server.url + "healthz"))[0] for _ in range(4)] == [200] * 4
        assert await refused_with(ws_url(server)) == 429


async def test_consoles_past_the_cap_are_refused_until_one_leaves() -> None:
    async with running_server(max_consoles=2) as server, console(server) as first:
        async with console(server, auth=False):
            assert await refused_with(ws_url(server), additional_headers=BEARER) == 503
        async with asyncio.timeout(5):
            while True:  # the server sees the second one go
                try:
                    async with console(server) as third:
                        assert (await third.call("ping"))["ok"]
                    break
                except InvalidStatus:
                    await asyncio.sleep(0.05)
        assert (await first.call("ping"))["ok"]


# -- loopback by default -----------------------------------------------------------------------------


def test_every_listening_address_is_loopback_by_default() -> None:
    assert ControlConfig().host == "127.0.0.1"
    text = (ROOT / "config.toml").read_text()
    control = text.split("\n[control]\n", 1)[1]
    assert '\nhost = "127.0.0.1"' in control.split("\n[", 1)[0]
    assert 'host", "127.0.0.1"' in (ROOT / "broadcaster/show/local_llm.py").read_text()


def test_a_public_bind_without_a_chosen_token_is_refused_by_the_real_program(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BROADCASTER_TOKEN"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "broadcaster",
            "run",
            *("--for", "1", "--set", 'control.host="0.0.0.0"', "--set", "outputs=[]", "--set", "feeds=[]"),
            *("--set", f"control.token_file={json.dumps(str(tmp_path / 'token'))}"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "BROADCASTER_TOKEN" in done.stderr and "0.0.0.0" in done.stderr
    assert not (tmp_path / "token").exists()


# -- config file permissions -------------------------------------------------------------------------

SECRET_CONFIG = """
[control]
token_env = "BROADCASTER_TOKEN"
token_file = "data/control-token"

[[outputs]]
type = "rtmp"
url = "rtmp://live.example.org/app/stream-key-123"

[[feeds]]
type = "bilibili"
room_id = 1
cookie_env = "BILI_COOKIE"
token = "a-danmaku-key"
"""


def test_a_config_with_secrets_readable_by_others_is_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(SECRET_CONFIG)
    assert list(secret_keys(tomllib.loads(SECRET_CONFIG))) == ["outputs.0.url", "feeds.0.token"]
    path.chmod(0o644)
    warning = exposed(path)
    assert warning is not None and "outputs.0.url" in warning and "chmod 600" in warning
    assert "stream-key-123" not in warning and "a-danmaku-key" not in warning
    path.chmod(0o600)
    assert exposed(path) is None
    (tmp_path / "plain.toml").write_text('[control]\nhost = "127.0.0.1"\n')
    (tmp_path / "plain.toml").chmod(0o644)
    assert exposed(tmp_path / "plain.toml") is None


def test_the_program_and_the_doctor_warn_at_start(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    stream = '\n[[outputs]]\ntype = "rtmp"\nurl = "rtmp://live.example.org/app/stream-key-123"\n'
    path.write_text((ROOT / "config.toml").read_text() + stream)
    path.chmod(0o644)
    done = run("check-config", "--config", str(path), timeout=60)
    assert "other users of this machine can read it" in done.stderr, done.stderr[-2000:]
    assert "stream-key-123" not in done.stderr + done.stdout
    others = [x for g in GROUPS if g != "control" for x in ("--skip", g)]
    doctor = run("doctor", "--config", str(path), "--json", *others, timeout=60)
    assert "config secrets" in doctor.stdout and "chmod 600" in doctor.stdout, doctor.stdout[-2000:]
    path.chmod(0o600)
    assert "other users" not in run("check-config", "--config", str(path), timeout=60).stderr


# -- no secret leaves the real process ---------------------------------------------------------------

SECRETS = {
    "BROADCASTER_TOKEN": "console-SECRET-0a1b2c3d4e5f",
    "LLM_API_KEY": "sk-llm-SECRET-9f8e7d6c",
    "OPENAI_API_KEY": "sk-tts-SECRET-5a4b3c2d",
    "TWITCH_OAUTH_TOKEN": "oauth:twitchSECRET7q7q7q",
    "BILI_COOKIE": "SESSDATA=biliSECRETcookie; DedeUserID=5; buvid3=bvSECRET3",
    "TURN_PASSWORD": "turn-SECRET-pw-1234",
}
IN_CONFIG = {  # secrets written into the config itself (URLs, a bearer token)
    "stream": "streamkeySECRET42",
    "whip": "whipbearerSECRET5",
    "whipq": "whipquerySECRET9",
    "json": "jsonquerySECRET3",
    "llm": "llmpassSECRET8",
    "bili": "biliaccessSECRET6",
}


def secret_settings(base: str, dead: int) -> dict[str, Any]:
    """Every kind of secret the program holds, pointed at a server that refuses them all."""
    ws = base.replace("http://", "ws://")
    return {
        "outputs": [
            {
                "type": "rtmp",
                "url": f"rtmp://127.0.0.1:{dead}/live/{IN_CONFIG['stream']}",
                "backoff_initial_s": 0.2,
            },
            {
                "type": "whip",
                "url": f"{base}/whip/?app=live&token={IN_CONFIG['whipq']}",
                "token": IN_CONFIG["whip"],
                "backoff_initial_s": 0.2,
            },
        ],
        "feeds": [
            {
                "type": "twitch",
                "channel": "somechannel",
                "url": ws,
                "nick": "botnick",
                "backoff_initial_s": 0.1,
            },
            {
                "type": "bilibili",
                "room_id": 7,
                "url": f"{ws}/sub",
                "info_url": f"{base}/info?room_id={{room_id}}&access_key={IN_CONFIG['bili']}",
                "cookie_env": "BILI_COOKIE",
                "backoff_initial_s": 0.1,
            },
            {"type": "json", "url": f"{ws}/relay?token={IN_CONFIG['json']}", "backoff_initial_s": 0.1},
        ],
        "llm.base_url": base.replace("http://", f"http://user:{IN_CONFIG['llm']}@") + "/v1",
        "voice.engines": ["openai", "local"],
        "voice.openai.base_url": f"{base}/v1",
        "rtc.ice_servers": [
            {"urls": "turn:127.0.0.1:3478", "username": "me", "credential_env": "TURN_PASSWORD"}
        ],
        "rtc.host_addresses": ["127.0.0.1"],
        "chat.interval_s": 0,
    }


def inline_toml(value: Any) -> str:
    """A value as TOML (what ``--set`` takes): inline tables and arrays for dicts and lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {inline_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(inline_toml(v) for v in value) + "]"
    return json.dumps(value)


def other_processes_cmdlines(besides: int) -> str:
    """Every process's command line (what any user of the machine can read), but ``besides``'s."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != besides:
            try:
                out.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
    return "\n".join(out)


async def test_no_secret_appears_in_the_log_metrics_healthz_state_or_summary(
    avatar_root: Path, tmp_path: Path
) -> None:
    seen: list[str] = []

    async def refuse(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        return web.Response(status=401, text=f"refused {request.path_qs}")  # an echoing server

    async with serve(refuse) as base:
        port, dead = free_port(), free_port()
        keys = {
            "avatar.dir": str(avatar_root),
            "store.path": str(tmp_path / "show.sqlite3"),
            "voice.cache.dir": str(tmp_path / "tts"),
            "control.port": port,
            "show.fillers.enabled": False,
            **secret_settings(base, dead),
        }
        sets = [x for key, value in keys.items() for x in ("--set", f"{key}={inline_toml(value)}")]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "broadcaster", "run", "--for", "14", "--chat", "ada: is it shipping today?", *sets),
            cwd=ROOT,
            env={**os.environ, **SECRETS},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stderr_task = asyncio.create_task(process.stderr.read())  # type: ignore[union-attr]
        try:
            ws = None
            async with asyncio.timeout(60):
                while ws is None:
                    try:
                        ws = await connect(
                            f"ws://127.0.0.1:{port}/ws",
                            additional_headers={"Authorization": f"Bearer {SECRETS['BROADCASTER_TOKEN']}"},
                        )
                    except OSError:
                        if process.returncode is not None:
                            ended = (await stderr_task).decode(errors="replace")
                            raise AssertionError(ended[-3000:]) from None
                        await asyncio.sleep(0.3)
            async with ws:
                c = Console(ws)
                await asyncio.sleep(6)  # the outputs, feeds, LLM and TTS fail and retry meanwhile
                state = json.dumps(await c.call("state"))
                internal = json.dumps(await c.call("review.approve", item=987654))
            auth = {"Authorization": f"Bearer {SECRETS['BROADCASTER_TOKEN']}"}
            _, _, metrics = await get(f"http://127.0.0.1:{port}/metrics", auth)
            _, _, health = await get(f"http://127.0.0.1:{port}/healthz", auth)
            commands = other_processes_cmdlines(besides=process.pid)  # its own has them from --set
            async with asyncio.timeout(60):
                await process.wait()
            stderr = (await stderr_task).decode(errors="replace")
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0, stderr[-3000:]
    summary = stderr.rsplit("summary ", 1)[1]
    where = {
        "stderr": stderr,
        "metrics": metrics.decode(),
        "healthz": health.decode(),
        "state": state,
        "reply": internal,
        "summary": summary,
        "command lines": commands,
    }
    secrets = [*SECRETS.values(), *IN_CONFIG.values(), "twitchSECRET", "biliSECRETcookie", "bvSECRET3"]
    leaks = [
        (name, line[:300])
        for name, text in where.items()
        for line in text.splitlines()
        for s in secrets
        if s in line
    ]
    assert leaks == [], "\n".join(f"{n}: {line}" for n, line in leaks)
    # the show did run into each of them: the redacted forms are there
    assert f"rtmp://127.0.0.1:{dead}/live/***" in stderr
    assert "/info" in seen and "broadcaster_output_state" in where["metrics"]
    assert '"components"' in where["healthz"] and "outputs" in json.loads(summary)

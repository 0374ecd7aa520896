"""The going-live check: real servers, the real TTS and the real command line."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from aiohttp import web
from rich.console import Console

from broadcaster.config import load_config
from broadcaster.doctor import Result, render, run_groups
from broadcaster.doctor_checks import Check, Group, Outcome, speaks_chinese
from broadcaster.doctor_outputs import record_outcome, whip_outcome
from broadcaster.doctor_show import VoiceChecks
from broadcaster.doctor_voice import voice_in_group
from broadcaster.stream.rtc.settings import RtcConfig, WhipOutputConfig
from tests.conftest import NginxRtmp, free_port
from tests.http_servers import serve
from tests.openai_double import ScriptedLlm
from tests.run_cli import ROOT, Finished, command, run
from tests.whip_endpoint import WhipEndpoint, serve_whip

LOOPBACK_RTC = RtcConfig(host_addresses=["127.0.0.1"])
TOKEN = "whip-token-do-not-show"
GROUPS_BUT = {
    name: [
        arg
        for other in ("config", "avatar", "fonts", "tts", "llm", "outputs", "control", "clock", "store")
        if other != name
        for arg in ("--skip", other)
    ]
    for name in ("llm", "outputs")
}


async def test_whip_publishes_and_deletes_a_session(loopback_ice: None) -> None:
    async with serve_whip(WhipEndpoint(token=TOKEN)) as endpoint:
        output = WhipOutputConfig(type="whip", url=f"{endpoint.url}?token={TOKEN}", token=TOKEN)
        outcome = await whip_outcome(output, LOOPBACK_RTC, 5)
    assert outcome.status == "OK", outcome.detail
    assert "OPTIONS 204" in outcome.detail and "test session deleted" in outcome.detail
    assert endpoint.options == 1
    assert endpoint.authorizations == [f"Bearer {TOKEN}"]
    assert endpoint.deletes == 1 and endpoint.latest.deleted
    assert TOKEN not in outcome.detail


async def test_whip_refused_by_a_closed_connection(loopback_ice: None) -> None:
    async def refuse(request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return web.Response(status=405)
        await request.read()
        assert request.transport is not None
        request.transport.close()  # as SRS does when it refuses a publish
        return web.Response()

    async with serve(refuse) as base:
        outcome = await whip_outcome(WhipOutputConfig(type="whip", url=f"{base}/whip"), LOOPBACK_RTC, 5)
    assert outcome.status == "FAIL"
    assert "OPTIONS 405" in outcome.detail
    assert "closed the connection without answering" in outcome.detail


async def test_whip_nothing_listening() -> None:
    output = WhipOutputConfig(type="whip", url=f"http://127.0.0.1:{free_port()}/whip")
    outcome = await whip_outcome(output, LOOPBACK_RTC, 5)
    assert outcome.status == "FAIL" and "cannot connect" in outcome.detail


async def test_record_folder_writable_with_room(tmp_path: Path) -> None:
    folder = tmp_path / "recordings" / "room1"
    outcome = await record_outcome(folder, 2628, warn_bytes=1, fail_bytes=1)
    assert outcome.status == "OK", outcome.detail
    assert "(created) is writable" in outcome.detail and "h at 2628 kb/s" in outcome.detail
    assert list(folder.iterdir()) == []  # the probe file is gone
    low = await record_outcome(folder, 2628, warn_bytes=10**18, fail_bytes=1)
    assert low.status == "WARN" and "GB left" in low.detail
    full = await record_outcome(folder, 2628, warn_bytes=10**18, fail_bytes=10**18)
    assert full.status == "FAIL" and "free some space" in full.detail


async def test_record_folder_that_cannot_be_made_or_written(tmp_path: Path) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("")
    outcome = await record_outcome(in_the_way / "recordings", 2628)
    assert outcome.status == "FAIL" and "cannot create" in outcome.detail
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        outcome = await record_outcome(locked, 2628)
        assert outcome.status == "FAIL" and "cannot write" in outcome.detail


async def test_a_crash_or_a_hang_is_a_row_and_the_rest_still_runs() -> None:
    closed: list[bool] = []

    async def crash() -> Outcome:
        raise RuntimeError("boom [red]not markup[/red]")

    async def hang() -> Outcome:
        await asyncio.sleep(60)
        return Outcome("OK", "")

    async def fine() -> Outcome:
        return Outcome("OK", "fine")

    async def close() -> None:
        closed.append(True)

    group = Group("g", [Check("crash", crash, 1), Check("hang", hang, 0.1), Check("fine", fine, 1)], close)
    results = await run_groups([group])
    assert [(r.check, r.result) for r in results] == [("crash", "FAIL"), ("hang", "FAIL"), ("fine", "OK")]
    assert results[0].detail == "RuntimeError: boom [red]not markup[/red]"
    assert results[1].detail == "no result within 0.1 s"
    assert closed == [True]
    console = Console(record=True, width=200)
    render(results, console)
    text = console.export_text()
    assert "boom [red]not markup[/red]" in text and "not ready to go live" in text


async def test_tts_engines_speak(tmp_path: Path) -> None:
    cfg = load_config(None, [f'voice.cache.dir="{tmp_path}"'])
    assert speaks_chinese(cfg)
    results = await run_groups([VoiceChecks(cfg, 10).group()])
    assert [(r.check, r.result) for r in results] == [("tts local", "OK")], results
    assert "first audio in" in results[0].detail and "s of speech" in results[0].detail


def doctor(avatar_root: Path, tmp_path: Path, *args: str) -> Finished:
    return run(
        "doctor",
        *("--set", f'avatar.dir="{avatar_root}"', "--set", "outputs=[]", "--set", "control.port=0"),
        *("--set", f'store.path="{tmp_path / "store.sqlite3"}"'),
        *args,
        timeout=60,
    )


def row(table: str, needle: str) -> str:
    lines = [line for line in table.splitlines() if needle in line]
    assert len(lines) == 1, table
    return lines[0]


def test_doctor_end_to_end(nginx: NginxRtmp, avatar_root: Path, tmp_path: Path) -> None:
    good = f"rtmp://127.0.0.1:{nginx.port}/live/goodkey42"
    dead_port = free_port()
    dead = f"rtmp://127.0.0.1:{dead_port}/live/deadkey77"
    done = doctor(avatar_root, tmp_path, "--skip", "llm", "--skip", "tts", "--output", good, "--output", dead)
    assert done.code == 1, done.stdout + done.stderr
    everything = done.stdout + done.stderr
    assert "goodkey42" not in everything and "deadkey77" not in everything
    assert "Traceback" not in everything
    assert "OK" in row(done.stdout, f"127.0.0.1:{nginx.port}/live/***")
    assert "FAIL" in row(done.stdout, f"127.0.0.1:{dead_port}/live/***")
    assert "refused the connection" in done.stdout
    for check in ("config", "avatar sample", "caption font", "control port", "timer jitter", "store"):
        assert check in done.stdout
    assert "SKIP" in row(done.stdout, "--skip llm")
    assert "not ready to go live" in done.stdout

    done = doctor(avatar_root, tmp_path, *GROUPS_BUT["outputs"], "--json", "--output", good, "--output", dead)
    assert done.code == 1
    report = json.loads(done.stdout)
    assert not report["ok"] and report["counts"]["FAIL"] == 1
    outputs = [c for c in report["checks"] if c["group"] == "outputs"]
    assert [c["result"] for c in outputs] == ["OK", "FAIL"]
    assert "deadkey77" not in done.stdout


def test_doctor_bad_arguments_exit_2(tmp_path: Path) -> None:
    done = run("doctor", "--output", "ftp://x/y", "--skip", "llm")
    assert done.code == 2 and "error: --output 'ftp://x/y'" in done.stderr
    done = run("doctor", "--skip", "everything")
    assert done.code == 2 and "invalid choice" in done.stderr


async def test_llm_check_against_an_openai_endpoint() -> None:
    llm = ScriptedLlm(["Hello", " there,", " I am", " the host."])
    url = await llm.start()
    try:
        process = await asyncio.create_subprocess_exec(
            *command("doctor", "--json", *GROUPS_BUT["llm"], "--set", f'llm.base_url="{url}"'),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        await llm.close()
    assert process.returncode == 0, err.decode()
    checks = [Result(**c) for c in json.loads(out)["checks"] if c["group"] == "llm"]
    assert [(c.check, c.result) for c in checks] == [("llm reply", "OK")]
    assert "first token in" in checks[0].detail and "Hello there, I am the host." in checks[0].detail
    assert len(llm.requests) == 1
    messages = llm.requests[0]["messages"]
    assert messages[0]["role"] == "system" and "Chat message from viewer" in messages[-1]["content"]


async def test_voice_in_checks_the_vad_and_each_recogniser(tmp_path: Path) -> None:
    dead = f"ws://127.0.0.1:{free_port()}"
    cfg = load_config(
        None,
        [
            'voice_in.asr.engine="funasr_server"',
            f'voice_in.asr.funasr_server.url="{dead}"',
            'voice_in.asr.fallback="pocketsphinx"',
        ],
    )
    results = await run_groups([voice_in_group(cfg, 10)])
    verdicts = {r.check: (r.result, r.detail) for r in results}
    assert verdicts["vad silero"][0] == "OK", verdicts
    assert verdicts["asr funasr_server"][0] == "FAIL" and dead in verdicts["asr funasr_server"][1], verdicts
    assert verdicts["asr pocketsphinx"][0] == "OK", verdicts
    missing = load_config(
        None, ['voice_in.asr.engine="funasr"', f'voice_in.asr.funasr.model_dir="{tmp_path}/none"']
    )
    [_vad, funasr] = await run_groups([voice_in_group(missing, 10)])
    assert funasr.result == "FAIL" and f"{tmp_path}/none" in funasr.detail, funasr
    off = load_config(None, ["voice_in.enabled=false"])
    [skipped] = await run_groups([voice_in_group(off, 10)])
    assert skipped.result == "SKIP"

"""The /mic WebSocket against the real show: authentication, start, busy, bad audio, the mode switch."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench.mic_client import MicClient
from bench.voice_show import running_show


async def events(ws: object, count: int) -> list[dict[str, object]]:
    out = []
    async with asyncio.timeout(10):
        while len(out) < count:
            raw = await ws.recv()  # type: ignore[attr-defined]
            assert isinstance(raw, str), "events are text frames"
            out.append(orjson.loads(raw))
    return out


async def test_the_mic_socket_authenticates_starts_refuses_and_switches(
    avatar_root: Path, tmp_path: Path
) -> None:
    overrides = [
        f"avatar.dir={json.dumps(str(avatar_root))}",
        'voice_in.mode="off"',
        "voice_in.max_rate=24000",
    ]
    async with running_show(tmp_path, overrides) as show:
        url = f"ws://127.0.0.1:{show.port}/mic"
        with pytest.raises(InvalidStatus):  # a wrong token on the upgrade is refused before it opens
            await connect(url, additional_headers={"Authorization": "Bearer nope"})
        async with connect(url) as ws:  # a wrong token in the first message closes it
            await ws.send(json.dumps({"cmd": "auth", "token": "nope"}))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        async with connect(url) as ws:  # the token in the first message, then mic.start
            await ws.send(json.dumps({"cmd": "auth", "token": show.token}))
            await ws.send(b"\x00\x00")  # audio before mic.start
            await ws.send(json.dumps({"cmd": "mic.start", "rate": 5}))
            await ws.send(json.dumps({"cmd": "mic.start", "rate": 48000}))  # over voice_in.max_rate
            await ws.send(json.dumps({"cmd": "mic.start", "rate": 16000}))
            first = await events(ws, 4)
            assert [e["event"] for e in first] == ["error", "error", "error", "mic"], first
            assert "max_rate" in str(first[2]["data"])
            assert first[3]["data"]["state"] == "live" and first[3]["data"]["rate"] == 16000
            assert first[3]["data"]["mode"] == "off"

            # a second console's microphone is told the first one has it
            other = MicClient(show.port, show.token, 16000)
            busy = await other.open()
            assert busy["state"] == "busy"
            await other.close()

            # blocks that cannot be audio are skipped and counted; good ones go on
            listener = show.app.listener
            assert listener is not None
            await ws.send(b"\x00\x01\x02")
            await ws.send(bytes(16000 * 2 * 2))  # two seconds: over the one-second limit
            for _ in range(5):
                await ws.send(np.zeros(320, "<i2").tobytes())
            bad = await events(ws, 2)
            assert all(e["event"] == "error" and e["data"]["code"] == "bad_audio" for e in bad)
            await asyncio.sleep(0.3)
            assert listener.stats.bad_blocks == 2 and listener.stats.blocks == 5

            # the console switches the mode on the control socket; the mic is told
            ws_url = f"ws://127.0.0.1:{show.port}/ws"
            async with connect(ws_url, additional_headers={"Authorization": f"Bearer {show.token}"}) as ctl:
                await ctl.send(json.dumps({"id": 1, "cmd": "voice.mode", "mode": "passthrough"}))
                reply = orjson.loads(await ctl.recv())
                assert reply["ok"] and reply["result"] == {"mode": "passthrough"}
                await ctl.send(json.dumps({"id": 2, "cmd": "state"}))
                state = orjson.loads(await ctl.recv())["result"]
                assert state["voice"]["mode"] == "passthrough" and state["voice"]["mic"] is True
                await ctl.send(json.dumps({"id": 3, "cmd": "voice.mode", "mode": "loud"}))
                assert not orjson.loads(await ctl.recv())["ok"]
            told = await events(ws, 1)
            assert told[0]["event"] == "mic" and told[0]["data"]["mode"] == "passthrough"
            await ws.send(json.dumps({"cmd": "mic.stop"}))
        await asyncio.sleep(0.2)
        assert show.app.listener is not None and show.app.listener.link is None  # let go


async def test_with_voice_in_off_the_mic_socket_says_so(avatar_root: Path, tmp_path: Path) -> None:
    overrides = [f"avatar.dir={json.dumps(str(avatar_root))}", "voice_in.enabled=false"]
    async with running_show(tmp_path, overrides) as show:
        url = f"ws://127.0.0.1:{show.port}/mic"
        async with connect(url, additional_headers={"Authorization": f"Bearer {show.token}"}) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and "voice_in.enabled" in closed.value.rcvd.reason
        ws_url = f"ws://127.0.0.1:{show.port}/ws"
        async with connect(ws_url, additional_headers={"Authorization": f"Bearer {show.token}"}) as ctl:
            await ctl.send(json.dumps({"id": 1, "cmd": "voice.mode", "mode": "conversation"}))
            reply = orjson.loads(await ctl.recv())
            assert not reply["ok"] and reply["error"]["code"] == "unavailable"

"""A FunASR runtime double: a real WebSocket server speaking the runtime's protocol, with no model.

It "recognises" by script: the turn's speech is a list of ``Segment`` (the online pieces the streaming
model would give, one per ``piece_bytes`` of PCM received, and the segment's corrected offline text).
What it sends, and the meaning of ``is_final``, follow the real servers (``flavour``):

- ``cpp``: ``funasr-wss-server-2pass``: every result labelled "2pass-online"/"2pass-offline" whatever
  the mode, ``is_final`` false until the end of speech, then one message with ``is_final`` true; in
  offline mode it is ``funasr-wss-server``: one "offline" result with ``is_final`` false.
- ``python``: ``funasr_wss_server.py`` before its end acknowledgement: labels "online"/"offline" or
  "2pass-*", ``is_final`` = still speaking, and nothing at all after the end in online mode.
- ``python_ack``: the newer Python server: as ``python``, then ``{"is_end": true, "is_final": true}``
  when the end message carried ``is_end``.

A segment after the first is finished mid-stream (its predecessor's offline text is sent once the
predecessor's pieces are used up), as the runtime's VAD does at a pause. ``close_after_final`` closes
the connection after the end's answer; otherwise it stays open until the client closes it. ``garbage``
puts malformed messages before every result; ``silent`` answers nothing, ever.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from typing import Any, Literal

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tests.ws_servers import WsServer

Flavour = Literal["cpp", "python", "python_ack"]
GARBAGE: tuple[str | bytes, ...] = ("{not json", "[1, 2]", '{"text": 5, "mode": "2pass-online"}', b"\x00\x01")


@dataclass
class Segment:
    pieces: list[str]
    text: str


@dataclass
class Session:
    """What one connection sent."""

    config: dict[str, Any] | None = None
    subprotocol: str | None = None
    pcm_bytes: int = 0
    frame_sizes: list[int] = field(default_factory=list)
    after_config: list[dict[str, Any]] = field(default_factory=list)  # text messages after the first
    protocol_errors: list[str] = field(default_factory=list)
    closed_by_client: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)  # the connection has ended


class FunasrRuntime(WsServer):
    def __init__(
        self,
        script: list[Segment],
        flavour: Flavour = "cpp",
        *,
        piece_bytes: int = 19200,  # 600 ms of 16 kHz PCM: one streaming chunk of [5, 10, 5]
        close_after_final: bool = False,
        garbage: bool = False,
        silent: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        close_at_bytes: int | None = None,  # drop the connection (no result) once this much PCM came
    ) -> None:
        super().__init__()
        self.script = script
        self.flavour = flavour
        self.piece_bytes = piece_bytes
        self.close_after_final = close_after_final
        self.garbage = garbage
        self.silent = silent
        self.close_at_bytes = close_at_bytes
        self.ssl_context = ssl_context
        self.sessions: list[Session] = []
        self.audio_arrived = asyncio.Event()

    def serve_options(self) -> dict[str, object]:
        options: dict[str, object] = {"subprotocols": ["binary"], "ping_interval": None}
        if self.ssl_context is not None:
            options["ssl"] = self.ssl_context
        return options

    async def handle(self, ws: ServerConnection) -> None:
        session = Session(subprotocol=ws.subprotocol)
        self.sessions.append(session)
        try:
            first = await ws.recv()
            if not isinstance(first, str):
                session.protocol_errors.append("the first message is not text")
                return
            config = json.loads(first)
            session.config = config
            if not isinstance(config, dict) or config.get("is_speaking") is not True or "mode" not in config:
                session.protocol_errors.append(f"the first message is not the configuration: {first}")
                return
            await _Turn(self, ws, session, config["mode"], str(config.get("wav_name", ""))).run()
        except ConnectionClosed:
            session.closed_by_client = True
        finally:
            session.done.set()


class _Turn:
    def __init__(
        self, server: FunasrRuntime, ws: ServerConnection, session: Session, mode: str, wav_name: str
    ) -> None:
        self.server = server
        self.wav_name = wav_name
        self.ws = ws
        self.session = session
        self.mode = mode
        self.segment = 0
        self.piece = 0
        self.speaking = True

    def label(self, offline: bool) -> str:
        if self.server.flavour == "cpp":
            if self.mode == "offline":
                return "offline"
            return "2pass-offline" if offline else "2pass-online"
        if self.mode == "2pass":
            return "2pass-offline" if offline else "2pass-online"
        return self.mode

    async def send(self, text: str, offline: bool, is_final: bool) -> None:
        if self.server.garbage:
            for junk in GARBAGE:
                await self.ws.send(junk)
        message = {"mode": self.label(offline), "text": text, "wav_name": self.wav_name, "is_final": is_final}
        await self.ws.send(json.dumps(message, ensure_ascii=False))

    def flag(self, at_end: bool) -> bool:
        """``is_final`` on a result: the C++ server's end mark, or the Python server's "speaking"."""
        return at_end if self.server.flavour == "cpp" else self.speaking

    async def run(self) -> None:
        received = 0
        async for message in self.ws:  # ends when the client closes
            if isinstance(message, bytes):
                self.session.pcm_bytes += len(message)
                self.server.audio_arrived.set()
                self.session.frame_sizes.append(len(message))
                close_at = self.server.close_at_bytes
                if close_at is not None and self.session.pcm_bytes >= close_at:
                    await self.ws.close()
                    return
                received += len(message)
                while received >= self.server.piece_bytes:
                    received -= self.server.piece_bytes
                    await self.on_chunk()
                continue
            end = json.loads(message)
            self.session.after_config.append(end)
            if end.get("is_speaking") is False:
                self.speaking = False
                await self.on_end(bool(end.get("is_end")))
                if self.server.close_after_final:
                    await self.ws.close()
                    return
        self.session.closed_by_client = True

    async def on_chunk(self) -> None:
        """A streaming chunk decoded: the next piece, or the end of a segment."""
        if self.server.silent or self.mode == "offline" or self.segment >= len(self.server.script):
            return
        current = self.server.script[self.segment]
        if self.piece < len(current.pieces):
            await self.send(current.pieces[self.piece], offline=False, is_final=self.flag(False))
            self.piece += 1
        elif self.segment + 1 < len(self.server.script):
            if self.mode == "2pass":
                await self.send(current.text, offline=True, is_final=self.flag(False))
            self.segment += 1
            self.piece = 0

    async def on_end(self, asked_ack: bool) -> None:
        """The end of speech: what the rest of the script decodes to, sent as each server sends it."""
        if self.server.silent:
            return
        flavour = self.server.flavour
        script = self.server.script
        rest = script[self.segment :]
        if self.mode == "offline":
            await self.send("".join(segment.text for segment in script), offline=True, is_final=False)
        elif self.mode == "2pass" and flavour == "cpp":
            for i, segment in enumerate(rest):  # the segments its VAD cut, the last with the end mark
                await self.send(segment.text, offline=True, is_final=i == len(rest) - 1)
            if not rest:
                await self.ws.send(json.dumps({"text": "", "wav_name": self.wav_name, "is_final": True}))
        elif self.mode == "2pass":  # the Python server decodes what is left as one segment
            await self.send("".join(segment.text for segment in rest), offline=True, is_final=False)
        else:
            pieces = [piece for segment in rest for piece in segment.pieces][self.piece :]
            if flavour == "cpp":  # the rest of the pieces, decoded with is_final
                await self.send("".join(pieces), offline=False, is_final=True)
            elif flavour == "python_ack":  # the newer Python server flushes the online decoder
                await self.send("".join(pieces), offline=False, is_final=False)
            # the older Python server decodes nothing more in online mode
        if flavour == "python_ack" and asked_ack:
            await self.ws.send(json.dumps({"is_end": True, "is_final": True}))

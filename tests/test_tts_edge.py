"""The Edge engine against a local WebSocket server speaking the read-aloud protocol edge-tts expects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import av
import edge_tts.communicate
import numpy as np
import pytest
from aiohttp import WSMsgType, web

from broadcaster.config import Config
from broadcaster.voice.speech_track import Phoneme
from broadcaster.voice.tts import edge
from broadcaster.voice.tts.base import TtsChunk, TtsError

RATE = 24000
SECONDS = 1.5
WS_PATH = "/consumer/speech/synthesize/readaloud/edge/v1"
# (text, offset, duration) in the service's 100 ns ticks
WORDS = [("Hello", 1_000_000, 3_250_000), ("live", 4_500_000, 2_000_000), ("stream", 7_000_000, 5_125_000)]


def vowel(seconds: float = SECONDS, rate: int = RATE) -> np.ndarray:
    """A voiced 'ah': harmonics of 140 Hz shaped by two formants, with a gentle vibrato and fades."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wave = sum(
        (np.exp(-(((k * 140 - 700) / 150) ** 2)) + 0.5 * np.exp(-(((k * 140 - 1200) / 200) ** 2)) + 0.05)
        * np.sin(k * phase)
        / k
        for k in range(1, 30)
    )
    envelope = np.minimum(1, np.minimum(t, t[-1] - t) / 0.05)
    out = 0.5 * wave * envelope / np.max(np.abs(wave))
    return (out * 32767).astype(np.int16)


def mp3(pcm: np.ndarray, rate: int = RATE) -> bytes:
    """Raw MP3 frames as the service sends them (24 kHz mono, 48 kbit/s, no ID3 tag)."""
    enc = av.CodecContext.create("libmp3lame", "w")
    enc.sample_rate = rate
    enc.layout = "mono"
    enc.format = "s16p"
    enc.bit_rate = 48000
    out = bytearray()
    for i in range(0, len(pcm), 1152):
        frame = av.AudioFrame.from_ndarray(pcm[i : i + 1152].reshape(1, -1), format="s16p", layout="mono")
        frame.sample_rate = rate
        out += b"".join(bytes(p) for p in enc.encode(frame))
    out += b"".join(bytes(p) for p in enc.encode(None))
    return bytes(out)


def text_frame(request_id: str, path: str, body: str) -> str:
    head = f"X-RequestId:{request_id}\r\nContent-Type:application/json; charset=utf-8\r\nPath:{path}"
    return f"{head}\r\n\r\n{body}"


def audio_frame(request_id: str, data: bytes) -> bytes:
    """A binary message: 2-byte big-endian header length, the headers, then MP3 bytes."""
    content_type = "Content-Type:audio/mpeg\r\n" if data else ""
    headers = f"X-RequestId:{request_id}\r\n{content_type}X-StreamId:{uuid.uuid4().hex}\r\nPath:audio\r\n"
    raw = headers.encode()
    return len(raw).to_bytes(2, "big") + raw + data


def word_metadata(text: str, offset: int, duration: int) -> str:
    data = {
        "Offset": offset,
        "Duration": duration,
        "text": {"Text": text, "Length": len(text), "BoundaryType": "WordBoundary"},
    }
    return json.dumps({"Metadata": [{"Type": "WordBoundary", "Data": data}]})


@dataclass
class EdgeServer:
    """Answers one synthesis: turn.start, then per word its metadata and a share of the MP3, then turn.end.

    ``hold_after``: after that many audio messages, wait until the test says the first PCM came out.
    ``hang_up_after``: after that many audio messages, close (``how``: "close" frame or "abort").
    ``listen_after``: after that many audio messages, only listen, until the client closes.
    """

    audio: bytes
    message_bytes: int = 700
    hold_after: int | None = None
    hang_up_after: int | None = None
    how: str = "close"
    listen_after: int | None = None
    client_closed: asyncio.Event = field(default_factory=asyncio.Event)
    query: dict[str, str] = field(default_factory=dict)
    received: list[str] = field(default_factory=list)
    first_pcm: asyncio.Event = field(default_factory=asyncio.Event)
    held_in_vain: bool = False
    sent_messages: int = 0

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.query = dict(request.query)
        self.received = [await ws.receive_str(), await ws.receive_str()]
        request_id = _header(self.received[1], "X-RequestId")
        await ws.send_str(text_frame(request_id, "turn.start", '{"context":{"serviceTag":"test"}}'))
        await ws.send_str(text_frame(request_id, "response", '{"context":{"serviceTag":"test"}}'))
        messages = [
            self.audio[i : i + self.message_bytes] for i in range(0, len(self.audio), self.message_bytes)
        ]
        per_word = -(-len(messages) // len(WORDS))
        for index, data in enumerate(messages):
            if index % per_word == 0:
                await ws.send_str(
                    text_frame(request_id, "audio.metadata", word_metadata(*WORDS[index // per_word]))
                )
            if index == self.hang_up_after:
                if self.how == "abort":
                    assert request.transport is not None
                    request.transport.abort()
                else:
                    await ws.close()
                return ws
            if index == self.listen_after:
                message = await ws.receive()
                if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
                    self.client_closed.set()
                return ws
            if index == self.hold_after:
                try:
                    await asyncio.wait_for(self.first_pcm.wait(), 5)
                except TimeoutError:
                    self.held_in_vain = True
            await ws.send_bytes(audio_frame(request_id, data))
            self.sent_messages += 1
        await ws.send_bytes(audio_frame(request_id, b""))  # the service's empty end-of-audio message
        await ws.send_str(text_frame(request_id, "turn.end", "{}"))
        async for message in ws:  # until the client closes
            if message.type == WSMsgType.CLOSE:
                break
        return ws


def _header(message: str, name: str) -> str:
    for line in message.split("\r\n\r\n", 1)[0].split("\r\n"):
        key, _, value = line.partition(":")
        if key == name:
            return value
    raise AssertionError(f"no {name} header in {message[:200]!r}")


@contextlib.asynccontextmanager
async def serve(server: EdgeServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    app = web.Application()
    app.router.add_get(WS_PATH, server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"ws://127.0.0.1:{port}{WS_PATH}?TrustedClientToken=test"
    monkeypatch.setattr(edge_tts.communicate, "WSS_URL", url)
    try:
        yield
    finally:
        await runner.cleanup()


def engine(**section: str) -> edge.EdgeTts:
    cfg = Config.model_validate({"voice": {"timeout_s": 10, "edge": section}})
    return edge.create(cfg)


async def collect(tts: edge.EdgeTts, server: EdgeServer | None = None) -> list[TtsChunk]:
    chunks = []
    async for chunk in tts.stream("Hello live stream & friends"):
        chunks.append(chunk)
        if server is not None and chunk.pcm.size:
            server.first_pcm.set()
    await tts.aclose()
    return chunks


def test_edge_streams_decoded_audio_with_word_timings(monkeypatch: pytest.MonkeyPatch) -> None:
    source = vowel()
    server = EdgeServer(mp3(source), hold_after=3)
    sent_before_first: list[int] = []

    async def main() -> list[TtsChunk]:
        async with serve(server, monkeypatch):
            tts = engine(voice="en-US-AriaNeural", rate="+10%", pitch="-5Hz", volume="+0%")
            chunks = []
            async for chunk in tts.stream("Hello live stream & friends"):
                if not chunks:
                    sent_before_first.append(server.sent_messages)
                chunks.append(chunk)
                server.first_pcm.set()
            return chunks

    chunks = asyncio.run(main())

    # the first PCM came out while the server still held back the rest
    assert not server.held_in_vain
    assert sent_before_first[0] <= 3 < server.sent_messages

    # what edge-tts sent is what the service expects
    config_message, ssml_message = server.received
    assert "Path:speech.config" in config_message
    assert '"wordBoundaryEnabled":"true"' in config_message
    assert "audio-24khz-48kbitrate-mono-mp3" in config_message
    assert "Path:ssml" in ssml_message
    assert "Microsoft Server Speech Text to Speech Voice (en-US, AriaNeural)" in ssml_message
    assert "pitch='-5Hz' rate='+10%' volume='+0%'" in ssml_message
    assert "Hello live stream &amp; friends" in ssml_message
    assert {"TrustedClientToken", "ConnectionId", "Sec-MS-GEC", "Sec-MS-GEC-Version"} <= set(server.query)

    # audio: the whole utterance (plus the codec's delay and padding), int16, not silence
    pcm = np.concatenate([c.pcm for c in chunks])
    assert {c.rate for c in chunks} == {RATE}
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert len(source) <= len(pcm) < len(source) + 0.1 * RATE
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
    source_rms = float(np.sqrt(np.mean(source.astype(np.float64) ** 2)))
    assert abs(rms - source_rms) < 0.15 * source_rms
    assert len(chunks) > 10

    # words: ticks of 100 ns turned into seconds, in order, each once
    words = [w for c in chunks for w in c.words]
    assert words == [Phoneme(o / 1e7, (o + d) / 1e7, t) for t, o, d in WORDS]
    assert words[0] == Phoneme(0.1, 0.425, "Hello")
    assert chunks[0].words[:1] == (words[0],)


@pytest.mark.parametrize("how", ["close", "abort"])
def test_edge_server_hanging_up_mid_answer_is_a_tts_error(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    server = EdgeServer(mp3(vowel()), hang_up_after=6, how=how)
    got: list[TtsChunk] = []

    async def main() -> None:
        async with serve(server, monkeypatch):
            tts = engine()
            async for chunk in tts.stream("Hello"):
                got.append(chunk)

    with pytest.raises(TtsError, match="edge"):
        asyncio.run(main())
    assert got  # some audio came before the cut; the chain restarts the sentence elsewhere


def test_edge_cancelling_the_consumer_closes_the_socket_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    server = EdgeServer(mp3(vowel()), listen_after=4)

    async def main() -> float:
        async with serve(server, monkeypatch):
            first = asyncio.Event()

            async def consume() -> None:
                async for _ in engine().stream("Hello"):
                    first.set()

            task = asyncio.create_task(consume())
            await asyncio.wait_for(first.wait(), 5)
            started = time.perf_counter()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            elapsed = time.perf_counter() - started
            await asyncio.wait_for(server.client_closed.wait(), 2)
            assert task.cancelled()
            return elapsed

    assert asyncio.run(main()) < 0.1


def test_edge_unreachable_service_is_a_tts_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(
        edge_tts.communicate, "WSS_URL", f"ws://127.0.0.1:{port}{WS_PATH}?TrustedClientToken=x"
    )
    with pytest.raises(TtsError, match="edge"):
        asyncio.run(collect(engine()))


def test_edge_bad_voice_is_a_tts_error() -> None:
    async def main() -> None:
        async for _ in engine(voice="not a voice").stream("hi"):
            pass

    with pytest.raises(TtsError, match="voice"):
        asyncio.run(main())


def test_edge_settings_key_names_the_voice_and_prosody() -> None:
    key = engine(voice="zh-CN-YunxiNeural", rate="+5%", pitch="+2Hz", volume="-10%").settings_key
    assert all(part in key for part in ("zh-CN-YunxiNeural", "+5%", "+2Hz", "-10%"))
    assert key != engine(voice="zh-CN-YunxiNeural", rate="+6%", pitch="+2Hz", volume="-10%").settings_key


def test_mp3_stream_decodes_pieces_of_any_size() -> None:
    source = vowel(0.5)
    data = mp3(source)
    whole = edge.Mp3Stream()
    at_once = np.concatenate(whole.push(data) + whole.flush())
    split = edge.Mp3Stream()
    pieces = [pcm for i in range(0, len(data), 37) for pcm in split.push(data[i : i + 37])]
    np.testing.assert_array_equal(np.concatenate(pieces + split.flush()), at_once)
    assert split.rate == RATE


def test_float_frames_become_int16() -> None:
    frame = av.AudioFrame.from_ndarray(
        np.array([[0.0, 0.5, -1.0, 1.5]], np.float32), format="fltp", layout="mono"
    )
    np.testing.assert_array_equal(edge._frame_pcm(frame), np.array([0, 16384, -32767, 32767], np.int16))
    stereo = av.AudioFrame.from_ndarray(np.array([[1, 2, 3, 4]], np.int16), format="s16", layout="stereo")
    np.testing.assert_array_equal(edge._frame_pcm(stereo), np.array([[1, 2], [3, 4]], np.int16))

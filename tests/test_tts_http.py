"""The HTTP TTS engines against local servers that speak each engine's wire protocol."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import pytest
from aiohttp import web

from broadcaster.config import Config
from broadcaster.voice.tts import cosyvoice, gpt_sovits, openai_speech
from broadcaster.voice.tts.base import TtsChunk, TtsEngine, TtsError
from broadcaster.voice.tts.http_stream import PcmReader, WavStreamReader
from tests.conftest import free_port
from tests.http_servers import serve
from tests.media import streamed_wav_header

PIECE = 1001  # odd on purpose: every other piece ends in the middle of a sample


def samples(n: int, seed: int = 1) -> np.ndarray:
    """Random int16 samples: a dropped or shifted byte changes every sample after it."""
    return np.random.default_rng(seed).integers(-32768, 32768, n, dtype=np.int16)


def pieces(data: bytes, size: int = PIECE) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def config(**voice: Any) -> Config:
    return Config.model_validate({"voice": voice})


class Recorder:
    """What the server received, and a lock-step channel: the consumer reports each chunk it got."""

    def __init__(self) -> None:
        self.method = ""
        self.path = ""
        self.headers: dict[str, str] = {}
        self.body = b""
        self.got_chunk: asyncio.Queue[int] = asyncio.Queue()
        self.seen = asyncio.Event()
        self.closed = asyncio.Event()

    async def record(self, request: web.Request) -> None:
        self.method, self.path = request.method, request.path
        self.headers = dict(request.headers)
        self.body = await request.read()
        self.seen.set()

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    async def stream(self, request: web.Request, parts: list[bytes]) -> web.StreamResponse:
        """Send ``parts``; after each, wait until the consumer has had a chunk out of it."""
        response = web.StreamResponse()
        await response.prepare(request)
        return await _rest(response, b"".join(parts), self)

    async def hang(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.closed.set()
            raise


async def collect(engine: TtsEngine, text: str, recorder: Recorder | None = None) -> list[TtsChunk]:
    chunks = []
    try:
        async for chunk in engine.stream(text):
            chunks.append(chunk)
            if recorder is not None:
                recorder.got_chunk.put_nowait(len(chunks))
    finally:
        await engine.aclose()
    return chunks


def joined(chunks: list[TtsChunk]) -> np.ndarray:
    return np.concatenate([c.pcm for c in chunks])


def expected_sizes(total_bytes: int, first_offset: int = 0) -> list[int]:
    """Samples each PIECE-byte piece completes, carrying odd bytes over."""
    sizes, carried = [], first_offset
    for piece in pieces(b"\0" * total_bytes):
        have = carried + len(piece)
        sizes.append(have // 2)
        carried = have % 2
    return sizes


# --- GPT-SoVITS -------------------------------------------------------------------------------------


def test_gpt_sovits_streams_wav_header_then_pcm_piece_by_piece() -> None:
    audio = samples(6000)
    rec = Recorder()

    async def handler(request: web.Request) -> web.StreamResponse:
        await rec.record(request)
        header = streamed_wav_header(32000)
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(header[:10])  # the header itself may arrive in pieces
        await response.write(header[10:])
        return await _rest(response, audio.tobytes(), rec)

    async def main() -> list[TtsChunk]:
        async with serve(handler) as url:
            cfg = config(
                timeout_s=5,
                gpt_sovits={
                    "url": url,
                    "ref_audio_path": "ref/jingyuan.wav",
                    "prompt_text": "我是景元",
                    "prompt_lang": "zh",
                    "text_lang": "zh",
                    "speed_factor": 1.2,
                    "extra": {"top_k": 5, "text_split_method": "cut0"},
                },
            )
            return await collect(gpt_sovits.create(cfg), "先帝创业未半", rec)

    chunks = asyncio.run(main())
    assert rec.method == "POST"
    assert rec.path == "/tts"
    assert rec.headers["Content-Type"].startswith("application/json")
    assert rec.json() == {
        "text": "先帝创业未半",
        "text_lang": "zh",
        "ref_audio_path": "ref/jingyuan.wav",
        "prompt_lang": "zh",
        "prompt_text": "我是景元",
        "media_type": "wav",
        "streaming_mode": True,
        "speed_factor": 1.2,
        "top_k": 5,
        "text_split_method": "cut0",
    }
    assert {c.rate for c in chunks} == {32000}
    assert [len(c.pcm) for c in chunks] == expected_sizes(audio.nbytes)
    np.testing.assert_array_equal(joined(chunks), audio)
    assert joined(chunks).dtype == np.int16


async def _rest(response: web.StreamResponse, data: bytes, rec: Recorder) -> web.StreamResponse:
    for part in pieces(data):
        await response.write(part)
        await asyncio.wait_for(rec.got_chunk.get(), 5)
    await response.write_eof()
    return response


@pytest.mark.parametrize(
    ("status", "body", "needles"),
    [
        (400, {"message": "ref_audio_path is required"}, ["HTTP 400", "ref_audio_path is required"]),
        (
            400,
            {"message": "tts failed", "Exception": "CUDA out of memory"},
            ["tts failed", "CUDA out of memory"],
        ),
        (500, {"detail": "Internal Server Error"}, ["HTTP 500", "Internal Server Error"]),
    ],
)
def test_gpt_sovits_error_answer_carries_the_server_message(
    status: int, body: Any, needles: list[str]
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status)

    async def main() -> None:
        async with serve(handler) as url:
            await collect(gpt_sovits.create(config(gpt_sovits={"url": url})), "hi")

    with pytest.raises(TtsError) as err:
        asyncio.run(main())
    for needle in needles:
        assert needle in str(err.value)


def test_gpt_sovits_connection_lost_mid_answer_is_a_tts_error() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(streamed_wav_header(32000) + samples(800).tobytes())
        assert request.transport is not None
        request.transport.abort()  # the worker died mid-synthesis
        return response

    got: list[TtsChunk] = []

    async def main() -> None:
        async with serve(handler) as url:
            engine = gpt_sovits.create(config(gpt_sovits={"url": url}))
            try:
                async for chunk in engine.stream("hi"):
                    got.append(chunk)
            finally:
                await engine.aclose()

    with pytest.raises(TtsError, match="closed the connection"):
        asyncio.run(main())
    assert sum(len(c.pcm) for c in got) <= 800


def test_gpt_sovits_answer_that_is_not_wav_is_a_tts_error() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"<html>proxy error page</html>", content_type="text/html")

    async def main() -> None:
        async with serve(handler) as url:
            await collect(gpt_sovits.create(config(gpt_sovits={"url": url})), "hi")

    with pytest.raises(TtsError, match="not a WAV"):
        asyncio.run(main())


# --- CosyVoice --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sft", "instruct"])
def test_cosyvoice_sends_the_form_and_streams_raw_pcm(mode: str) -> None:
    audio = samples(5000, seed=2)
    rec = Recorder()

    async def handler(request: web.Request) -> web.StreamResponse:
        await rec.record(request)
        return await rec.stream(request, pieces(audio.tobytes()))

    async def main() -> list[TtsChunk]:
        async with serve(handler) as url:
            section = {
                "url": url + "/",
                "mode": mode,
                "spk_id": "中文男",
                "instruct_text": "用开心的语气说",
                "sample_rate": 22050,
            }
            return await collect(
                cosyvoice.create(config(timeout_s=5, cosyvoice=section)), "你好欢迎来到直播间", rec
            )

    chunks = asyncio.run(main())
    assert rec.method == "GET"  # the upstream server declares GET routes that read a form body
    assert rec.path == f"/inference_{mode}"
    assert rec.headers["Content-Type"] == "application/x-www-form-urlencoded"
    expected = {"tts_text": "你好欢迎来到直播间", "spk_id": "中文男"}
    if mode == "instruct":
        expected["instruct_text"] = "用开心的语气说"
    assert rec.form() == expected
    assert [len(c.pcm) for c in chunks] == expected_sizes(audio.nbytes)
    assert {c.rate for c in chunks} == {22050}
    np.testing.assert_array_equal(joined(chunks), audio)


def test_cosyvoice_takes_the_rate_the_server_announces() -> None:
    audio = samples(300, seed=3)

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=audio.tobytes(), headers={"X-Custom-Header-sampleRate": "24000"})

    async def main() -> list[TtsChunk]:
        async with serve(handler) as url:
            return await collect(cosyvoice.create(config(cosyvoice={"url": url})), "hi")

    chunks = asyncio.run(main())
    assert {c.rate for c in chunks} == {24000}
    np.testing.assert_array_equal(joined(chunks), audio)


def test_cosyvoice_validation_error_carries_fastapi_detail() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        detail = [{"type": "missing", "loc": ["body", "spk_id"], "msg": "Field required", "input": None}]
        return web.json_response({"detail": detail}, status=422)

    async def main() -> None:
        async with serve(handler) as url:
            await collect(cosyvoice.create(config(cosyvoice={"url": url})), "hi")

    with pytest.raises(TtsError, match=r"HTTP 422.*Field required"):
        asyncio.run(main())


# --- OpenAI-compatible ------------------------------------------------------------------------------


def test_openai_posts_json_with_bearer_key_and_streams_24k_pcm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_TTS_KEY", "sk-test-123")
    audio = samples(4000, seed=4)
    rec = Recorder()

    async def handler(request: web.Request) -> web.StreamResponse:
        await rec.record(request)
        # the first piece is one byte: not even one sample yet, so no chunk to wait for
        return await _answer_after_a_lone_byte(request, audio.tobytes(), rec)

    holder: dict[str, Any] = {}

    async def main() -> list[TtsChunk]:
        async with serve(handler) as url:
            section = {
                "base_url": url + "/v1",
                "api_key_env": "TEST_TTS_KEY",
                "model": "tts-1-hd",
                "voice": "nova",
                "speed": 1.25,
            }
            engine = openai_speech.create(config(timeout_s=5, openai=section))
            holder["key"] = engine.settings_key
            return await collect(engine, "Welcome to the stream!", rec)

    chunks = asyncio.run(main())
    assert rec.method == "POST"
    assert rec.path == "/v1/audio/speech"
    assert rec.headers["Authorization"] == "Bearer sk-test-123"
    assert rec.json() == {
        "model": "tts-1-hd",
        "input": "Welcome to the stream!",
        "voice": "nova",
        "response_format": "pcm",
        "speed": 1.25,
    }
    assert "sk-test-123" not in holder["key"]
    assert "nova" in holder["key"] and "tts-1-hd" in holder["key"] and "1.25" in holder["key"]
    assert {c.rate for c in chunks} == {24000}
    assert [len(c.pcm) for c in chunks] == expected_sizes(audio.nbytes - 1, first_offset=1)
    np.testing.assert_array_equal(joined(chunks), audio)


async def _answer_after_a_lone_byte(request: web.Request, data: bytes, rec: Recorder) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await response.prepare(request)
    await response.write(data[:1])
    for part in pieces(data[1:]):
        await response.write(part)
        await asyncio.wait_for(rec.got_chunk.get(), 5)
    await response.write_eof()
    return response


def test_openai_error_json_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)

    async def handler(request: web.Request) -> web.StreamResponse:
        assert "Authorization" not in request.headers  # a local server without a key
        error = {"error": {"message": "Input text too long", "type": "invalid_request_error", "code": None}}
        return web.json_response(error, status=400)

    async def main() -> None:
        async with serve(handler) as url:
            section = {"base_url": url + "/v1", "api_key_env": "NO_SUCH_KEY_VAR"}
            await collect(openai_speech.create(config(openai=section)), "hi")

    with pytest.raises(TtsError, match=r"HTTP 400.*Input text too long"):
        asyncio.run(main())


def test_openai_default_url_without_key_fails_at_create(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(TtsError, match="NO_SUCH_KEY_VAR"):
        openai_speech.create(config(openai={"api_key_env": "NO_SUCH_KEY_VAR"}))


# --- All engines: refused, hung, cancelled, timed out ----------------------------------------------

ENGINES: dict[str, Callable[[str, float], TtsEngine]] = {
    "gpt_sovits": lambda url, t: gpt_sovits.create(config(timeout_s=t, gpt_sovits={"url": url})),
    "cosyvoice": lambda url, t: cosyvoice.create(config(timeout_s=t, cosyvoice={"url": url})),
    "openai": lambda url, t: openai_speech.create(
        config(timeout_s=t, openai={"base_url": url, "api_key_env": "X"})
    ),
}


@pytest.mark.parametrize("name", ENGINES)
def test_connection_refused_is_a_tts_error(name: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TtsError, match="cannot reach"):
        asyncio.run(collect(ENGINES[name](url, 5), "hi"))


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("stall", ["before_headers", "mid_body"])
def test_cancelling_the_consumer_closes_the_connection_at_once(name: str, stall: str) -> None:
    rec = Recorder()

    async def handler(request: web.Request) -> web.StreamResponse:
        await rec.record(request)
        response = web.StreamResponse()
        if stall == "mid_body":
            await response.prepare(request)
            await response.write(streamed_wav_header(32000) + samples(100).tobytes())
        await rec.hang()
        return response

    async def main() -> float:
        async with serve(handler) as url:
            task = asyncio.create_task(collect(ENGINES[name](url, 30), "hi", rec))
            await asyncio.wait_for(rec.seen.wait(), 5)
            if stall == "mid_body":
                await asyncio.wait_for(rec.got_chunk.get(), 5)
            started = time.perf_counter()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            elapsed = time.perf_counter() - started
            await asyncio.wait_for(rec.closed.wait(), 2)  # the server saw the connection go
            assert task.cancelled()
            return elapsed

    assert asyncio.run(main()) < 0.1


def test_a_server_that_never_answers_times_out_as_tts_error() -> None:
    rec = Recorder()

    async def handler(request: web.Request) -> web.StreamResponse:
        await rec.record(request)
        await rec.hang()
        return web.StreamResponse()

    async def main() -> float:
        async with serve(handler) as url:
            started = time.perf_counter()
            with pytest.raises(TtsError, match=r"within 0\.3 s"):
                await collect(ENGINES["gpt_sovits"](url, 0.3), "hi")
            elapsed = time.perf_counter() - started
            await asyncio.wait_for(rec.closed.wait(), 2)
            return elapsed

    assert 0.25 < asyncio.run(main()) < 2


def test_session_is_reused_then_closed() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=samples(10).tobytes())

    async def main() -> None:
        async with serve(handler) as url:
            engine = ENGINES["cosyvoice"](url, 5)
            assert len(joined([c async for c in engine.stream("a")])) == 10
            session = engine._http._session  # type: ignore[attr-defined]
            assert len(joined([c async for c in engine.stream("b")])) == 10
            assert engine._http._session is session  # type: ignore[attr-defined]
            await engine.aclose()
            assert session is not None and session.closed

    asyncio.run(main())


# --- The byte-stream readers ------------------------------------------------------------------------


def test_pcm_reader_keeps_split_samples_and_frames() -> None:
    stereo = samples(2000, seed=5).reshape(-1, 2)
    reader = PcmReader("<i2", channels=2)
    data = stereo.tobytes()
    out = [reader.push(data[i : i + 7]) for i in range(0, len(data), 7)]
    assert all(o.ndim == 2 and o.shape[1] == 2 for o in out)
    np.testing.assert_array_equal(np.concatenate(out), stereo)
    assert reader.pending == 0
    assert reader.push(b"\x01").size == 0 and reader.pending == 1


def wav_header(
    fmt_tag: int, bits: int, channels: int, rate: int, extra_chunks: bytes = b"", size: int = 0xFFFFFFFF
) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    return (
        b"RIFF"
        + struct.pack("<I", size)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + extra_chunks
        + b"data"
        + struct.pack("<I", size)
    )


def test_wav_reader_handles_unknown_sizes_extra_chunks_and_byte_by_byte_arrival() -> None:
    audio = samples(500, seed=6)
    list_chunk = b"LIST" + struct.pack("<I", 5) + b"INFOx" + b"\0"  # odd size, padded
    data = wav_header(1, 16, 1, 16000, list_chunk) + audio.tobytes()
    reader = WavStreamReader()
    out = [reader.push(data[i : i + 1]) for i in range(len(data))]
    assert reader.format is not None and reader.format.rate == 16000
    np.testing.assert_array_equal(np.concatenate(out), audio)


def test_wav_reader_reads_float_and_stereo() -> None:
    audio = np.random.default_rng(7).uniform(-1, 1, (300, 2)).astype(np.float32)
    reader = WavStreamReader()
    out = reader.push(wav_header(3, 32, 2, 48000) + audio.tobytes()[:1001])
    out2 = reader.push(audio.tobytes()[1001:])
    np.testing.assert_array_equal(np.concatenate([out, out2]), audio)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"ID3\x04" + b"\0" * 20, "not a WAV"),
        (wav_header(1, 24, 1, 16000), "unsupported WAV"),
        (b"RIFF\xff\xff\xff\xffWAVEdata\0\0\0\0", "before its fmt"),
    ],
)
def test_wav_reader_rejects_what_it_cannot_play(data: bytes, match: str) -> None:
    with pytest.raises(TtsError, match=match):
        WavStreamReader().push(data)

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from broadcaster.listen.asr import AsrError, Transcript, create_asr
from broadcaster.listen.asr.base import AsrEngine, AsrStream, TurnLimit
from broadcaster.listen.asr.fallback import FallbackAsr
from broadcaster.listen.asr.funasr_local import FunasrAsr
from broadcaster.listen.asr.funasr_server import SETTLE_S, FunasrServerAsr, FunasrServerStream
from broadcaster.listen.asr.pocketsphinx import PocketsphinxAsr
from broadcaster.listen.settings import AsrConfig, FunasrConfig, FunasrServerConfig, PocketsphinxConfig
from tests.conftest import free_port
from tests.funasr_server import FunasrRuntime, Segment
from tests.speech_samples import silence, speech

PRICE = "what is the price"
SHOES = "show me the red shoes"
CHUNK = 320  # 20 ms at 16 kHz


@pytest.fixture(scope="module")
def said() -> dict[str, np.ndarray]:
    """Spoken sentences with a little silence around them (made outside any event loop)."""
    return {text: np.concatenate([silence(0.2), speech(text), silence(0.3)]) for text in (PRICE, SHOES)}


class Heard:
    """An on_partial callback that records what it got and on which thread."""

    def __init__(self) -> None:
        self.partials: list[Transcript] = []
        self.threads: set[int] = set()

    def __call__(self, transcript: Transcript) -> None:
        self.partials.append(transcript)
        self.threads.add(threading.get_ident())

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.partials]


async def feed(stream: AsrStream, pcm: np.ndarray, chunk: int = CHUNK, pace: float = 0.0) -> None:
    """Feed ``pcm`` in chunks; ``pace`` is the fraction of real time spent (0: as fast as the loop turns)."""
    for start in range(0, len(pcm), chunk):
        stream.feed(pcm[start : start + chunk])
        await asyncio.sleep(pace * chunk / 16000)


async def turn(engine: AsrEngine, pcm: np.ndarray, **kwargs: Any) -> tuple[Transcript, Heard]:
    heard = Heard()
    stream = engine.stream(heard)
    await feed(stream, pcm, **kwargs)
    return await stream.finish(), heard


def asr_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("asr-")]


# pocketsphinx, for real ---------------------------------------------------------------------------


async def test_pocketsphinx_streams_partials_then_the_final(said: dict[str, np.ndarray]) -> None:
    engine = PocketsphinxAsr(PocketsphinxConfig())
    await engine.open()
    try:
        final, heard = await turn(engine, said[PRICE], pace=0.5)
        assert final.final and final.engine == "pocketsphinx"
        assert {"price", "what"} & set(final.text.split()), final.text
        assert heard.partials, "no partial text while the turn went on"
        assert all(not p.final and p.engine == "pocketsphinx" for p in heard.partials)
        assert heard.threads == {threading.get_ident()}  # delivered on the event loop's thread
        assert all(a != b for a, b in zip(heard.texts, heard.texts[1:], strict=False))  # only changes

        second, _ = await turn(engine, said[SHOES])  # the same decoder, the next turn
        assert "shoes" in second.text.split(), second.text
    finally:
        await engine.close()
    assert asr_threads() == []


async def test_pocketsphinx_decodes_in_a_child_process_and_outlives_its_death(
    said: dict[str, np.ndarray],
) -> None:
    """The decoder holds the GIL while it decodes, so it lives in a child process; a dead child costs
    one turn at most, and the engine closes it."""
    engine = PocketsphinxAsr(PocketsphinxConfig())
    await engine.open()
    try:
        child = engine._decoder._child  # type: ignore[union-attr]
        assert child.poll() is None and child.pid != 0
        child.kill()
        child.wait()
        final, _ = await turn(engine, said[PRICE])  # a new child takes the turn
        assert {"price", "what"} & set(final.text.split()), final.text
        replaced = engine._decoder._child  # type: ignore[union-attr]
        assert replaced is not child and replaced.poll() is None
    finally:
        await engine.close()
    assert replaced.poll() is not None, "close() ends the child"


async def test_pocketsphinx_cancel_mid_turn_leaves_nothing_running(said: dict[str, np.ndarray]) -> None:
    engine = PocketsphinxAsr(PocketsphinxConfig())
    await engine.open()
    stream = engine.stream(Heard())
    await feed(stream, said[PRICE][: len(said[PRICE]) // 2])
    await stream.cancel()
    assert not stream.active  # the worker has let go of the turn
    await stream.cancel()  # idempotent
    with pytest.raises(AsrError, match="cancelled"):
        await stream.finish()
    final, _ = await turn(engine, said[SHOES])  # the decoder was reset
    assert "shoes" in final.text.split()
    open_turn = engine.stream()
    open_turn.feed(said[PRICE][:8000])
    await engine.close()  # cancels the open turn and stops the thread
    assert not open_turn.active
    assert asr_threads() == []


async def test_pocketsphinx_second_turn_waits_for_the_first(said: dict[str, np.ndarray]) -> None:
    engine = PocketsphinxAsr(PocketsphinxConfig())
    await engine.open()
    try:
        first, second = engine.stream(), engine.stream()
        first.feed(said[PRICE])
        second.feed(said[SHOES])
        second_done = asyncio.create_task(second.finish())
        done, _ = await asyncio.wait({second_done}, timeout=0.3)
        assert not done  # queued behind the open turn on the one decoder
        assert "price" in (await first.finish()).text.split()
        assert "shoes" in (await second_done).text.split()
    finally:
        await engine.close()


async def test_pocketsphinx_names_a_missing_model(tmp_path: Path) -> None:
    engine = PocketsphinxAsr(PocketsphinxConfig(model_dir=tmp_path))
    with pytest.raises(AsrError, match=str(tmp_path / "en-us")):
        await engine.open()
    with pytest.raises(AsrError, match="not open"):
        engine.stream()


async def test_audio_must_be_int16_mono() -> None:
    engine = FunasrServerAsr(FunasrServerConfig(url=f"ws://127.0.0.1:{free_port()}"))
    stream = engine.stream()
    with pytest.raises(ValueError, match="int16"):
        stream.feed(np.zeros(160, np.float32))
    with pytest.raises(ValueError, match="mono"):
        stream.feed(np.zeros((160, 2), np.int16))
    await engine.close()
    assert isinstance(stream, FunasrServerStream) and stream.closed


def test_turn_limit_cuts_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    limit = TurnLimit("x", max_s=0.01)  # 160 samples
    assert len(limit.take(np.zeros(100, np.int16))) == 100
    assert len(limit.take(np.zeros(100, np.int16))) == 60
    assert len(limit.take(np.zeros(100, np.int16))) == 0
    assert len([r for r in caplog.records if "dropped" in r.getMessage()]) == 1


# funasr_server, against the protocol double --------------------------------------------------------

SCRIPT = [Segment(["what ", "is the ", "price"], "What is the price?")]
SPEECH = np.random.default_rng(3).integers(-3000, 3000, 3 * 16000, dtype=np.int16)  # 3 s: 5 streaming chunks


def server_cfg(url: str, **kwargs: Any) -> FunasrServerConfig:
    return FunasrServerConfig(url=url, connect_timeout_s=5.0, final_timeout_s=5.0, **kwargs)


async def test_funasr_server_sends_the_runtime_protocol() -> None:
    hotwords = {"阿里巴巴": 20, "达摩院": 30}
    cfg = server_cfg(
        "ws://replaced", mode="2pass", chunk_size=[5, 10, 5], chunk_interval=5, hotwords=hotwords, itn=False
    )
    async with FunasrRuntime(SCRIPT) as server:
        engine = FunasrServerAsr(cfg.model_copy(update={"url": server.url}))
        await engine.open()
        final, _ = await turn(engine, SPEECH, chunk=333)  # odd chunks: the client re-frames them
        await engine.close()
        session = server.sessions[0]
        await asyncio.wait_for(session.done.wait(), 2.0)
    assert final.text == "What is the price?"
    assert session.protocol_errors == []
    assert session.subprotocol == "binary"
    assert session.config is not None and session.config.pop("wav_name").startswith("turn")
    assert session.config == {
        "mode": "2pass",
        "chunk_size": [5, 10, 5],
        "chunk_interval": 5,
        "encoder_chunk_look_back": 4,
        "decoder_chunk_look_back": 0,
        "audio_fs": 16000,
        "wav_format": "pcm",
        "is_speaking": True,
        "hotwords": json.dumps(hotwords, ensure_ascii=False),
        "itn": False,
    }
    assert json.loads(session.config["hotwords"]) == hotwords
    assert session.pcm_bytes == SPEECH.nbytes  # every sample arrived
    frame = 2 * 16000 * 120 // 1000  # 60 * 10 / 5 = 120 ms frames
    assert set(session.frame_sizes[:-1]) == {frame} and 0 < session.frame_sizes[-1] <= frame
    assert session.after_config == [{"is_speaking": False, "is_end": True}]
    assert session.closed_by_client


CASES = [
    # flavour, mode, expected final
    ("cpp", "2pass", "What is the price?"),
    ("python", "2pass", "What is the price?"),
    ("python_ack", "2pass", "What is the price?"),
    ("cpp", "online", "what is the price"),
    ("python", "online", "what is the price"),
    ("python_ack", "online", "what is the price"),
    ("cpp", "offline", "What is the price?"),
    ("python", "offline", "What is the price?"),
]


@pytest.mark.parametrize("close_after_final", [False, True], ids=["stays-open", "closes"])
@pytest.mark.parametrize(("flavour", "mode", "expected"), CASES)
async def test_funasr_server_partials_and_final(
    flavour: str, mode: str, expected: str, close_after_final: bool
) -> None:
    async with FunasrRuntime(SCRIPT, flavour, close_after_final=close_after_final) as server:  # type: ignore[arg-type]
        engine = FunasrServerAsr(server_cfg(server.url, mode=mode))
        await engine.open()
        started = time.monotonic()
        final, heard = await turn(engine, SPEECH)
        elapsed = time.monotonic() - started
        await engine.close()
    assert final == Transcript(expected, True, "funasr_server")
    if mode == "offline":
        assert heard.partials == []
    else:
        assert heard.texts == ["what", "what is the", "what is the price"]
        assert all(not p.final for p in heard.partials)
    assert elapsed < 2.5  # final on the server's answer (or a short settle), not on the 5 s timeout


TWO_SEGMENTS = [
    Segment(["hello ", "there"], "Hello there. "),
    Segment(["how ", "are ", "you"], "How are you?"),
]


@pytest.mark.parametrize(
    ("flavour", "seconds", "partials"),
    [
        # 6 s: the first segment ends mid-turn (its offline text replaces its pieces)
        ("cpp", 6.0, ["hello", "hello there", "Hello there.", "Hello there. how", "Hello there. how are",
                      "Hello there. how are you"]),
        ("python", 6.0, ["hello", "hello there", "Hello there.", "Hello there. how", "Hello there. how are",
                         "Hello there. how are you"]),
        # 1.3 s: both segments are decoded after the end; the C++ server sends the first with
        # is_final false, then the last with is_final true: the turn waits for that one
        ("cpp", 1.3, ["hello", "hello there", "Hello there."]),
        ("python", 1.3, ["hello", "hello there"]),
    ],
)  # fmt: skip
async def test_funasr_server_joins_the_segments_of_a_turn(
    flavour: str, seconds: float, partials: list[str]
) -> None:
    async with FunasrRuntime(TWO_SEGMENTS, flavour) as server:  # type: ignore[arg-type]
        engine = FunasrServerAsr(server_cfg(server.url))
        final, heard = await turn(engine, np.zeros(round(seconds * 16000), np.int16))
        await engine.close()
    assert final.text == "Hello there. How are you?"
    assert heard.texts == partials


@pytest.mark.parametrize(("flavour", "settles"), [("cpp", False), ("python", True)])
async def test_funasr_server_short_turn_without_partials(flavour: str, settles: bool) -> None:
    """No result during speech, so how the server means is_final is unknown at the end."""
    async with FunasrRuntime(SCRIPT, flavour) as server:  # type: ignore[arg-type]
        engine = FunasrServerAsr(server_cfg(server.url))
        stream = engine.stream()
        await feed(stream, SPEECH[:4800])  # 0.3 s: less than a streaming chunk
        started = time.monotonic()
        final = await stream.finish()
        elapsed = time.monotonic() - started
    assert final.text == "What is the price?"
    if settles:  # a Python server's offline result with is_final false: final after the settle time
        assert SETTLE_S * 0.9 < elapsed < 2.5
    else:  # the C++ server's is_final true is final at once
        assert elapsed < SETTLE_S


async def test_funasr_server_empty_turn_is_an_empty_final() -> None:
    async with FunasrRuntime([], "cpp") as server:  # answers {"text": "", "is_final": true}, no mode
        engine = FunasrServerAsr(server_cfg(server.url))
        final, heard = await turn(engine, SPEECH[:16000])
    assert final == Transcript("", True, "funasr_server")
    assert heard.partials == []


async def test_funasr_server_skips_garbage(caplog: pytest.LogCaptureFixture) -> None:
    async with FunasrRuntime(SCRIPT, "cpp", garbage=True) as server:
        engine = FunasrServerAsr(server_cfg(server.url))
        final, heard = await turn(engine, SPEECH)
        await engine.close()
    assert final.text == "What is the price?"
    assert heard.texts == ["what", "what is the", "what is the price"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "malformed" in r.getMessage()]
    assert len(warnings) == 1  # once per turn, the rest at debug


async def test_funasr_server_down_names_the_url() -> None:
    url = f"ws://127.0.0.1:{free_port()}"
    engine = FunasrServerAsr(server_cfg(url))
    await engine.open()
    stream = engine.stream()
    stream.feed(SPEECH[:1600])
    with pytest.raises(AsrError, match=f"is the FunASR runtime running at {url}"):
        await stream.finish()


async def test_funasr_server_connect_timeout() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts TCP, never answers the handshake
        writer.close()

    tcp = await asyncio.start_server(mute, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{tcp.sockets[0].getsockname()[1]}"
    try:
        engine = FunasrServerAsr(FunasrServerConfig(url=url, connect_timeout_s=0.3))
        stream = engine.stream()
        with pytest.raises(AsrError, match=r"timed out.*is the FunASR runtime running"):
            await stream.finish()
    finally:
        tcp.close()
        await tcp.wait_closed()


async def test_funasr_server_that_never_answers_times_out() -> None:
    async with FunasrRuntime(SCRIPT, silent=True) as server:
        engine = FunasrServerAsr(FunasrServerConfig(url=server.url, final_timeout_s=0.4))
        stream = engine.stream()
        await feed(stream, SPEECH)
        started = time.monotonic()
        with pytest.raises(AsrError, match=r"no result .* within 0.4 s"):
            await stream.finish()
        assert 0.35 < time.monotonic() - started < 1.5
        await asyncio.wait_for(server.sessions[0].done.wait(), 2.0)  # the socket was closed


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"close_at_bytes": 1000}, "closed the connection during the turn"),
        ({"silent": True, "close_after_final": True}, "closed the connection without a result"),
    ],
    ids=["during", "after-the-end"],
)
async def test_funasr_server_closing_without_a_result_fails_the_turn(
    options: dict[str, Any], why: str
) -> None:
    async with FunasrRuntime(SCRIPT, "cpp", **options) as server:
        engine = FunasrServerAsr(server_cfg(server.url, mode="offline"))
        stream = engine.stream()
        await feed(stream, SPEECH)
        started = time.monotonic()
        with pytest.raises(AsrError, match=why):
            await stream.finish()
        assert time.monotonic() - started < 1.0  # not the timeout


async def test_funasr_server_cancel_closes_the_socket() -> None:
    async with FunasrRuntime(SCRIPT) as server:
        engine = FunasrServerAsr(server_cfg(server.url))
        heard = Heard()
        stream = engine.stream(heard)
        await feed(stream, SPEECH[:16000])
        await asyncio.wait_for(server.audio_arrived.wait(), 2.0)
        await stream.cancel()
        await stream.cancel()
        assert isinstance(stream, FunasrServerStream) and stream.closed
        await asyncio.wait_for(server.sessions[0].done.wait(), 2.0)
        with pytest.raises(AsrError):
            await stream.finish()


async def test_funasr_server_turn_is_capped_at_60_s(caplog: pytest.LogCaptureFixture) -> None:
    async with FunasrRuntime(SCRIPT, "cpp") as server:
        engine = FunasrServerAsr(server_cfg(server.url, mode="offline"))
        final, _ = await turn(engine, np.zeros(61 * 16000, np.int16), chunk=16000)
    assert final.text == "What is the price?"
    assert server.sessions[0].pcm_bytes == 60 * 16000 * 2
    assert len([r for r in caplog.records if "longer than 60 s" in r.getMessage()]) == 1


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=funasr-runtime"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_funasr_server_over_tls_with_a_self_signed_certificate(tls_files: tuple[Path, Path]) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    async with FunasrRuntime(SCRIPT, ssl_context=context) as server:
        url = server.url.replace("ws://", "wss://")
        strict = FunasrServerAsr(server_cfg(url, verify_tls=True))
        with pytest.raises(AsrError, match="verify_tls = false"):
            await turn(strict, SPEECH[:3200])
        relaxed = FunasrServerAsr(server_cfg(url, verify_tls=False))
        final, _ = await turn(relaxed, SPEECH)
    assert final.text == "What is the price?"


# fallback ------------------------------------------------------------------------------------------


async def test_fallback_to_pocketsphinx_when_the_server_is_down(
    said: dict[str, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    url = f"ws://127.0.0.1:{free_port()}"
    cfg = AsrConfig(engine="funasr_server", fallback="pocketsphinx", funasr_server=server_cfg(url))
    engine = create_asr(cfg)
    assert isinstance(engine, FallbackAsr)
    await engine.open()
    try:
        first, _ = await turn(engine, said[PRICE])
        second, _ = await turn(engine, said[SHOES])
    finally:
        await engine.close()
    assert first.engine == "pocketsphinx" and "price" in first.text.split()
    assert second.engine == "pocketsphinx" and "shoes" in second.text.split()
    failures = [r for r in caplog.records if r.name.endswith("fallback") and r.levelno == logging.WARNING]
    assert len(failures) == 1 and url in failures[0].getMessage()  # once for the streak
    assert asr_threads() == []


async def test_fallback_replays_a_turn_the_server_drops(
    said: dict[str, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with (
        FunasrRuntime(SCRIPT, "cpp", close_at_bytes=20000) as dropping,
        FunasrRuntime(SCRIPT) as working,
    ):
        cfg = AsrConfig(
            engine="funasr_server", fallback="pocketsphinx", funasr_server=server_cfg(dropping.url)
        )
        engine = create_asr(cfg)
        await engine.open()
        try:
            dropped, _ = await turn(engine, said[PRICE])
            assert isinstance(engine, FallbackAsr) and isinstance(engine.primary, FunasrServerAsr)
            engine.primary.cfg = server_cfg(working.url)  # the runtime is back
            recovered, heard = await turn(engine, SPEECH)
        finally:
            await engine.close()
    assert dropped.engine == "pocketsphinx" and "price" in dropped.text.split()
    assert recovered == Transcript("What is the price?", True, "funasr_server")
    assert heard.texts[-1] == "what is the price"
    assert any("works again" in r.getMessage() for r in caplog.records)


async def test_fallback_takes_every_turn_when_the_main_engine_cannot_open(
    said: dict[str, np.ndarray], tmp_path: Path
) -> None:
    cfg = AsrConfig(
        engine="funasr", fallback="pocketsphinx", funasr=FunasrConfig(model_dir=tmp_path / "none")
    )
    engine = create_asr(cfg)
    await engine.open()
    try:
        final, heard = await turn(engine, said[SHOES], pace=0.5)
    finally:
        await engine.close()
    assert final.engine == "pocketsphinx" and "shoes" in final.text.split()
    assert heard.partials and heard.partials[0].engine == "pocketsphinx"  # live, not replayed


async def test_fallback_with_neither_engine_open_fails(tmp_path: Path) -> None:
    cfg = AsrConfig(
        engine="funasr",
        fallback="pocketsphinx",
        funasr=FunasrConfig(model_dir=tmp_path / "none"),
        pocketsphinx=PocketsphinxConfig(model_dir=tmp_path),
    )
    with pytest.raises(AsrError, match=r"(?s)does not exist.*not found"):
        await create_asr(cfg).open()


# funasr in-process: error paths, and the streaming logic against a stand-in AutoModel --------------


def model_dir(root: Path, name: str, config: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "model.pt").write_bytes(b"\0")
    (folder / "config.yaml").write_text(config)
    return folder


class FakeAutoModel:
    """Stands in for ``funasr.AutoModel``: records its calls, answers in the real output shape."""

    instances: ClassVar[list[FakeAutoModel]] = []
    answers: ClassVar[list[str]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.calls: list[dict[str, Any]] = []
        FakeAutoModel.instances.append(self)

    def generate(self, input: np.ndarray, **kwargs: Any) -> list[dict[str, Any]]:
        cache = kwargs.get("cache")
        if isinstance(cache, dict):
            cache["chunks"] = cache.get("chunks", 0) + 1  # a streaming model keeps its state here
        self.calls.append({"input": input, **kwargs, "chunks_so_far": cache.get("chunks") if cache else None})
        text = FakeAutoModel.answers.pop(0) if FakeAutoModel.answers else ""
        return [{"key": "rand_key_2yW4Acq9GFz6Y", "text": text}]


@pytest.fixture
def fake_funasr(monkeypatch: pytest.MonkeyPatch) -> type[FakeAutoModel]:
    module = types.ModuleType("funasr")
    module.AutoModel = FakeAutoModel  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "funasr", module)
    FakeAutoModel.instances = []
    FakeAutoModel.answers = []
    return FakeAutoModel


async def test_funasr_without_the_package_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "funasr", None)  # import funasr -> ImportError
    folder = model_dir(tmp_path, "paraformer-zh-streaming", "model: ParaformerStreaming\n")
    engine = FunasrAsr(FunasrConfig(model_dir=folder))
    with pytest.raises(AsrError, match=r"pip install torch.*pip install funasr"):
        await engine.open()
    assert asr_threads() == []  # a failed open leaves no worker thread behind


async def test_funasr_names_a_missing_model_directory(tmp_path: Path) -> None:
    folder = tmp_path / "paraformer-zh-streaming"
    with pytest.raises(
        AsrError, match=rf"{folder} does not exist.*modelscope download --model .* --local_dir {folder}"
    ):
        await FunasrAsr(FunasrConfig(model_dir=folder)).open()


async def test_funasr_names_a_directory_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(
        AsrError, match=rf"{tmp_path} has no model.pt and no config.yaml or configuration.json"
    ):
        await FunasrAsr(FunasrConfig(model_dir=tmp_path)).open()
    (tmp_path / "configuration.json").write_text("{}")
    with pytest.raises(AsrError, match=r"has no model.pt: it is not a FunASR model"):
        await FunasrAsr(FunasrConfig(model_dir=tmp_path)).open()


async def test_funasr_streaming_paraformer_chunks_and_caches(
    tmp_path: Path, fake_funasr: type[FakeAutoModel]
) -> None:
    folder = model_dir(tmp_path, "paraformer", "model: ParaformerStreaming\nencoder: SANMEncoderChunkOpt\n")
    cfg = FunasrConfig(
        model_dir=folder,
        device="cpu",
        chunk_size=[0, 10, 5],
        encoder_chunk_look_back=4,
        decoder_chunk_look_back=1,
    )
    engine = FunasrAsr(cfg)
    await engine.open()
    try:
        assert engine.streaming
        (model,) = fake_funasr.instances
        assert model.kwargs == {
            "model": str(folder),
            "device": "cpu",
            "disable_update": True,
            "disable_pbar": True,
            "disable_log": True,
        }

        fake_funasr.answers = ["你好", "", "世界", "。"]
        pcm = np.random.default_rng(5).integers(-20000, 20000, 32000, dtype=np.int16)  # 2 s
        final, heard = await turn(engine, pcm, pace=0.05)
        assert final == Transcript("你好世界。", True, "funasr")
        assert heard.texts == ["你好", "你好世界"]
        assert heard.threads == {threading.get_ident()}
        stride = 10 * 960
        assert [(len(c["input"]), c["is_final"]) for c in model.calls] == [(stride, False)] * 3 + [
            (3200, True)
        ]
        assert [c["chunks_so_far"] for c in model.calls] == [1, 2, 3, 4]  # one cache through the turn
        assert all(c["chunk_size"] == [0, 10, 5] and c["encoder_chunk_look_back"] == 4 for c in model.calls)
        assert all(c["decoder_chunk_look_back"] == 1 for c in model.calls)
        first = model.calls[0]["input"]
        assert first.dtype == np.float32 and np.allclose(first, pcm[:stride] / 32768.0)

        model.calls.clear()
        fake_funasr.answers = ["再见", ""]
        final, _ = await turn(engine, pcm[: 2 * stride])  # exactly two chunks: the last waits for is_final
        assert final.text == "再见"
        assert [(len(c["input"]), c["is_final"]) for c in model.calls] == [(stride, False), (stride, True)]
        assert model.calls[0]["chunks_so_far"] == 1  # a new turn, a new cache

        empty = engine.stream()
        assert (await empty.finish()).text == ""  # no audio, no model call
    finally:
        await engine.close()
    assert asr_threads() == []


async def test_funasr_sensevoice_decodes_the_turn_whole(
    tmp_path: Path, fake_funasr: type[FakeAutoModel]
) -> None:
    folder = model_dir(tmp_path, "SenseVoiceSmall", "model: SenseVoiceSmall\n")
    engine = FunasrAsr(FunasrConfig(model_dir=folder, language="zh"))
    await engine.open()
    try:
        assert not engine.streaming
        fake_funasr.answers = ["<|zh|><|NEUTRAL|><|Speech|><|withitn|>这个多少钱？"]
        pcm = np.random.default_rng(6).integers(-20000, 20000, 24000, dtype=np.int16)
        final, heard = await turn(engine, pcm)
        (call,) = fake_funasr.instances[0].calls
    finally:
        await engine.close()
    assert final == Transcript("这个多少钱？", True, "funasr")
    assert heard.partials == []
    assert len(call["input"]) == len(pcm) and call["language"] == "zh" and call["use_itn"] is True


async def test_funasr_model_failures_are_asr_errors(
    tmp_path: Path, fake_funasr: type[FakeAutoModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = model_dir(tmp_path, "SenseVoiceSmall", "model: SenseVoiceSmall\n")
    engine = FunasrAsr(FunasrConfig(model_dir=folder))
    await engine.open()

    def broken(self: FakeAutoModel, input: np.ndarray, **kwargs: Any) -> Any:
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(FakeAutoModel, "generate", broken)
    stream = engine.stream()
    stream.feed(np.zeros(16000, np.int16))
    with pytest.raises(AsrError, match="CUDA out of memory"):
        await stream.finish()
    await engine.close()

    def unloadable(self: FakeAutoModel, **kwargs: Any) -> None:
        raise ValueError("bad config.yaml")

    monkeypatch.setattr(FakeAutoModel, "__init__", unloadable)
    with pytest.raises(AsrError, match=rf"cannot load the model in {folder}: bad config.yaml"):
        await FunasrAsr(FunasrConfig(model_dir=folder)).open()
    assert asr_threads() == []

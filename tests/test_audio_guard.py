"""Garbage from a TTS engine never airs: it is the engine's failure, and the next engine speaks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from broadcaster.config import load_config
from broadcaster.show.script_library import ScriptLibrary
from broadcaster.voice.audio_guard import AudioGuard, GarbageAudio
from broadcaster.voice.chain import TtsChain
from broadcaster.voice.splitter import split_text
from broadcaster.voice.tts.base import TtsChunk, TtsEngine
from broadcaster.voice.tts.local import create as create_local
from tests.speech_samples import speech

RATE = 24000
README = Path(__file__).resolve().parents[1] / "README.md"


def chunks(pcm: np.ndarray, size: int = 2048) -> list[np.ndarray]:
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def passes(text: str, pcm: np.ndarray, rate: int = RATE) -> None:
    guard = AudioGuard(text)
    for piece in chunks(pcm):
        guard.check(piece, rate)


@pytest.mark.parametrize(
    ("text", "voice", "gain"),
    [
        ("She sells sea shells by the sea shore, fresh fish, six sharp scissors.", "en-us", 1.0),
        ("Stop! This special price is for the first fifty shoppers, so hurry.", "en-us", 4.0),
        ("这款龙井茶是今年的新茶，现在下单立减十五元，数量有限，先到先得。", "cmn", 1.0),
        ("三十四，四十三，十四是十四，四十是四十。", "cmn", 3.0),
    ],
)
def test_speech_passes_at_any_sensible_level(text: str, voice: str, gain: float) -> None:
    pcm = speech(text, RATE, voice=voice).astype(np.float64) * gain
    passes(text, np.clip(pcm, -32768, 32767).astype(np.int16))
    passes(text, (pcm / 32768).astype(np.float32))  # float engines
    mono = np.clip(pcm, -32768, 32767).astype(np.int16)
    passes(text, mono[:, None])  # (samples, 1)
    passes(text, np.stack([mono, mono], axis=1))  # stereo WAV from an HTTP engine


def garbage_cases() -> dict[str, tuple[np.ndarray, int, str]]:
    rng = np.random.default_rng(4)
    text_bytes = README.read_bytes()[:48000]
    text_bytes = text_bytes[: len(text_bytes) // 2 * 2]
    return {
        "white noise": ((rng.standard_normal(RATE) * 6000).astype(np.int16), RATE, "noise"),
        "moderate noise": ((rng.standard_normal(RATE) * 4000).astype(np.int16), RATE, "noise"),
        "text as samples": (np.frombuffer(text_bytes, "<i2"), RATE, "full scale"),
        "text at half level": ((np.frombuffer(text_bytes, "<i2") // 8).astype(np.int16), RATE, "offset"),
        "full scale square": (
            np.where(np.arange(RATE) % 80 < 40, 32000, -32000).astype(np.int16),
            RATE,
            "full",
        ),
        "not numbers": (np.full(RATE, np.nan, np.float32), RATE, "not numbers"),
        "floats as int range": ((rng.standard_normal(RATE) * 9000).astype(np.float32), RATE, "float samples"),
        "absurd rate": (np.zeros(RATE, np.int16), 1, "sample rate"),
    }


@pytest.mark.parametrize("case", list(garbage_cases()))
def test_garbage_is_named(case: str) -> None:
    pcm, rate, why = garbage_cases()[case]
    with pytest.raises(GarbageAudio, match=why):
        passes("Hello there.", pcm, rate)


def test_noise_is_caught_in_the_first_chunk_before_it_airs() -> None:
    guard = AudioGuard("Hello there, how are you today?")
    noise = (np.random.default_rng(1).standard_normal(1200) * 4000).astype(np.int16)  # 50 ms
    with pytest.raises(GarbageAudio, match="noise"):
        guard.check(noise, RATE)


def test_audio_that_never_ends_is_a_runaway() -> None:
    guard = AudioGuard("Hi.")  # 3 characters: 13 s at most
    tone = (np.sin(np.arange(RATE) * 0.07) * 6000).astype(np.int16)
    for _ in range(13):
        guard.check(tone, RATE)
    with pytest.raises(GarbageAudio, match="13 s of audio for 3 characters"):
        guard.check(tone, RATE)


class Scripted(TtsEngine):
    """An engine that answers every text with ``pcm``, in chunks."""

    def __init__(self, name: str, pcm: np.ndarray) -> None:
        self.name = name  # type: ignore[misc]
        self.pcm = pcm

    @property
    def settings_key(self) -> str:
        return self.name

    async def stream(self, text: str) -> AsyncIterator[TtsChunk]:
        for piece in chunks(self.pcm):
            yield TtsChunk(piece, RATE)


async def test_a_garbage_answer_fails_the_engine_and_the_next_one_speaks() -> None:
    noise = (np.random.default_rng(2).standard_normal(RATE) * 5000).astype(np.int16)
    good = speech("Fresh tea today.", RATE)
    broken, local = Scripted("broken", noise), Scripted("local", good)
    chain = TtsChain([broken, local], first_audio_timeout_s=5, timeout_s=5)
    heard = [s async for s in chain.speak("Fresh tea today.")]
    assert {s.engine for s in heard} == {"local"}, "no garbage chunk was handed on"
    assert np.concatenate([s.chunk.pcm for s in heard]).size == good.size
    stats = chain.stats()["engines"]
    assert stats["broken"]["garbage"] == 1 and stats["broken"]["failing"] == 1
    assert "garbage audio: noise" in stats["broken"]["last_error"]
    broken.pcm = good  # the engine recovers: its failing count is back to 0
    assert [s.engine async for s in chain.speak("Fresh tea today.")] and chain.stats()["engines"]["broken"][
        "failing"
    ] == 0


async def test_every_shipped_script_sentence_passes_as_the_local_engine_speaks_it() -> None:
    """The guard's false alarm would silence a real sentence: none of the shipped talks may trip it."""
    cfg = load_config(None, [])
    engine = create_local(cfg)
    library = ScriptLibrary.load(cfg.resolve(cfg.show.library))
    split = cfg.voice.split
    texts = [
        sentence
        for script in library.scripts.values()
        for segment in script.segments
        for sentence in split_text(
            script.render(segment.id), split.max_chars, split.min_chars, split.first_min_chars
        )
    ]
    texts.append("Tap the first link below to get yours.")  # it tripped the first thresholds
    assert len(texts) > 30
    for text in texts:
        guard = AudioGuard(text)
        async for chunk in engine.stream(text):
            guard.check(chunk.pcm, chunk.rate)

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from broadcaster.config import Config
from broadcaster.show.host import Host
from broadcaster.show.presynth import chain_speaker, presynthesise
from broadcaster.show.safety import SafetyFilter
from broadcaster.show.script_library import ScriptLibrary
from broadcaster.voice.cache import AudioCache
from broadcaster.voice.chain import TtsChain
from broadcaster.voice.speaker import Speaker
from broadcaster.voice.speech_track import SpeechTrack
from broadcaster.voice.tts.base import TtsChunk, TtsError
from broadcaster.voice.tts.espeak import EspeakEngine

ROOT = Path(__file__).resolve().parents[1]


def host_sentences(lib: ScriptLibrary, cfg: Config | None = None) -> Callable[[str], list[str]]:
    """The sentences the host says of a rendered segment (``Host.sentences``), as the app passes them."""
    cfg = cfg or Config()
    speaker = Speaker(SpeechTrack(), TtsChain([EspeakEngine()], 10.0, 30.0))
    host = Host(speaker, SafetyFilter.from_config(cfg, lib.catalog), cfg.voice.split)
    return lambda text: host.sentences(text, "script")


class DownEspeak(EspeakEngine):
    """The same engine, voice and settings (so the same cache keys), with its service down."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def stream(self, text: str) -> AsyncIterator[TtsChunk]:
        self.calls += 1
        raise TtsError("the TTS service is down")
        yield  # an async generator, like the real one


def sentences_of_library(lib: ScriptLibrary) -> list[str]:
    sentences_of = host_sentences(lib)
    out = []
    for talk in lib.scripts.values():
        for segment in talk.segments:
            out += sentences_of(talk.render(segment.id))
    return list(dict.fromkeys(out))


def test_after_presynthesis_every_scripted_sentence_plays_with_the_tts_down(tmp_path: Path) -> None:
    lib = ScriptLibrary.load(ROOT / "scripts_library")
    cfg = Config()
    cache = AudioCache(tmp_path / "tts", 200_000_000)
    chain = TtsChain([EspeakEngine()], 10.0, 30.0, cache)
    sentences = sentences_of_library(lib)
    assert len(sentences) >= 20

    async def main() -> None:
        started = time.monotonic()
        stats = await presynthesise(lib, host_sentences(lib, cfg), chain_speaker(chain))
        print(f"presynthesis: {stats.as_dict()} in {time.monotonic() - started:.2f} s")
        assert stats.scripts == len(lib.ids()) and stats.sentences == len(sentences)
        assert stats.spoken == stats.sentences and stats.failed == 0
        assert cache.stats.writes == len(sentences)

        again = await presynthesise(lib, host_sentences(lib, cfg), chain_speaker(chain))
        assert again.spoken == len(sentences) and cache.stats.writes == len(sentences), "synthesised once"

        down = DownEspeak()
        assert down.settings_key == chain.engines[0].settings_key
        broken = TtsChain([down], 10.0, 30.0, cache)
        for sentence in sentences:
            spoken = [s async for s in broken.speak(sentence, cache=True)]
            assert len(spoken) == 1 and spoken[0].engine == "local" and spoken[0].chunk.pcm.size > 1000
        assert down.calls == 0 and broken.unspoken == 0
        with pytest.raises(TtsError):  # without the cache, the same chain has nothing to say
            async for _ in broken.speak(sentences[0]):
                pass

    asyncio.run(main())


def test_a_failing_sentence_is_counted_and_the_rest_go_on(tmp_path: Path) -> None:
    lib = ScriptLibrary.load(ROOT / "scripts_library")
    sentences = sentences_of_library(lib)
    said: list[tuple[str, str | None]] = []

    async def speak(sentence: str, voice: str | None) -> None:
        if sentence == sentences[3]:
            raise TtsError("this one fails")
        said.append((sentence, voice))

    sentences_of = host_sentences(lib)
    stats = asyncio.run(presynthesise(lib, sentences_of, speak, script_ids=["longjing-intro"]))
    tea = lib.scripts["longjing-intro"]
    expected = list(dict.fromkeys(s for seg in tea.segments for s in sentences_of(tea.render(seg.id))))
    assert stats.scripts == 1 and stats.sentences == len(expected)
    assert stats.failed == (1 if sentences[3] in expected else 0)
    assert [s for s, _ in said] == [s for s in expected if s != sentences[3]]


def test_chain_speaker_puts_the_segments_voice_first(tmp_path: Path) -> None:
    class Other(EspeakEngine):
        name = "edge"

    cache = AudioCache(tmp_path, 50_000_000)
    local, other = EspeakEngine(), Other()
    chain = TtsChain([local, other], 10.0, 30.0, cache)
    speak = chain_speaker(chain)

    async def main() -> None:
        await speak("欢迎来到直播间。", "edge")
        await speak("欢迎来到直播间。", None)
        await speak("欢迎来到直播间。", "siri")  # not in the chain: the chain's own order

    asyncio.run(main())
    assert cache.get(AudioCache.key("edge", other.settings_key, "欢迎来到直播间。")) is not None
    assert cache.get(AudioCache.key("local", local.settings_key, "欢迎来到直播间。")) is not None
    assert cache.stats.writes == 2

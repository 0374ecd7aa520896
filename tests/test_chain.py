import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from broadcaster.config import GptSovitsConfig, OpenAiSpeechConfig
from broadcaster.voice.cache import AudioCache
from broadcaster.voice.chain import TtsChain
from broadcaster.voice.tts.base import TtsError
from broadcaster.voice.tts.gpt_sovits import GptSovitsTts
from broadcaster.voice.tts.openai_speech import OpenAiSpeechTts
from tests.http_servers import serve
from tests.media import streamed_wav_header

SPEECH = (np.sin(np.arange(24000) * 0.07) * 9000).astype("<i2")


def openai_engine(url: str) -> OpenAiSpeechTts:
    return OpenAiSpeechTts(OpenAiSpeechConfig(base_url=url + "/v1"), timeout_s=10)


def sovits_engine(url: str) -> GptSovitsTts:
    return GptSovitsTts(GptSovitsConfig(url=url), timeout_s=10)


REQUESTS: list[str] = []


async def speech_server_handler(request: web.Request) -> web.StreamResponse:
    """Speaks both protocols: GPT-SoVITS (/tts, streamed WAV) and OpenAI (/v1/audio/speech, raw PCM)."""
    REQUESTS.append(request.path)
    if request.path == "/tts":
        return web.Response(body=streamed_wav_header(24000) + SPEECH.tobytes())
    return web.Response(body=SPEECH.tobytes())


async def hang(request: web.Request) -> web.StreamResponse:
    """A speech server that never answers."""
    await asyncio.sleep(30)
    return web.Response()


async def collect(
    chain: TtsChain, text: str, cache: bool = False
) -> tuple[np.ndarray, list[str], list[bool]]:
    pcm, engines, restarts = [], [], []
    async for spoken in chain.speak(text, cache=cache):
        pcm.append(spoken.chunk.pcm.reshape(-1))
        engines.append(spoken.engine)
        restarts.append(spoken.restart)
    return np.concatenate(pcm), engines, restarts


def test_a_failing_engine_hands_the_sentence_to_the_next() -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        return web.json_response({"message": "model not loaded"}, status=500)

    async def main() -> None:
        async with serve(broken) as bad, serve(speech_server_handler) as good:
            chain = TtsChain([sovits_engine(bad), openai_engine(good)], 2.0, 10.0)
            pcm, engines, _ = await collect(chain, "欢迎来到直播间。")
            np.testing.assert_array_equal(pcm, SPEECH)
            assert set(engines) == {"openai"}
            stats = chain.stats()
            assert stats["fallbacks"] == 1 and stats["unspoken"] == 0
            assert stats["engines"]["gpt_sovits"]["failures"] == 1
            for engine in chain.engines:
                await engine.aclose()

    asyncio.run(main())


def test_an_engine_that_never_answers_times_out_to_the_next() -> None:
    async def main() -> float:
        async with serve(hang) as silent, serve(speech_server_handler) as good:
            chain = TtsChain([openai_engine(silent), sovits_engine(good)], 0.3, 10.0)
            started = time.monotonic()
            pcm, engines, _ = await collect(chain, "hello there.")
            elapsed = time.monotonic() - started
            np.testing.assert_array_equal(pcm, SPEECH)
            assert set(engines) == {"gpt_sovits"}
            assert chain.engine_stats["openai"].timeouts == 1 and chain.fallbacks == 1
            for engine in chain.engines:
                await engine.aclose()
            return elapsed

    assert asyncio.run(main()) < 3


def test_an_engine_failing_twice_rests_behind_the_others_then_is_tried_again() -> None:
    async def main() -> None:
        async with serve(hang) as silent, serve(speech_server_handler) as good:
            chain = TtsChain([openai_engine(silent), sovits_engine(good)], 0.3, 10.0)
            for _ in range(2):  # two timeouts in a row
                assert set((await collect(chain, "hello there."))[1]) == {"gpt_sovits"}
            assert [e.name for e in chain.order()] == ["gpt_sovits", "openai"]
            assert set((await collect(chain, "hello again."))[1]) == {"gpt_sovits"}
            assert chain.engine_stats["openai"].timeouts == 2, "a resting engine is not waited for"
            chain.engine_stats["openai"].resting_until = 0.0  # its rest is over: it is tried first
            assert [e.name for e in chain.order()] == ["openai", "gpt_sovits"]
            chain.engine_stats["openai"].failing = 5000  # a day of failures: the rest stays capped
            await collect(chain, "and once more.")
            rest = chain.engine_stats["openai"].resting_until - time.monotonic()
            assert 0 < rest <= 60
            for engine in chain.engines:
                await engine.aclose()

    asyncio.run(main())


def test_when_no_engine_can_speak_the_sentence_is_reported_not_dropped_silently() -> None:
    async def main() -> None:
        chain = TtsChain([openai_engine("http://127.0.0.1:9"), sovits_engine("http://127.0.0.1:9")], 1, 5)
        with pytest.raises(TtsError, match=r"openai: .*gpt_sovits: "):
            await collect(chain, "hello.")
        assert chain.unspoken == 1 and chain.fallbacks == 1
        for engine in chain.engines:
            await engine.aclose()

    asyncio.run(main())


def test_a_cached_sentence_is_not_synthesised_again(tmp_path: Path) -> None:
    async def main() -> None:
        async with serve(speech_server_handler) as good:
            REQUESTS.clear()
            cache = AudioCache(tmp_path, 10_000_000)
            chain = TtsChain([openai_engine(good)], 2.0, 10.0, cache)
            first, _, _ = await collect(chain, "今天的龙井特价。", cache=True)
            second, _, _ = await collect(chain, "今天的龙井特价。", cache=True)
            third, _, _ = await collect(chain, "今天的龙井特价。", cache=False)
            np.testing.assert_array_equal(first, second)
            np.testing.assert_array_equal(first, third)
            assert REQUESTS == ["/v1/audio/speech", "/v1/audio/speech"], "the second was a cache hit"
            assert cache.stats.hits == 1 and cache.stats.writes == 1
            await chain.engines[0].aclose()

    asyncio.run(main())

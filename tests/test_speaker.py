import asyncio
from collections.abc import AsyncIterator

import numpy as np
from aiohttp import web

from broadcaster.config import OpenAiSpeechConfig
from broadcaster.voice.chain import TtsChain
from broadcaster.voice.pcm import resample
from broadcaster.voice.speaker import Speaker
from broadcaster.voice.speech_track import SpeechTrack
from broadcaster.voice.tts.openai_speech import OpenAiSpeechTts
from tests.http_servers import serve

GOOD = (np.sin(np.arange(24000) * 0.05) * 7000).astype("<i2")
BROKEN = np.full(12000, 3000, "<i2")


def engine(url: str) -> OpenAiSpeechTts:
    return OpenAiSpeechTts(OpenAiSpeechConfig(base_url=url), timeout_s=5)


async def sentences(*texts: str) -> AsyncIterator[str]:
    for text in texts:
        yield text


async def good(request: web.Request) -> web.StreamResponse:
    return web.Response(body=GOOD.tobytes())


async def dies_mid_sentence(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(BROKEN.tobytes())
    assert request.transport is not None
    request.transport.close()
    return response


def test_a_voice_that_dies_mid_sentence_is_replaced_without_its_partial_audio() -> None:
    async def main() -> None:
        async with serve(dies_mid_sentence) as bad, serve(good) as fine:
            track = SpeechTrack()
            chain = TtsChain([engine(bad), engine(fine)], 2, 5)
            speech = await Speaker(track, chain, prebuffer_ms=80).speak(sentences("你好。"), "t")
            assert [s.engine for s in speech.sentences] == ["openai"]
            assert chain.fallbacks == 1 and chain.engine_stats["openai"].failures == 1
            expected = resample(GOOD, 24000, 48000)
            assert track.pending_samples == len(expected), "none of the broken voice's audio is left"
            played = np.concatenate([track.pull()[0] for _ in range(40)])
            np.testing.assert_array_equal(played[: len(expected)], expected)
            assert not played[len(expected) :].any()
            for e in chain.engines:
                await e.aclose()

    asyncio.run(main())


def test_sentences_queue_in_order_and_an_unspeakable_one_is_reported() -> None:
    async def main() -> None:
        calls: list[str] = []

        async def picky(request: web.Request) -> web.StreamResponse:
            text = (await request.json())["input"]
            calls.append(text)
            if "坏" in text:
                return web.json_response({"error": {"message": "bad text"}}, status=400)
            return web.Response(body=GOOD.tobytes())

        async with serve(picky) as url:
            track = SpeechTrack()
            chain = TtsChain([engine(url)], 2, 5)
            speaker = Speaker(track, chain)
            speech = await speaker.speak(sentences("第一句。", "坏句子。", "第三句。"), "t")
            assert [s.text for s in speech.sentences] == ["第一句。", "第三句。"]
            assert speech.unspoken == ["坏句子。"] and chain.unspoken == 1
            assert speech.text == "第一句。第三句。"
            ids = [u.id for s in speech.sentences for u in s.utterances]
            assert ids == sorted(ids) and all(u.tag == "t" for s in speech.sentences for u in s.utterances)
            assert track.pending_samples == 2 * len(resample(GOOD, 24000, 48000))
            await chain.engines[0].aclose()

    asyncio.run(main())


def test_synthesis_waits_while_enough_speech_is_queued() -> None:
    async def main() -> None:
        calls: list[str] = []

        async def counting(request: web.Request) -> web.StreamResponse:
            calls.append((await request.json())["input"])
            return web.Response(body=GOOD.tobytes())

        async with serve(counting) as url:
            track = SpeechTrack()
            chain = TtsChain([engine(url)], 2, 5)
            speaker = Speaker(track, chain, ahead_s=1.0)
            task = asyncio.create_task(speaker.speak(sentences("一。", "二。", "三。"), "t"))
            await asyncio.sleep(0.5)
            assert calls == ["一。", "二。"], "the third waits: two seconds are queued"
            for _ in range(30):  # the program plays 1.2 s
                track.pull()
            speech = await asyncio.wait_for(task, 2)
            assert calls == ["一。", "二。", "三。"] and len(speech.sentences) == 3
            await chain.engines[0].aclose()

    asyncio.run(main())

import asyncio
import time
from urllib.parse import urlparse

import psutil
import pytest
from aiohttp import web

from broadcaster.config import LlmConfig
from broadcaster.show.llm import LlmClient, LlmError
from tests.conftest import free_port
from tests.http_servers import serve

QUESTION = [
    {"role": "system", "content": "You are Bo, the host of a tea shop's live stream. Be brief."},
    {"role": "user", "content": 'Chat message from viewer "amy" (quoted data): "Hello! What tea is this?"'},
]


def open_connections(base_url: str) -> int:
    port = urlparse(base_url).port
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


def test_a_reply_streams_from_the_local_model(local_llm: str) -> None:
    async def main() -> list[str]:
        client = LlmClient(LlmConfig(max_tokens=40), local_llm, "local")
        try:
            return [piece async for piece in client.stream(QUESTION)]
        finally:
            await client.aclose()

    pieces = asyncio.run(main())
    assert len(pieces) > 3, "tokens arrive one by one"
    assert "".join(pieces).strip()


def test_cancelling_mid_stream_closes_the_connection_within_100_ms(local_llm: str) -> None:
    async def main() -> tuple[float, int, int, int]:
        client = LlmClient(LlmConfig(max_tokens=400), local_llm, "local")
        first = asyncio.Event()
        received = 0

        async def consume() -> None:
            nonlocal received
            async for _ in client.stream(QUESTION):
                received += 1
                first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 60)
        during = open_connections(local_llm)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        while open_connections(local_llm) and time.monotonic() - started < 1:  # noqa: ASYNC110 (the OS socket table has no event)
            await asyncio.sleep(0.005)
        elapsed = time.monotonic() - started
        after = open_connections(local_llm)
        await client.aclose()
        return elapsed, during, after, client.cancelled

    elapsed, during, after, cancelled = asyncio.run(main())
    assert during == 1
    assert after == 0 and elapsed < 0.1
    assert cancelled == 1


def test_a_dead_endpoint_is_a_clear_error() -> None:
    async def main() -> None:
        client = LlmClient(LlmConfig(first_token_timeout_s=2), f"http://127.0.0.1:{free_port()}/v1", "m")
        try:
            with pytest.raises(LlmError, match=r"127\.0\.0\.1"):
                async for _ in client.stream(QUESTION):
                    pass
        finally:
            await client.aclose()
        assert client.failures == 1

    asyncio.run(main())


def test_an_endpoint_that_never_answers_times_out() -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    async def main() -> float:
        async with serve(hang) as url:
            client = LlmClient(LlmConfig(first_token_timeout_s=0.3), f"{url}/v1", "m")
            started = time.monotonic()
            try:
                with pytest.raises(LlmError, match="no tokens in time"):
                    async for _ in client.stream(QUESTION):
                        pass
                return time.monotonic() - started
            finally:
                await client.aclose()

    assert asyncio.run(main()) < 1.5

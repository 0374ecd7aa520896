"""Any OpenAI-compatible speech endpoint: ``POST {base_url}/audio/speech``.

Asked for ``response_format: "pcm"``, the answer is raw 24 kHz 16-bit mono little-endian samples,
streamed as they are made. Errors come as JSON ``{"error": {"message": ...}}``. The key is read from
the environment variable ``api_key_env`` names; a local server may need none, OpenAI's own does.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from broadcaster.voice.tts.base import TtsChunk, TtsEngine, TtsError
from broadcaster.voice.tts.http_stream import HttpClient, PcmReader

if TYPE_CHECKING:
    from broadcaster.config import Config, OpenAiSpeechConfig

PCM_RATE = 24000
OPENAI_HOST = "api.openai.com"


class OpenAiSpeechTts(TtsEngine):
    """Speaks through ``/audio/speech`` with one of the endpoint's voices."""

    name = "openai"

    def __init__(self, cfg: OpenAiSpeechConfig, timeout_s: float, api_key: str = "") -> None:
        self.cfg = cfg
        self.url = cfg.base_url.rstrip("/") + "/audio/speech"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = HttpClient(self.name, timeout_s, headers=headers, trust_env=True)

    @property
    def settings_key(self) -> str:
        """Endpoint, model, voice and speed (never the key)."""
        cfg = self.cfg
        fields = {"url": self.url, "model": cfg.model, "voice": cfg.voice, "speed": cfg.speed}
        return json.dumps(fields, sort_keys=True, ensure_ascii=False)

    def request(self, text: str) -> dict[str, Any]:
        """The JSON body for ``text``."""
        cfg = self.cfg
        return {
            "model": cfg.model,
            "input": text,
            "voice": cfg.voice,
            "response_format": "pcm",
            "speed": cfg.speed,
        }

    async def stream(self, text: str) -> AsyncIterator[TtsChunk]:
        """The 24 kHz samples as they arrive."""
        pcm = PcmReader("<i2")
        async with aclosing(self._http.body("POST", self.url, json_body=self.request(text))) as body:
            async for data in body:
                samples = pcm.push(data)
                if samples.size:
                    yield TtsChunk(samples, PCM_RATE)

    async def aclose(self) -> None:
        """Close the HTTP session."""
        await self._http.aclose()


def create(cfg: Config) -> OpenAiSpeechTts:
    """The engine configured by ``[voice.openai]``; OpenAI's own endpoint without a key is an error."""
    section = cfg.voice.openai
    key = os.environ.get(section.api_key_env, "").strip()
    if not key and urlsplit(section.base_url).hostname == OPENAI_HOST:
        raise TtsError(
            f"voice.openai: the environment variable {section.api_key_env} (voice.openai.api_key_env) "
            f"is not set, and {section.base_url} needs an API key"
        )
    return OpenAiSpeechTts(section, cfg.voice.timeout_s, key)

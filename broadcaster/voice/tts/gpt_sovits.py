"""GPT-SoVITS, self-hosted: ``POST /tts`` of its ``api_v2.py``, answered with a streamed WAV.

In streaming mode the server sends a WAV header whose sizes are unknown (written as 0), then raw
16-bit PCM fragment by fragment as the model produces them; a bad request is HTTP 400 with JSON
``{"message": ..., "Exception": ...}``. ``extra`` carries any other ``/tts`` field (``top_k``,
``text_split_method``, ``streaming_mode`` 2 or 3 on newer servers, ...).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from broadcaster.voice.tts.base import TtsChunk, TtsEngine, TtsError
from broadcaster.voice.tts.http_stream import HttpClient, WavStreamReader

if TYPE_CHECKING:
    from broadcaster.config import Config, GptSovitsConfig


class GptSovitsTts(TtsEngine):
    """Speaks through a GPT-SoVITS ``api_v2.py`` server with a reference voice."""

    name = "gpt_sovits"

    def __init__(self, cfg: GptSovitsConfig, timeout_s: float) -> None:
        self.cfg = cfg
        self.url = cfg.url.rstrip("/") + "/tts"
        self._http = HttpClient(self.name, timeout_s)

    @property
    def settings_key(self) -> str:
        """Server, reference voice, languages, speed and the extra fields."""
        return json.dumps(self._fields(), sort_keys=True, ensure_ascii=False) + f"@{self.url}"

    def _fields(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "text_lang": cfg.text_lang,
            "ref_audio_path": cfg.ref_audio_path,
            "prompt_lang": cfg.prompt_lang,
            "prompt_text": cfg.prompt_text,
            "streaming_mode": True,
            "speed_factor": cfg.speed_factor,
            **cfg.extra,
        }

    def request(self, text: str) -> dict[str, Any]:
        """The JSON body of ``POST /tts`` for ``text``."""
        return {**self._fields(), "text": text, "media_type": "wav"}

    async def stream(self, text: str) -> AsyncIterator[TtsChunk]:
        """The WAV answer's samples as they arrive, at the rate its header names."""
        wav = WavStreamReader()
        async with aclosing(self._http.body("POST", self.url, json_body=self.request(text))) as body:
            async for data in body:
                pcm = wav.push(data)
                if pcm.size and wav.format is not None:
                    yield TtsChunk(pcm, wav.format.rate)
        if wav.format is None:
            raise TtsError(f"gpt_sovits: {self.url} ended before a whole WAV header arrived")

    async def aclose(self) -> None:
        """Close the HTTP session."""
        await self._http.aclose()


def create(cfg: Config) -> GptSovitsTts:
    """The engine configured by ``[voice.gpt_sovits]``."""
    return GptSovitsTts(cfg.voice.gpt_sovits, cfg.voice.timeout_s)

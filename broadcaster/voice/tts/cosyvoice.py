"""CosyVoice, self-hosted: its FastAPI server (``runtime/python/fastapi/server.py``).

``/inference_sft`` (``tts_text``, ``spk_id``) and ``/inference_instruct`` (plus ``instruct_text``)
take form fields and answer with raw 16-bit mono PCM at the model's rate, streamed as it is
synthesised. The upstream server declares them as GET routes reading a form body (its own client
sends GET with form data); later versions accept POST too, so GET works with both. The rate is not on
the wire in the upstream server: it comes from ``sample_rate`` (22050 for CosyVoice-300M, 24000 for
CosyVoice2), unless the answer carries a ``X-Custom-Header-sampleRate`` header as some versions do.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import TYPE_CHECKING

import aiohttp

from broadcaster.voice.tts.base import TtsChunk, TtsEngine
from broadcaster.voice.tts.http_stream import HttpClient, PcmReader

if TYPE_CHECKING:
    from broadcaster.config import Config, CosyVoiceConfig

RATE_HEADER = "X-Custom-Header-sampleRate"


class CosyVoiceTts(TtsEngine):
    """Speaks with a built-in CosyVoice speaker, optionally steered by an instruction."""

    name = "cosyvoice"

    def __init__(self, cfg: CosyVoiceConfig, timeout_s: float) -> None:
        self.cfg = cfg
        self.url = f"{cfg.url.rstrip('/')}/inference_{cfg.mode}"
        self._http = HttpClient(self.name, timeout_s)

    @property
    def settings_key(self) -> str:
        """Server, mode, speaker, instruction and rate."""
        cfg = self.cfg
        fields = {"url": self.url, "spk_id": cfg.spk_id, "rate": cfg.sample_rate}
        if cfg.mode == "instruct":
            fields["instruct_text"] = cfg.instruct_text
        return json.dumps(fields, sort_keys=True, ensure_ascii=False)

    def request(self, text: str) -> dict[str, str]:
        """The form fields for ``text``."""
        form = {"tts_text": text, "spk_id": self.cfg.spk_id}
        if self.cfg.mode == "instruct":
            form["instruct_text"] = self.cfg.instruct_text
        return form

    async def stream(self, text: str) -> AsyncIterator[TtsChunk]:
        """The PCM as it arrives."""
        rate = self.cfg.sample_rate

        def read_rate(response: aiohttp.ClientResponse) -> None:
            nonlocal rate
            announced = response.headers.get(RATE_HEADER, "")
            if announced.isdigit() and int(announced) > 0:
                rate = int(announced)

        pcm = PcmReader("<i2")
        body = self._http.body("GET", self.url, form=self.request(text), on_headers=read_rate)
        async with aclosing(body) as chunks:
            async for data in chunks:
                samples = pcm.push(data)
                if samples.size:
                    yield TtsChunk(samples, rate)

    async def aclose(self) -> None:
        """Close the HTTP session."""
        await self._http.aclose()


def create(cfg: Config) -> CosyVoiceTts:
    """The engine configured by ``[voice.cosyvoice]``."""
    return CosyVoiceTts(cfg.voice.cosyvoice, cfg.voice.timeout_s)

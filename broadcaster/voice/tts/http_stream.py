"""What the HTTP TTS engines share: an owned session, a streamed answer read as PCM, errors as ``TtsError``.

Audio is handed on as it arrives, so the first words play while the server still synthesises the rest.
Network chunks cut the byte stream anywhere: a 16-bit sample (or a stereo frame) split between two
chunks waits for its other half rather than being dropped or shifting every later sample. Cancelling
the task that reads an answer closes its connection at once, so the server stops working for nobody.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np

from broadcaster.voice.tts.base import TtsError

ERROR_BODY_LIMIT = 4096
WAV_HEADER_LIMIT = 1 << 16


class HttpClient:
    """An engine's HTTP session: made on first use inside the running loop, closed by ``aclose``.

    ``timeout_s`` bounds each request whole (connect, answer and the last byte of audio).
    """

    def __init__(
        self,
        engine: str,
        timeout_s: float,
        *,
        headers: Mapping[str, str] | None = None,
        trust_env: bool = False,
    ) -> None:
        self.engine = engine
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._headers = dict(headers or {})
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _current(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=self.timeout, trust_env=self._trust_env
            )
            self._loop = loop
        return self._session

    async def body(
        self,
        method: str,
        url: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        form: Mapping[str, str] | None = None,
        on_headers: Callable[[aiohttp.ClientResponse], None] | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """Send a request and yield the answer's body as it arrives.

        A status of 400 or more raises ``TtsError`` with the server's own message; so do a refused
        connection, a connection lost mid-answer and the timeout. ``on_headers(response)``, when given,
        sees the response before its first byte is yielded. Close the iterator (``aclosing``) to drop
        the connection early.
        """
        session = self._current()
        try:
            response = await session.request(method, url, json=json_body, data=form)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._failure(url, exc) from exc
        complete = False
        try:
            if response.status >= 400:
                message = await _error_text(response)
                raise TtsError(f"{self.engine}: HTTP {response.status} from {url}: {message}")
            if on_headers is not None:
                on_headers(response)
            async for data in response.content.iter_any():
                yield data
            complete = True
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._failure(url, exc) from exc
        finally:
            if complete:
                response.release()
            else:
                response.close()

    def _failure(self, url: str, exc: BaseException) -> TtsError:
        if isinstance(exc, TimeoutError):
            return TtsError(f"{self.engine}: no complete answer from {url} within {self.timeout.total:g} s")
        if isinstance(exc, aiohttp.ClientConnectorError):
            return TtsError(f"{self.engine}: cannot reach {url}: {exc.os_error or exc}")
        if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
            return TtsError(f"{self.engine}: {url} closed the connection mid-answer ({exc})")
        return TtsError(f"{self.engine}: {url}: {type(exc).__name__}: {exc}")

    async def aclose(self) -> None:
        """Close the session (and its pooled connections)."""
        session, self._session = self._session, None
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()


async def _error_text(response: aiohttp.ClientResponse) -> str:
    """The message in an error answer: a JSON ``message``/``error``/``detail``, else the text itself."""
    raw = bytearray()
    try:
        while len(raw) < ERROR_BODY_LIMIT:
            data = await response.content.read(ERROR_BODY_LIMIT - len(raw))
            if not data:
                break
            raw += data
    except (aiohttp.ClientError, TimeoutError, OSError):
        pass
    text = raw.decode("utf-8", "replace").strip()
    try:
        message = _message_in(json.loads(text))
    except ValueError:
        message = ""
    return message or text[:500] or (response.reason or "no message")


def _message_in(doc: Any) -> str:
    """Find the human message in the error shapes servers use (FastAPI, OpenAI, GPT-SoVITS)."""
    if isinstance(doc, str):
        return doc
    if isinstance(doc, list):
        return "; ".join(m for m in (_message_in(d) for d in doc) if m)
    if isinstance(doc, dict):
        parts = [_message_in(doc[k]) for k in ("message", "error", "detail", "msg", "Exception") if k in doc]
        return ": ".join(p for p in parts if p)
    return ""


class PcmReader:
    """Interleaved little-endian PCM bytes in, whole sample frames out, across any chunking."""

    def __init__(self, dtype: str = "<i2", channels: int = 1) -> None:
        self.dtype = np.dtype(dtype)
        self.channels = channels
        self._frame_bytes = self.dtype.itemsize * channels
        self._pending = b""

    @property
    def pending(self) -> int:
        """Bytes held back until the rest of their frame arrives."""
        return len(self._pending)

    def push(self, data: bytes) -> np.ndarray:
        """The whole frames now available: shape (n,) for mono, (n, channels) otherwise; n may be 0."""
        if self._pending:
            data = self._pending + data
        usable = len(data) - len(data) % self._frame_bytes
        self._pending = data[usable:]
        samples = np.frombuffer(data, self.dtype, usable // self.dtype.itemsize)
        samples = samples.astype(samples.dtype.newbyteorder("="), copy=True)
        return samples if self.channels == 1 else samples.reshape(-1, self.channels)


@dataclass(frozen=True)
class WavFormat:
    """What a WAV header says about the samples that follow it."""

    rate: int
    channels: int
    dtype: str


class WavStreamReader:
    """A WAV answer read as it streams: the header (fmt, then data), then PCM to the end of the body.

    Streaming servers cannot know the sizes when they send the header, so they write 0 or 0xFFFFFFFF
    (some write the size of their first fragment only); the data chunk is taken to run to the end of
    the stream whatever its size field says.
    """

    def __init__(self) -> None:
        self.format: WavFormat | None = None
        self._head = b""
        self._pcm: PcmReader | None = None

    def push(self, data: bytes) -> np.ndarray:
        """The samples now available (possibly none while the header is still arriving)."""
        if self._pcm is not None:
            return self._pcm.push(data)
        self._head += data
        rest = self._parse_header()
        if rest is None:
            if len(self._head) > WAV_HEADER_LIMIT:
                raise TtsError("the WAV answer has no data chunk in its first 64 KiB")
            return np.zeros(0, np.int16)
        assert self._pcm is not None
        self._head = b""
        return self._pcm.push(rest)

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as samples (an unfinished header or frame)."""
        return self._pcm.pending if self._pcm is not None else len(self._head)

    def _parse_header(self) -> bytes | None:
        head = self._head
        if len(head) < 12:
            return None
        if head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            raise TtsError(f"the answer is not a WAV stream (it starts {head[:12]!r})")
        pos = 12
        while len(head) >= pos + 8:
            chunk_id, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
            body = pos + 8
            if chunk_id == b"data":
                if self.format is None:
                    raise TtsError("the WAV stream has a data chunk before its fmt chunk")
                self._pcm = PcmReader(self.format.dtype, self.format.channels)
                return head[body:]
            end = body + size + (size & 1)
            if len(head) < end:
                return None
            if chunk_id == b"fmt ":
                self.format = _wav_format(head[body : body + size])
            pos = end
        return None


def _wav_format(fmt: bytes) -> WavFormat:
    if len(fmt) < 16:
        raise TtsError("the WAV fmt chunk is too short")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format
        tag = struct.unpack_from("<H", fmt, 24)[0]
    dtypes = {(1, 16): "<i2", (3, 32): "<f4"}
    dtype = dtypes.get((tag, bits))
    if dtype is None or channels not in (1, 2) or rate <= 0:
        raise TtsError(f"unsupported WAV audio: format {tag}, {bits} bits, {channels} channels, {rate} Hz")
    return WavFormat(rate, channels, dtype)

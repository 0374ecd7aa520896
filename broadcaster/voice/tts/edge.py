"""Microsoft Edge's online voices, through edge-tts: MP3 decoded as it streams, with word timings.

The service answers over a WebSocket with MP3 (24 kHz mono, 48 kbit/s) in small binary messages and
a WordBoundary event (offset and duration in 100 ns units) before each word's audio. Each message is
decoded as it comes, so the first words play while the rest is still on its way; a word's timing
rides on the next chunk of audio. Decoding a few hundred bytes of MP3 takes microseconds, so it stays
on the event loop. edge-tts opens one connection per call and closes it when the stream ends or the
consuming task is cancelled.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp
import av
import edge_tts
import numpy as np
from edge_tts.exceptions import EdgeTTSException

from broadcaster.voice.speech_track import Phoneme
from broadcaster.voice.tts.base import TtsChunk, TtsEngine, TtsError

if TYPE_CHECKING:
    from broadcaster.config import Config, EdgeTtsConfig

TICKS_PER_SECOND = 10_000_000


class Mp3Stream:
    """MP3 bytes in, in pieces of any size; int16 PCM out as soon as whole frames have arrived."""

    def __init__(self) -> None:
        self._codec: Any = av.CodecContext.create("mp3", "r")
        self.rate = 0

    def push(self, data: bytes) -> list[np.ndarray]:
        """Samples of the frames completed by ``data``."""
        try:
            return [pcm for packet in self._codec.parse(data) for pcm in self._decode(packet)]
        except av.FFmpegError as exc:
            raise TtsError(f"edge: undecodable MP3 ({exc})") from exc

    def flush(self) -> list[np.ndarray]:
        """What the parser and decoder still hold at the end of the stream."""
        try:
            out = [pcm for packet in self._codec.parse(b"") for pcm in self._decode(packet)]
            return out + self._decode(None)
        except av.FFmpegError as exc:
            raise TtsError(f"edge: undecodable MP3 ({exc})") from exc

    def _decode(self, packet: Any) -> list[np.ndarray]:
        out = []
        for frame in self._codec.decode(packet):
            self.rate = frame.sample_rate
            out.append(_frame_pcm(frame))
        return out


def _frame_pcm(frame: av.AudioFrame) -> np.ndarray:
    """A decoded frame as int16, shape (n,) mono or (n, 2) stereo."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        data = data.T
    data = data.reshape(-1, channels)
    if data.dtype.kind == "f":
        data = np.rint(np.multiply(np.clip(data, -1.0, 1.0), 32767.0))
    pcm = data.astype(np.int16)
    return pcm.reshape(-1) if channels == 1 else pcm


class EdgeTts(TtsEngine):
    """Speaks with an Edge neural voice; needs the internet."""

    name = "edge"

    def __init__(self, cfg: EdgeTtsConfig, timeout_s: float) -> None:
        self.cfg = cfg
        self.timeout_s = timeout_s

    @property
    def settings_key(self) -> str:
        """Voice, rate, pitch and volume."""
        cfg = self.cfg
        fields = {"voice": cfg.voice, "rate": cfg.rate, "pitch": cfg.pitch, "volume": cfg.volume}
        return json.dumps(fields, sort_keys=True)

    async def stream(self, text: str) -> AsyncIterator[TtsChunk]:
        """Decoded audio as it arrives, with the words it says."""
        cfg = self.cfg
        try:
            communicate = edge_tts.Communicate(
                text,
                cfg.voice,
                rate=cfg.rate,
                pitch=cfg.pitch,
                volume=cfg.volume,
                boundary="WordBoundary",
                connect_timeout=max(1, round(self.timeout_s)),
                receive_timeout=max(1, round(self.timeout_s)),
            )
        except (TypeError, ValueError) as exc:
            raise TtsError(f"edge: {exc}") from exc
        mp3 = Mp3Stream()
        words: list[Phoneme] = []
        audio_bytes = 0
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        messages = communicate.stream()
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await anext(messages)
                except StopAsyncIteration:
                    break
                if message["type"] == "WordBoundary":
                    offset, duration = message["offset"], message["duration"]
                    start, end = offset / TICKS_PER_SECOND, (offset + duration) / TICKS_PER_SECOND
                    words.append(Phoneme(start, end, message["text"]))
                elif message["type"] == "audio":
                    audio_bytes += len(message["data"])
                    for pcm in mp3.push(message["data"]):
                        yield TtsChunk(pcm, mp3.rate, words=tuple(words))
                        words.clear()
        except TimeoutError as exc:
            raise TtsError(f"edge: no complete answer within {self.timeout_s:g} s") from exc
        except EdgeTTSException as exc:
            raise TtsError(f"edge: {type(exc).__name__}: {exc}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise TtsError(f"edge: {type(exc).__name__}: {exc}") from exc
        finally:
            await messages.aclose()
        _check_complete(communicate, audio_bytes)
        tail = mp3.flush()
        for i, pcm in enumerate(tail):
            yield TtsChunk(pcm, mp3.rate, words=tuple(words) if i == 0 else ())
            words.clear()
        if words:
            yield TtsChunk(np.zeros(0, np.int16), mp3.rate or 24000, words=tuple(words))


def _check_complete(communicate: edge_tts.Communicate, audio_bytes: int) -> None:
    """Raise if the service hung up before it said the turn ended.

    edge-tts ends its stream quietly when the socket closes mid-answer; it only counts a part's audio
    into ``cumulative_audio_bytes`` when that part's ``turn.end`` arrives, so a shortfall means the
    answer was cut.
    """
    counted = communicate.state.get("cumulative_audio_bytes")
    if isinstance(counted, int) and counted != audio_bytes:
        raise TtsError(
            f"edge: the connection closed mid-answer ({audio_bytes - counted} bytes of audio unconfirmed)"
        )


def create(cfg: Config) -> EdgeTts:
    """The engine configured by ``[voice.edge]``."""
    return EdgeTts(cfg.voice.edge, cfg.voice.timeout_s)

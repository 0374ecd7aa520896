"""The ``funasr_server`` engine: a client of the FunASR runtime's WebSocket server.

One WebSocket per turn, opened when the turn starts (audio fed before it is up waits in the turn's
bounded queue). The runtime's protocol: a JSON text message first (mode, chunk sizes, ``wav_format``
"pcm", ``audio_fs``, ``is_speaking`` true, hot words as a JSON string, ``itn``), then binary 16-bit PCM
in frames of ``60 * chunk_size[1] / chunk_interval`` ms (what the runtime's own client sends, and what
its VAD expects), then ``{"is_speaking": false, "is_end": true}`` (``is_end`` asks the newer Python
server for its end acknowledgement; the others ignore it). The subprotocol offered is "binary", as the
runtime's client does.

Results are JSON: ``text``, ``mode`` ("online"/"2pass-online" pieces, "offline"/"2pass-offline" text
of a whole segment), ``is_final``, ``wav_name``. The pieces of a segment accumulate as partials; a
segment's offline text replaces them; the turn's text is the segments' texts in order. When the turn
is final depends on the server, because ``is_final`` does not mean the same in each:

- the C++ 2pass server sends ``is_final`` false until the end, then one ``is_final`` true message;
- the Python server sends ``is_final`` = "still speaking" (true for partials, false after the end), and
  in online mode nothing at all after the end (older versions); newer ones answer ``is_end``;
- the offline servers send one "offline" result, with ``is_final`` false.

So which of the two meanings a server uses is learnt from its first result during speech (false: C++,
true: Python), and after the end the turn is final on: an ``is_end`` message; ``is_final`` true from a
server not of the Python kind; an offline result from a Python-kind server, or in offline mode; or, when
the kind is not known yet (no result during speech), an offline result followed by ``SETTLE_S`` of
quiet. A Python-kind server in online mode is final after ``SETTLE_S`` of quiet. Failing all that, the
server closing after the end or ``final_timeout_s`` passing ends the turn with what was heard, or
``AsrError`` if nothing was; a server that closes during the turn fails it (the rest of the audio went
unheard). Malformed messages are logged and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from broadcaster.listen.asr.base import (
    AsrEngine,
    AsrError,
    AsrStream,
    PartialCallback,
    Transcript,
    TurnLimit,
    as_pcm,
)

if TYPE_CHECKING:
    from broadcaster.listen.settings import AsrConfig, FunasrServerConfig

log = logging.getLogger(__name__)

SETTLE_S: Final = 0.5  # quiet after a result that may be the last, before it is taken as final
BACKSTOP_S: Final = 1.0  # finish() waits connect + final timeouts and this, whatever the socket does
_END = {"is_speaking": False, "is_end": True}


class FunasrServerAsr(AsrEngine):
    """A FunASR runtime (``funasr-wss-server-2pass``, ``funasr-wss-server``, ``funasr_wss_server.py``)."""

    name = "funasr_server"

    def __init__(self, cfg: FunasrServerConfig) -> None:
        self.cfg = cfg
        self._turns = itertools.count(1)
        self._streams: set[FunasrServerStream] = set()

    async def open(self) -> None:
        """Nothing to load: the server is reached at each turn (and may come and go)."""

    def stream(self, on_partial: PartialCallback | None = None) -> FunasrServerStream:
        """A turn: connects now, so the first audio is not lost."""
        stream = FunasrServerStream(self.cfg, f"turn{next(self._turns)}", on_partial, self._streams.discard)
        self._streams.add(stream)
        return stream

    async def close(self) -> None:
        """Cancel the turns still open (closing their sockets)."""
        for stream in list(self._streams):
            await stream.cancel()


def config_message(cfg: FunasrServerConfig, wav_name: str) -> dict[str, Any]:
    """The first message of a turn, as the runtime's client sends it."""
    return {
        "mode": cfg.mode,
        "chunk_size": list(cfg.chunk_size),
        "chunk_interval": cfg.chunk_interval,
        "encoder_chunk_look_back": cfg.encoder_chunk_look_back,
        "decoder_chunk_look_back": cfg.decoder_chunk_look_back,
        "audio_fs": FunasrServerAsr.sample_rate,
        "wav_name": wav_name,
        "wav_format": "pcm",
        "is_speaking": True,
        "hotwords": json.dumps(cfg.hotwords, ensure_ascii=False) if cfg.hotwords else "",
        "itn": cfg.itn,
    }


def frame_samples(cfg: FunasrServerConfig) -> int:
    """Samples per binary frame: ``60 * chunk_size[1] / chunk_interval`` ms (60 ms by default)."""
    ms = 60 * cfg.chunk_size[1] / cfg.chunk_interval
    return max(1, round(FunasrServerAsr.sample_rate * ms / 1000))


def _ssl_context(cfg: FunasrServerConfig) -> ssl.SSLContext | None:
    if not cfg.url.startswith("wss://"):
        return None
    context = ssl.create_default_context()
    if not cfg.verify_tls:  # the runtime ships a self-signed certificate
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Results:
    """The turn's text from the server's results, and whether a result makes it final."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.segments = ""  # offline texts of the finished segments
        self.pieces = ""  # online pieces of the segment going on
        self.heard = False  # a result came (even an empty one)
        self.flag_is_speaking: bool | None = None  # the meaning of is_final, once learnt

    @property
    def text(self) -> str:
        """The turn's text so far."""
        return (self.segments + self.pieces).strip()

    def take(self, message: dict[str, Any], ended: bool) -> str:
        """Apply one result; returns "final", "settle" (final unless more comes soon) or ""."""
        text = message.get("text", "")
        mode = message.get("mode", "")
        if not isinstance(text, str) or not isinstance(mode, str):
            raise ValueError("text and mode must be strings")
        is_final = message.get("is_final") is True
        self.heard = True
        if not ended and self.flag_is_speaking is None and "is_final" in message:
            self.flag_is_speaking = is_final
        offline = mode.endswith("offline")
        if offline:
            self.segments += text
            self.pieces = ""
        else:
            self.pieces += text
        return self._verdict(message, offline, is_final) if ended else ""

    def _verdict(self, message: dict[str, Any], offline: bool, is_final: bool) -> str:
        """After the end of speech: whether this result ends the turn."""
        if message.get("is_end") is True or (is_final and self.flag_is_speaking is not True):
            return "final"
        if offline and (self.flag_is_speaking is True or self.mode == "offline"):
            return "final"
        if (offline and self.flag_is_speaking is None) or self.settles_at_end():
            return "settle"
        return ""

    def settles_at_end(self) -> bool:
        """Whether nothing conclusive will come after the end (a Python server in online mode)."""
        return self.mode == "online" and self.flag_is_speaking is True


class FunasrServerStream(AsrStream):
    """One turn on its own WebSocket: a sender of frames and a reader of results, in one task."""

    def __init__(
        self,
        cfg: FunasrServerConfig,
        wav_name: str,
        on_partial: PartialCallback | None,
        on_done: Callable[[FunasrServerStream], None],
    ) -> None:
        self.cfg = cfg
        self.wav_name = wav_name
        self._on_partial = on_partial
        self._on_done = on_done
        self._loop = asyncio.get_running_loop()
        self._limit = TurnLimit(FunasrServerAsr.name)
        self._frame_bytes = 2 * frame_samples(cfg)
        self._pending = bytearray()  # audio not yet a whole frame
        self._frames: asyncio.Queue[bytes | None] = asyncio.Queue()  # None: the end of speech
        self._results = _Results(cfg.mode)
        self._result: asyncio.Future[Transcript] = self._loop.create_future()
        self._deadline: asyncio.Timeout | None = None
        self._end_by: float | None = None  # loop time the final must come by
        self._last_partial = ""
        self._skipped = 0
        self._state = "open"  # open -> finishing -> done | cancelled
        self.bytes_sent = 0
        self._task = self._loop.create_task(self._run(), name=f"asr-funasr-{wav_name}")

    def feed(self, pcm: np.ndarray) -> None:
        """Queue audio in whole frames; dropped once the turn is over, full or its socket gone."""
        if self._state != "open" or self._task.done():
            return
        pcm = self._limit.take(as_pcm(pcm))
        self._pending += pcm.tobytes()
        while len(self._pending) >= self._frame_bytes:
            self._frames.put_nowait(bytes(self._pending[: self._frame_bytes]))
            del self._pending[: self._frame_bytes]

    async def finish(self) -> Transcript:
        """Send the rest and the end of speech; the final text once the server has given it."""
        if self._state != "open":
            raise AsrError(f"funasr_server: the turn is already {self._state}")
        self._state = "finishing"
        if self._pending:
            self._frames.put_nowait(bytes(self._pending))
            self._pending.clear()
        self._frames.put_nowait(None)
        try:
            # a backstop: the final's own timeout runs from the end of speech reaching the server
            async with asyncio.timeout(self.cfg.connect_timeout_s + self.cfg.final_timeout_s + BACKSTOP_S):
                return await asyncio.shield(self._result)
        except TimeoutError:
            if not self._result.done():
                self._conclude("timeout")
            return self._result.result()
        finally:
            if self._state == "finishing":
                self._state = "done"
            # with the result in, the task is only closing the socket (bounded by close_timeout)
            await self._stop(cancel=not self._result.done())

    async def cancel(self) -> None:
        """Close the socket and drop the turn."""
        if self._state in {"done", "cancelled"}:
            return
        self._state = "cancelled"
        await self._stop(cancel=True)
        if self._result.done() and not self._result.cancelled():
            self._result.exception()  # retrieved: a failure nobody will ask about is not logged as lost

    async def _stop(self, cancel: bool) -> None:
        if cancel and not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._task)
        self._on_done(self)

    @property
    def closed(self) -> bool:
        """Whether the turn's task (and its socket) has ended."""
        return self._task.done()

    async def _run(self) -> None:
        try:
            async with await self._connect() as ws:
                await ws.send(json.dumps(config_message(self.cfg, self.wav_name), ensure_ascii=False))
                sender = asyncio.create_task(self._send(ws), name=f"asr-funasr-send-{self.wav_name}")
                try:
                    self._conclude(await self._receive(ws))
                finally:
                    sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                        await sender
        except AsrError as exc:
            self._fail(exc)
        except (OSError, ConnectionClosed) as exc:
            self._fail(AsrError(f"funasr_server: the connection to {self.cfg.url} failed: {exc}"))
        except asyncio.CancelledError:
            if not self._result.done():
                self._result.cancel()
            raise
        finally:
            if not self._result.done():
                self._fail(AsrError(f"funasr_server: no result from {self.cfg.url}"))

    async def _connect(self) -> ClientConnection:
        url = self.cfg.url
        try:
            return await connect(
                url,
                subprotocols=["binary"],  # type: ignore[list-item]
                ssl=_ssl_context(self.cfg),
                open_timeout=self.cfg.connect_timeout_s,
                ping_interval=None,  # the Python runtime blocks its loop while decoding
                close_timeout=1.0,
                compression=None,  # PCM does not deflate
                max_queue=256,
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            why = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            if isinstance(exc, ssl.SSLCertVerificationError):
                why += "; a self-signed certificate needs voice_in.asr.funasr_server.verify_tls = false"
            raise AsrError(
                f"funasr_server: cannot connect to {url} ({why}): is the FunASR runtime running at "
                f"{url}? (voice_in.asr.funasr_server.url)"
            ) from exc

    async def _send(self, ws: ClientConnection) -> None:
        while (frame := await self._frames.get()) is not None:
            await ws.send(frame)
            self.bytes_sent += len(frame)
        await ws.send(json.dumps(_END))
        self._end_by = self._loop.time() + self.cfg.final_timeout_s
        self._rearm(SETTLE_S if self._results.settles_at_end() else None)

    def _rearm(self, settle_s: float | None) -> None:
        """Move the receive deadline: the final's timeout, or sooner while settling."""
        if self._deadline is None or self._end_by is None:
            return
        when = self._end_by
        if settle_s is not None:
            when = min(when, self._loop.time() + settle_s)
        self._deadline.reschedule(when)

    async def _receive(self, ws: ClientConnection) -> str:
        """Read results until the turn is final; returns why it ended ("final", "closed", "timeout")."""
        try:
            async with asyncio.timeout(None) as self._deadline:
                self._rearm(None)
                async for raw in ws:
                    verdict = self._take(raw)
                    if verdict == "final":
                        return "final"
                    self._rearm(SETTLE_S if verdict == "settle" else None)
        except TimeoutError:
            return "timeout"
        except ConnectionClosed as exc:
            log.info("asr funasr_server: %s closed the connection: %s", self.cfg.url, exc)
        finally:
            self._deadline = None
        return "closed"

    def _take(self, raw: str | bytes) -> str:
        try:
            if isinstance(raw, bytes):
                raise ValueError("a binary message")
            message = json.loads(raw)
            if not isinstance(message, dict):
                raise ValueError("not a JSON object")
            verdict = self._results.take(message, ended=self._end_by is not None)
        except ValueError as exc:
            self._skipped += 1
            level = logging.WARNING if self._skipped == 1 else logging.DEBUG
            log.log(level, "asr funasr_server: skipped a malformed result (%s): %.200r", exc, raw)
            return ""
        if message.get("is_end") is True and message.get("is_final") is False and message.get("error"):
            log.warning("asr funasr_server: the server failed the turn: %s", message.get("error"))
        if verdict != "final":
            self._partial(self._results.text)
        return verdict

    def _partial(self, text: str) -> None:
        if not text or text == self._last_partial or self._on_partial is None or self._state == "cancelled":
            return
        self._last_partial = text
        try:
            self._on_partial(Transcript(text, False, FunasrServerAsr.name))
        except Exception:
            log.exception("asr funasr_server: the partial-text callback failed")

    def _conclude(self, why: str) -> None:
        results = self._results
        if why == "closed" and self._end_by is None:  # the turn's audio was not all heard: not a result
            self._fail(AsrError(f"funasr_server: {self.cfg.url} closed the connection during the turn"))
        elif why == "final" or results.heard:
            if why != "final":
                log.info("asr funasr_server: turn %s ended by %s with what was heard", self.wav_name, why)
            self._result.set_result(Transcript(results.text, True, FunasrServerAsr.name))
        elif why == "timeout":
            limit = self.cfg.final_timeout_s
            self._fail(AsrError(f"funasr_server: no result from {self.cfg.url} within {limit:g} s"))
        else:
            self._fail(AsrError(f"funasr_server: {self.cfg.url} closed the connection without a result"))

    def _fail(self, exc: AsrError) -> None:
        if not self._result.done():
            log.debug("asr funasr_server: turn %s failed: %s", self.wav_name, exc)
            self._result.set_exception(exc)


def create(cfg: AsrConfig) -> AsrEngine:
    """The engine configured from ``voice_in.asr.funasr_server``."""
    return FunasrServerAsr(cfg.funasr_server)

"""espeak-ng through its C library (the copy ``espeakng-loader`` ships): offline, tiny, with timings.

The library keeps its state in process globals and is not thread-safe, so one ``EspeakLibrary`` per
process owns it and speaks one text at a time under a lock; engines share it and set their voice and
parameters before each text. A text is synthesised in an executor thread in synchronous mode: espeak
calls back every ``buffer_ms`` of audio, each call becomes a ``TtsChunk`` handed to the event loop with
``call_soon_threadsafe``, and the callback's answer aborts synthesis once the consumer has gone. Phoneme
events give espeak's own mnemonics (Kirshenbaum-like: ``a``, ``@``, ``tS``, ``ts.h``, ``_:`` for a
pause), cleaned for the lip-sync table; word events give the words of the text, for subtitles.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from broadcaster.voice.speech_track import Phoneme
from broadcaster.voice.tts.base import TtsChunk, TtsEngine, TtsError, from_worker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

log = logging.getLogger(__name__)

# speak_lib.h (API revision 12).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_PHONEME = 0, 1, 7
_PARAM_RATE, _PARAM_PITCH = 1, 3
_EE_OK, _EE_NOT_FOUND = 0, 2
_ABORT, _CONTINUE = 1, 0
_LOCK_POLL_S = 0.02
_SHORTEST_S = 0.001  # events share a millisecond clock; shorter ones are rounding


class _EventId(ctypes.Union):
    _fields_ = (("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8))


class _Event(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based, in characters of the text
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of the text's audio
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    )


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


def lip_symbol(mnemonic: str) -> str:
    """An espeak phoneme mnemonic as the lip-sync table reads it; "" for marks that are not sounds.

    Stress marks go; a language switch such as ``(en)`` is not a sound. espeak's ``y`` (and ``Y``) is
    the rounded front vowel (Mandarin ü, German ü), not the English glide the table's ``y`` stands for,
    so it is spelled with the rounded ``u``.
    """
    symbol = mnemonic.lstrip("',")
    if symbol.startswith("(") or not symbol.strip(";"):
        return ""
    if symbol[0] in "yY":
        symbol = "u" + symbol[1:]
    return symbol


def _is_pause(symbol: str) -> bool:
    return symbol.startswith("_")


def _trim(word: str) -> str:
    """A word without the spaces and punctuation around it."""
    keep = [unicodedata.category(ch)[0] not in "PZC" for ch in word]
    if True not in keep:
        return ""
    first, last = keep.index(True), len(keep) - keep[::-1].index(True)
    return word[first:last]


@dataclass(eq=False)
class _Job:
    """One text being spoken: turns espeak's callbacks into chunks and hands them to the event loop.

    A chunk is held until the next callback so the timings that end in it can travel with it; the last
    one leaves when synthesis ends. ``cancelled`` makes the next callback abort synthesis.
    """

    text: str
    rate: int
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[TtsChunk | TtsError | None]
    cancelled: threading.Event = field(default_factory=threading.Event)
    samples: int = field(default=0, init=False)
    _held: np.ndarray | None = field(default=None, init=False)
    _phonemes: list[Phoneme] = field(default_factory=list, init=False)
    _words: list[Phoneme] = field(default_factory=list, init=False)
    _phoneme: tuple[float, str] | None = field(default=None, init=False)  # the open one: start, symbol
    _word: tuple[float, int, int] | None = field(default=None, init=False)  # start, text index, length
    _word_end: float | None = field(default=None, init=False)

    def on_audio(self, wav: Any, count: int, events: Any) -> int:
        """The synthesis callback: audio and the events in it; returns 1 to abort synthesis."""
        if self.cancelled.is_set():
            return _ABORT
        try:
            i = 0
            while events[i].type != _EVENT_LIST_TERMINATED:
                self._on_event(events[i])
                i += 1
            if wav and count > 0:
                self._flush()
                self._held = np.ctypeslib.as_array(wav, shape=(count,)).copy()
                self.samples += count
        except Exception as exc:  # an exception must not unwind through C
            log.exception("espeak callback failed")
            self._send(TtsError(f"espeak-ng: {exc}"))
            self.cancelled.set()
            return _ABORT
        return _ABORT if self.cancelled.is_set() else _CONTINUE

    def _on_event(self, event: _Event) -> None:
        at = event.audio_position / 1000.0
        if event.type == _EVENT_PHONEME:
            symbol = lip_symbol(event.id.string.decode("utf-8", "replace"))
            if not symbol:
                return
            self._end_phoneme(at)
            self._phoneme = (at, symbol)
            if _is_pause(symbol) and self._word is not None and self._word_end is None and at > self._word[0]:
                self._word_end = at
        elif event.type == _EVENT_WORD:
            self._end_word(at, event.text_position - 1)
            self._word = (at, event.text_position - 1, event.length)

    def _end_phoneme(self, at: float) -> None:
        if self._phoneme is not None:
            start, symbol = self._phoneme
            if self._phonemes:
                start = max(start, self._phonemes[-1].end_s)
            if at - start >= _SHORTEST_S:
                self._phonemes.append(Phoneme(start, at, symbol))
        self._phoneme = None

    def _end_word(self, at: float, next_index: int) -> None:
        """Close the open word at ``at`` (or the pause after it); its text runs to the next word."""
        if self._word is not None:
            start, index, length = self._word
            end = self._word_end if self._word_end is not None else at
            word = _trim(self.text[index:next_index]) or _trim(self.text[index : index + max(length, 1)])
            if word and end > start:
                self._words.append(Phoneme(start, end, word))
        self._word, self._word_end = None, None

    def _flush(self) -> None:
        if self._held is not None:
            chunk = TtsChunk(self._held, self.rate, tuple(self._phonemes), tuple(self._words))
            self._phonemes, self._words, self._held = [], [], None
            self._send(chunk)

    def finish(self, error: TtsError | None) -> None:
        """After synthesis: the held chunk with the last timings, then the error or the end marker."""
        if not self.cancelled.is_set():
            end = self.samples / self.rate
            self._end_phoneme(end)
            self._end_word(end, len(self.text))
            self._flush()
        if error is not None:
            self._send(error)
        self._send(None)

    def _send(self, item: TtsChunk | TtsError | None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop has closed: nobody listens any more
            self.cancelled.set()


class EspeakLibrary:
    """The process's espeak-ng, initialised once and used by one text at a time.

    ``shared()`` is the instance engines use: the C library's state is process-wide, so its owner is,
    and a second owner of the same library file is refused.
    """

    _shared: ClassVar[EspeakLibrary | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()
    _owned: ClassVar[set[Path]] = set()

    def __init__(self, library_path: str | Path, data_path: str | Path, buffer_ms: int = 100) -> None:
        if Path(library_path).resolve() in self._owned:
            raise TtsError(f"{library_path} is already initialised: use EspeakLibrary.shared()")
        try:
            self._lib = ctypes.CDLL(str(library_path))
        except OSError as exc:
            raise TtsError(f"espeak-ng library could not be loaded from {library_path}: {exc}") from exc
        lib = self._lib
        lib.espeak_Initialize.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = (_SynthCallback,)
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = (ctypes.c_char_p,)
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int)
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = (
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_void_p,
        )
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Info.argtypes = (ctypes.c_void_p,)
        lib.espeak_Info.restype = ctypes.c_char_p
        if not Path(data_path, "phontab").is_file():
            raise TtsError(f"espeak-ng data not found in {data_path}")
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, buffer_ms, str(data_path).encode(), options)
        if rate <= 0:
            raise TtsError(f"espeak-ng failed to initialise with data from {data_path}")
        self.sample_rate: int = rate
        self.version: str = (lib.espeak_Info(None) or b"?").decode()
        self._lock = threading.Lock()
        self._job: _Job | None = None
        self._voice: str | None = None
        self._callback = _SynthCallback(self._on_audio)  # kept alive as long as the library
        lib.espeak_SetSynthCallback(self._callback)
        self._owned.add(Path(library_path).resolve())

    @classmethod
    def shared(cls) -> EspeakLibrary:
        """The process's instance, loaded from ``espeakng-loader`` on first use."""
        with cls._shared_lock:
            if cls._shared is None:
                try:
                    import espeakng_loader  # noqa: PLC0415 (only when espeak is chosen)
                except ImportError as exc:
                    raise TtsError("the espeak backend needs the espeakng-loader package") from exc
                cls._shared = cls(espeakng_loader.get_library_path(), espeakng_loader.get_data_path())
            return cls._shared

    def check_voice(self, voice: str) -> None:
        """Raise ``TtsError`` unless espeak-ng knows ``voice``."""
        with self._lock:
            self._select(voice)

    def _select(self, voice: str) -> None:
        if voice != self._voice:
            self._voice = None
            result = self._lib.espeak_SetVoiceByName(voice.encode())
            if result != _EE_OK:
                reason = "no such voice" if result == _EE_NOT_FOUND else f"error {result}"
                raise TtsError(f"espeak-ng voice {voice!r}: {reason} (try cmn, en, en-us, yue, ja)")
            self._voice = voice

    def speak(self, job: _Job, voice: str, rate_wpm: int, pitch: int) -> None:
        """Synthesise ``job``'s text, blocking; run it off the event loop. Always ends the job."""
        error: TtsError | None = None
        try:
            while not self._lock.acquire(timeout=_LOCK_POLL_S):
                if job.cancelled.is_set():
                    return
            try:
                self._select(voice)
                self._lib.espeak_SetParameter(_PARAM_RATE, rate_wpm, 0)
                self._lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
                data = job.text.replace("\0", " ").encode()
                self._job = job
                result = self._lib.espeak_Synth(
                    data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
                )
                if result != _EE_OK and not job.cancelled.is_set():
                    raise TtsError(f"espeak-ng synthesis failed (error {result})")
            finally:
                self._job = None
                self._lock.release()
        except TtsError as exc:
            error = exc
        except Exception as exc:
            error = TtsError(f"espeak-ng: {exc}")
        finally:
            job.finish(error)

    def _on_audio(self, wav: Any, count: int, events: Any) -> int:
        job = self._job
        return _ABORT if job is None else job.on_audio(wav, count, events)


class EspeakEngine(TtsEngine):
    """espeak-ng speaking with one voice, rate and pitch."""

    name = "local"

    def __init__(
        self, voice: str = "cmn", rate_wpm: int = 175, pitch: int = 50, library: EspeakLibrary | None = None
    ) -> None:
        self._library = library or EspeakLibrary.shared()
        self._library.check_voice(voice)
        self.voice, self.rate_wpm, self.pitch = voice, rate_wpm, pitch

    @property
    def settings_key(self) -> str:
        """Library version, voice, rate and pitch."""
        return f"local/espeak-ng {self._library.version}/{self.voice}/rate={self.rate_wpm}/pitch={self.pitch}"

    @property
    def sample_rate(self) -> int:
        """The rate of every chunk (espeak-ng's own, 22 050 Hz)."""
        return self._library.sample_rate

    async def stream(self, text: str) -> AsyncIterator[TtsChunk]:
        """Chunks of about 100 ms, int16 mono, as espeak produces them."""
        if not text.strip():
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[TtsChunk | TtsError | None] = asyncio.Queue()
        job = _Job(text, self._library.sample_rate, loop, queue)
        worker = loop.run_in_executor(None, self._library.speak, job, self.voice, self.rate_wpm, self.pitch)
        async with contextlib.aclosing(from_worker(queue, worker, job.cancelled.set)) as chunks:
            async for chunk in chunks:
                yield chunk

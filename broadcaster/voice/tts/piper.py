"""A piper voice (an ``.onnx`` model with its ``.onnx.json`` beside it), run with onnxruntime.

The model loads once, when the engine is made. A text is phonemised whole, then each sentence is run
through the model in an executor thread and handed to the event loop as one chunk, so the first sentence
plays while the rest is synthesised. The model is run here rather than through ``PiperVoice.synthesize``
so that a cancelled text also stops the sentence in flight (onnxruntime's ``RunOptions.terminate``).
A model patched with ``python -m piper.patch_voice_with_alignment`` also reports how many samples each
phoneme lasts; those become phoneme timings (IPA symbols). Piper has no pitch control.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from broadcaster.voice.speech_track import Phoneme
from broadcaster.voice.tts.base import TtsChunk, TtsEngine, TtsError, from_worker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

log = logging.getLogger(__name__)

_NORMAL_WPM = 175
_BOS, _EOS, _PAD = "^", "$", "_"
_MODIFIERS = frozenset("ˈˌːˑ \u0303\u0329\u032a\u0361")  # stress, length, diacritics, word gaps
# espeak IPA that the lip-sync table does not list, spelled as the nearest sound it does.
_LIP_EQUIVALENT = {"ɐ": "a", "ɾ": "d", "ɒ": "ɔ", "ᵻ": "ɪ", "ɫ": "l", "ɘ": "ə", "ɵ": "o", "ʔ": "t", "χ": "x"}


@dataclass(eq=False)
class _Job:
    """One text being spoken; ``cancel`` stops it between sentences and inside the model run."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[TtsChunk | TtsError | None]
    run_options: Any
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.cancelled.set()
        self.run_options.terminate = True

    def send(self, item: TtsChunk | TtsError | None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop has closed
            self.cancel()


class PiperEngine(TtsEngine):
    """One piper voice model, speaker and speaking rate."""

    name = "local"

    def __init__(self, model: str | Path, speaker: int = 0, rate_wpm: int = _NORMAL_WPM) -> None:
        model = Path(model)
        config = Path(f"{model}.json")
        if not model.is_file():
            raise TtsError(f"piper model {model} not found (voice.local.piper_model: a voice .onnx file)")
        if not config.is_file():
            raise TtsError(f"piper model {model} has no {config.name} beside it")
        try:
            import onnxruntime  # noqa: PLC0415 (only when piper is chosen)
            from piper import PiperVoice  # noqa: PLC0415
        except ImportError as exc:
            raise TtsError("the piper backend needs the piper-tts package") from exc
        try:
            self._voice = PiperVoice.load(model, config_path=config)
        except Exception as exc:
            raise TtsError(f"piper model {model} could not be loaded: {exc}") from exc
        cfg = self._voice.config
        if speaker > 0 and speaker >= cfg.num_speakers:
            raise TtsError(
                f"piper model {model.name} has {cfg.num_speakers} speaker(s); no speaker {speaker}"
            )
        self._new_run_options = onnxruntime.RunOptions
        self._model, self.speaker, self.rate_wpm = model, speaker, rate_wpm
        self._stat = model.stat()
        self.sample_rate: int = cfg.sample_rate
        self._aligned = len(self._voice.session.get_outputs()) > 1

    @property
    def settings_key(self) -> str:
        """Model file (name, size, mtime), speaker and rate."""
        stat = self._stat
        return (
            f"local/piper/{self._model.name}/{stat.st_size}-{stat.st_mtime_ns}"
            f"/speaker={self.speaker}/rate={self.rate_wpm}"
        )

    async def stream(self, text: str) -> AsyncIterator[TtsChunk]:
        """One float32 mono chunk per sentence, with phoneme timings when the model gives alignments."""
        if not text.strip():
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[TtsChunk | TtsError | None] = asyncio.Queue()
        job = _Job(loop, queue, self._new_run_options())
        worker = loop.run_in_executor(None, self._speak, text, job)
        async with contextlib.aclosing(from_worker(queue, worker, job.cancel)) as chunks:
            async for chunk in chunks:
                yield chunk

    def _speak(self, text: str, job: _Job) -> None:
        """Synthesise ``text`` sentence by sentence, blocking; always ends the job."""
        try:
            offset = 0
            for phonemes in self._voice.phonemize(text):
                if job.cancelled.is_set():
                    break
                if not phonemes:
                    continue
                ids = self._voice.phonemes_to_ids(phonemes)
                audio, id_samples = self._infer(ids, job.run_options)
                timings = self._timings(phonemes, ids, id_samples, offset) if id_samples is not None else ()
                peak = float(np.max(np.abs(audio))) if audio.size else 0.0
                audio = (audio / peak if peak > 1e-8 else np.zeros_like(audio)).astype(np.float32)
                offset += len(audio)
                if not job.cancelled.is_set():
                    job.send(TtsChunk(audio, self.sample_rate, timings))
        except Exception as exc:
            if not job.cancelled.is_set():
                log.warning("piper failed on %r: %s", text[:40], exc)
                job.send(TtsError(f"piper: {exc}"))
        finally:
            job.send(None)

    def _infer(self, ids: list[int], run_options: Any) -> tuple[np.ndarray, np.ndarray | None]:
        cfg = self._voice.config
        inputs = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array(
                [cfg.noise_scale, cfg.length_scale * _NORMAL_WPM / self.rate_wpm, cfg.noise_w_scale],
                dtype=np.float32,
            ),
        }
        if cfg.num_speakers > 1:
            inputs["sid"] = np.array([self.speaker], dtype=np.int64)
        result = self._voice.session.run(None, inputs, run_options)
        audio = np.asarray(result[0], dtype=np.float32).reshape(-1)
        if not self._aligned or len(result) < 2:
            return audio, None
        return audio, (np.asarray(result[1]).reshape(-1) * cfg.hop_length).astype(np.int64)

    def _timings(
        self, phonemes: Sequence[str], ids: Sequence[int], id_samples: np.ndarray, offset: int
    ) -> tuple[Phoneme, ...]:
        """Phoneme timings from samples per id (each phoneme's ids and the pad after it, as piper pairs them).

        Stress, length and diacritic marks and the gaps between words lengthen the sound before them;
        punctuation is a pause (``_``). Returns () when the ids do not line up.
        """
        id_map = self._voice.config.phoneme_id_map
        pad = list(id_map.get(_PAD, []))
        if len(id_samples) != len(ids):
            return ()
        rate = float(self.sample_rate)
        out: list[Phoneme] = []
        index, at = 0, offset
        for phoneme in (_BOS, *phonemes, _EOS):
            expected = list(id_map.get(phoneme, [])) + (pad if phoneme != _EOS else [])
            if list(ids[index : index + len(expected)]) != expected:
                return ()
            samples = int(id_samples[index : index + len(expected)].sum())
            index += len(expected)
            start, at = at, at + samples
            if phoneme in (_BOS, _EOS) or samples <= 0:
                continue
            if phoneme in _MODIFIERS or unicodedata.combining(phoneme):
                if out:
                    out[-1] = Phoneme(out[-1].start_s, at / rate, out[-1].symbol)
                continue
            symbol = (
                _PAD if unicodedata.category(phoneme)[0] in "PZ" else _LIP_EQUIVALENT.get(phoneme, phoneme)
            )
            out.append(Phoneme(start / rate, at / rate, symbol))
        return tuple(out)

"""The ``funasr`` engine: FunASR in this process, from a model directory downloaded beforehand.

Nothing is fetched at run time: ``voice_in.asr.funasr.model_dir`` must hold a model (``model.pt`` and
its ``config.yaml`` or ``configuration.json``), and AutoModel gets that local path with its update check
off. The ``funasr`` package (and torch) are optional: imported in ``open``, on the engine's worker
thread, where the model is then loaded and used, one turn at a time (a second turn waits).

Two kinds of model:

- streaming (a Paraformer whose config says ``ParaformerStreaming``, or whose directory name says
  online/streaming): decoded as the turn goes, ``chunk_size[1] * 960`` samples per ``generate`` call with
  the turn's cache, its pieces accumulating as partials; the last chunk is held back so ``finish``
  always has one to decode with ``is_final=True``;
- the others (SenseVoiceSmall, offline Paraformer): the turn's audio is kept (bounded) and decoded once
  at ``finish``, with ``language`` and ITN; SenseVoice's ``<|zh|><|NEUTRAL|>...`` tags are removed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from broadcaster.listen.asr.base import (
    AsrError,
    PartialCallback,
    ThreadedEngine,
    ThreadedStream,
    Worker,
)

if TYPE_CHECKING:
    from broadcaster.listen.asr.base import AsrEngine
    from broadcaster.listen.settings import AsrConfig, FunasrConfig

WEIGHTS: Final = "model.pt"
CONFIGS: Final = ("config.yaml", "configuration.json")
CHUNK_SAMPLES: Final = 960  # one chunk_size unit: 60 ms at 16 kHz
_TAG = re.compile(r"<\|[^|<>]*\|>")
DOWNLOAD_HINT: Final = (
    "download one first, e.g. `modelscope download --model "
    "iic/speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-online --local_dir {dir}` "
    "(streaming Chinese) or `modelscope download --model iic/SenseVoiceSmall --local_dir {dir}`"
)


def check_model_dir(model_dir: Path) -> None:
    """``AsrError`` naming the directory, and how to fill it, unless it holds a model."""
    hint = DOWNLOAD_HINT.format(dir=model_dir)
    if not model_dir.is_dir():
        raise AsrError(
            f"funasr: the model directory {model_dir} does not exist (voice_in.asr.funasr.model_dir): {hint}"
        )
    missing = []
    if not (model_dir / WEIGHTS).is_file():
        missing.append(WEIGHTS)
    if not any((model_dir / name).is_file() for name in CONFIGS):
        missing.append(" or ".join(CONFIGS))
    if missing:
        raise AsrError(
            f"funasr: {model_dir} has no {' and no '.join(missing)}: it is not a FunASR model; {hint}"
        )


def is_streaming(model_dir: Path) -> bool:
    """Whether the model decodes chunk by chunk (a streaming Paraformer)."""
    config = model_dir / "config.yaml"
    if config.is_file() and "ParaformerStreaming" in config.read_text(encoding="utf-8", errors="replace"):
        return True
    name = model_dir.name.lower()
    return "online" in name or "streaming" in name


def clean(text: str) -> str:
    """Recognised text without SenseVoice's language, emotion and event tags."""
    return _TAG.sub("", text).strip()


def text_of(result: Any) -> str:
    """The text of ``generate``'s answer (a list with one ``{"key", "text"}`` per input)."""
    if not isinstance(result, list):
        raise AsrError(f"funasr: generate returned {type(result).__name__}, not a list of results")
    return "".join(str(item.get("text", "")) for item in result if isinstance(item, dict))


class FunasrAsr(ThreadedEngine):
    """FunASR's AutoModel on a local model directory."""

    name = "funasr"

    def __init__(self, cfg: FunasrConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.streaming = False
        self._model: Any = None

    async def open(self) -> None:
        """Check the model directory, import FunASR and load the model (off the event loop)."""
        if self._model is not None:
            return
        check_model_dir(self.cfg.model_dir)
        self.streaming = is_streaming(self.cfg.model_dir)
        self._model = await self._load(self._auto_model)

    def _auto_model(self) -> Any:
        try:
            from funasr import AutoModel  # noqa: PLC0415
        except ImportError as exc:
            raise AsrError(
                "funasr: the funasr package is not installed: pip install torch (the CPU build: "
                "--index-url https://download.pytorch.org/whl/cpu) and then pip install funasr; "
                "or use a FunASR runtime server (voice_in.asr.engine = 'funasr_server')"
            ) from exc
        try:
            return AutoModel(
                model=str(self.cfg.model_dir),
                device=self.cfg.device,
                disable_update=True,
                disable_pbar=True,
                disable_log=True,
            )
        except Exception as exc:
            raise AsrError(f"funasr: cannot load the model in {self.cfg.model_dir}: {exc}") from exc

    def stream(self, on_partial: PartialCallback | None = None) -> ThreadedStream:
        """A turn: streamed through the model, or decoded whole at its end."""
        if self._model is None:
            raise AsrError("funasr: the engine is not open")
        kind = FunasrStreamingStream if self.streaming else FunasrWholeStream
        return self._track(kind(self._model, self.cfg, self._worker(), on_partial, self._untrack))

    def _release(self) -> None:
        self._model = None


class _FunasrStream(ThreadedStream):
    def __init__(
        self,
        model: Any,
        cfg: FunasrConfig,
        worker: Worker,
        on_partial: PartialCallback | None,
        on_done: Callable[[ThreadedStream], None],
    ) -> None:
        self._model = model
        self.cfg = cfg
        super().__init__(FunasrAsr.name, worker, on_partial, on_done)


class FunasrStreamingStream(_FunasrStream):
    """A turn through a streaming Paraformer, a chunk at a time, with the turn's cache."""

    def _begin(self) -> None:
        self._cache: dict[str, Any] = {}
        self._pending = np.zeros(0, np.float32)
        self._text = ""
        self._stride = self.cfg.chunk_size[1] * CHUNK_SAMPLES

    def _process(self, pcm: np.ndarray) -> None:
        self._pending = np.concatenate([self._pending, pcm.astype(np.float32) / 32768.0])
        while len(self._pending) > self._stride:  # the last chunk waits for is_final
            chunk, self._pending = self._pending[: self._stride], self._pending[self._stride :]
            self._text += self._generate(chunk, is_final=False)

    def _hypothesis(self) -> str:
        return clean(self._text)

    def _end(self) -> str:
        if len(self._pending):
            self._text += self._generate(self._pending, is_final=True)
            self._pending = np.zeros(0, np.float32)
        return clean(self._text)

    def _generate(self, chunk: np.ndarray, is_final: bool) -> str:
        return text_of(
            self._model.generate(
                input=chunk,
                cache=self._cache,
                is_final=is_final,
                chunk_size=list(self.cfg.chunk_size),
                encoder_chunk_look_back=self.cfg.encoder_chunk_look_back,
                decoder_chunk_look_back=self.cfg.decoder_chunk_look_back,
            )
        )


class FunasrWholeStream(_FunasrStream):
    """A turn decoded once, at its end (SenseVoice and offline models); no partials."""

    def _begin(self) -> None:
        self._parts: list[np.ndarray] = []

    def _process(self, pcm: np.ndarray) -> None:
        self._parts.append(pcm)

    def _hypothesis(self) -> str:
        return ""

    def _end(self) -> str:
        if not self._parts:
            return ""
        audio = np.concatenate(self._parts).astype(np.float32) / 32768.0
        self._parts = []
        result = self._model.generate(input=audio, cache={}, language=self.cfg.language, use_itn=True)
        return clean(text_of(result))


def create(cfg: AsrConfig) -> AsrEngine:
    """The engine configured from ``voice_in.asr.funasr``."""
    return FunasrAsr(cfg.funasr)

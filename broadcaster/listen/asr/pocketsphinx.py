"""The ``pocketsphinx`` engine: offline English with the model the pocketsphinx wheel ships.

Small and CPU-only, it needs nothing downloaded, so it is the fallback that always works. Its accuracy
is modest (short, clear English sentences); ``[voice_in.asr.pocketsphinx] model_dir`` points it at
another acoustic model, dictionary and language model.

The decoder runs in a child process (``sphinx_process``: it holds the GIL while it decodes), loaded
once, in ``open``, and driven from the engine's worker thread only: turns run
one at a time, and a second turn started while one is open waits for it (its audio is queued) rather
than loading a second decoder. Partials come from ``hyp()`` at most every 100 ms of audio.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from broadcaster.listen.asr.base import (
    AsrError,
    PartialCallback,
    ThreadedEngine,
    ThreadedStream,
    Worker,
)
from broadcaster.listen.asr.sphinx_process import DecoderProcess

if TYPE_CHECKING:
    from broadcaster.listen.asr.base import AsrEngine
    from broadcaster.listen.settings import AsrConfig, PocketsphinxConfig


class PocketsphinxAsr(ThreadedEngine):
    """CMU PocketSphinx, streaming: one decoder, reused turn after turn."""

    name = "pocketsphinx"

    def __init__(self, cfg: PocketsphinxConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self._decoder: DecoderProcess | None = None

    def model_files(self) -> dict[str, Path]:
        """The acoustic model directory, language model and dictionary this engine loads."""
        root = self.cfg.model_dir
        if root is None:
            try:
                import pocketsphinx  # noqa: PLC0415
            except ImportError as exc:
                raise AsrError("pocketsphinx is not installed: pip install pocketsphinx") from exc
            root = Path(pocketsphinx.get_model_path("en-us"))
        return {"hmm": root / self.cfg.hmm, "lm": root / self.cfg.lm, "dict": root / self.cfg.dictionary}

    async def open(self) -> None:
        """Check the model files and load the decoder (about half a second, off the event loop)."""
        if self._decoder is not None:
            return
        files = self.model_files()
        missing = [f"{key} {path}" for key, path in files.items() if not path.exists()]
        if missing:
            raise AsrError(
                "pocketsphinx: model files not found: "
                + ", ".join(missing)
                + " (check voice_in.asr.pocketsphinx.model_dir, hmm, lm and dictionary)"
            )
        self._decoder = await self._load(lambda: _decoder(files))

    def stream(self, on_partial: PartialCallback | None = None) -> PocketsphinxStream:
        """A turn on the shared decoder (waits for the turn before it, if one is still open)."""
        if self._decoder is None:
            raise AsrError("pocketsphinx: the engine is not open")
        return self._track(PocketsphinxStream(self._decoder, self._worker(), on_partial, self._untrack))

    def _release(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
        self._decoder = None

    def _discard(self, loaded: object) -> None:
        if isinstance(loaded, DecoderProcess):
            loaded.close()


def _decoder(files: dict[str, Path]) -> DecoderProcess:
    try:
        import pocketsphinx  # noqa: F401, PLC0415
    except ImportError as exc:
        raise AsrError("pocketsphinx is not installed: pip install pocketsphinx") from exc
    try:
        return DecoderProcess(files)
    except AsrError as exc:
        raise AsrError(f"pocketsphinx: cannot load the model in {files['hmm'].parent}: {exc}") from exc


class PocketsphinxStream(ThreadedStream):
    """One utterance on the decoder: ``start_utt``, ``process_raw`` per batch of audio, ``end_utt``."""

    def __init__(
        self,
        decoder: DecoderProcess,
        worker: Worker,
        on_partial: PartialCallback | None,
        on_done: Callable[[ThreadedStream], None],
    ) -> None:
        self._decoder = decoder
        self._in_utterance = False
        super().__init__(PocketsphinxAsr.name, worker, on_partial, on_done)

    def _begin(self) -> None:
        self._decoder.start_utt()
        self._in_utterance = True

    def _process(self, pcm: np.ndarray) -> None:
        self._decoder.process_raw(pcm.tobytes())

    def _hypothesis(self) -> str:
        return self._decoder.hypothesis()

    def _end(self) -> str:
        self._in_utterance = False
        return self._decoder.end_utt()

    def _abort(self) -> None:
        if self._in_utterance:
            self._in_utterance = False
            self._decoder.end_utt()


def create(cfg: AsrConfig) -> AsrEngine:
    """The engine configured from ``voice_in.asr.pocketsphinx``."""
    return PocketsphinxAsr(cfg.pocketsphinx)

"""The ``local`` engine: offline speech, espeak-ng (bundled, any language) or a piper voice file.

It needs no network and no GPU, so it is the last link of every fallback chain: the program never runs
out of voice. ``[voice.local] backend`` picks the synthesiser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broadcaster.config import Config
    from broadcaster.voice.tts.base import TtsEngine


def create(cfg: Config) -> TtsEngine:
    """The backend ``voice.local.backend`` names, configured; ``TtsError`` on a bad voice or model."""
    local = cfg.voice.local
    if local.backend == "piper":
        from broadcaster.voice.tts.base import TtsError  # noqa: PLC0415
        from broadcaster.voice.tts.piper import PiperEngine  # noqa: PLC0415

        if not local.piper_model:
            raise TtsError("voice.local.piper_model is empty: set it to a piper voice .onnx file")
        return PiperEngine(
            cfg.resolve(local.piper_model), speaker=local.piper_speaker, rate_wpm=local.rate_wpm
        )
    from broadcaster.voice.tts.espeak import EspeakEngine  # noqa: PLC0415

    return EspeakEngine(voice=local.voice, rate_wpm=local.rate_wpm, pitch=local.pitch)

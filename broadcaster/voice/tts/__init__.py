"""TTS engines behind one interface, chosen by name in ``voice.engines`` (a fallback chain).

An engine is a module here with a ``TtsEngine`` subclass and a ``create(cfg)`` function; adding one is
that module, one line in ``ENGINES`` and its config section. Engines import only when chosen.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broadcaster.config import Config
    from broadcaster.voice.tts.base import TtsEngine

ENGINES = {
    "local": "broadcaster.voice.tts.local",
    "edge": "broadcaster.voice.tts.edge",
    "gpt_sovits": "broadcaster.voice.tts.gpt_sovits",
    "cosyvoice": "broadcaster.voice.tts.cosyvoice",
    "openai": "broadcaster.voice.tts.openai_speech",
}


def create_engine(name: str, cfg: Config) -> TtsEngine:
    """The engine ``name`` configured from ``cfg.voice``."""
    module = importlib.import_module(ENGINES[name])
    engine: TtsEngine = module.create(cfg)
    return engine

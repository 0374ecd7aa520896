"""Speech recognisers behind one interface (``base``), chosen by name in ``voice_in.asr.engine``.

An engine is a module here with an ``AsrEngine`` subclass and a ``create(cfg)`` function; adding one is
that module and one line in ``ENGINES``. Engines import only when chosen (FunASR pulls in torch).
``voice_in.asr.fallback`` wraps the chosen engine with a spare that takes the turns it fails.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from broadcaster.listen.asr.base import AsrEngine, AsrError, AsrStream, Transcript

if TYPE_CHECKING:
    from broadcaster.listen.settings import AsrConfig

__all__ = ["ENGINES", "AsrEngine", "AsrError", "AsrStream", "Transcript", "create_asr"]

ENGINES = {
    "pocketsphinx": "broadcaster.listen.asr.pocketsphinx",
    "funasr": "broadcaster.listen.asr.funasr_local",
    "funasr_server": "broadcaster.listen.asr.funasr_server",
}


def create_engine(name: str, cfg: AsrConfig) -> AsrEngine:
    """The engine ``name`` configured from ``cfg`` (not opened)."""
    module = importlib.import_module(ENGINES[name])
    engine: AsrEngine = module.create(cfg)
    return engine


def create_asr(cfg: AsrConfig) -> AsrEngine:
    """``cfg.engine``, with ``cfg.fallback`` as its spare when one is set; open it before use."""
    engine = create_engine(cfg.engine, cfg)
    if not cfg.fallback:
        return engine
    from broadcaster.listen.asr.fallback import FallbackAsr  # noqa: PLC0415

    return FallbackAsr(engine, create_engine(cfg.fallback, cfg))

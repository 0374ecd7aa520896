"""Lip-sync backends: the classic (no weights) path and Wav2Lip, chosen by name in ``face.lipsync``.

A backend is a module here with a ``LipSync`` subclass and a ``create(cfg, timing)`` function; adding
one (MuseTalk, say) is that module, one line in ``BACKENDS`` and its config section.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broadcaster.config import Config
    from broadcaster.face.lipsync.base import LipSync
    from broadcaster.stream.clock import Timing

BACKENDS = {
    "classic": "broadcaster.face.lipsync.classic",
    "wav2lip": "broadcaster.face.lipsync.wav2lip",
}


def create_lipsync(cfg: Config, timing: Timing) -> LipSync:
    """The backend ``cfg.face.lipsync`` names, ready to use (heavy backends import only when chosen)."""
    module = importlib.import_module(BACKENDS[cfg.face.lipsync])
    backend: LipSync = module.create(cfg, timing)
    return backend

"""Synthesised audio kept on disk, keyed by (engine, voice and settings, text).

Scripted lines and moderator phrases repeat all day; each is synthesised once and then plays from the
cache at once, even when the TTS service is down. Entries are single ``.npz`` files (PCM at the
engine's own rate, plus timings) written atomically; the least recently used are removed when the
folder grows past its size limit. A damaged entry is deleted and counts as a miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from broadcaster.voice.pcm import as_frames
from broadcaster.voice.speech_track import Phoneme
from broadcaster.voice.tts.base import TtsChunk

log = logging.getLogger(__name__)


@dataclass
class CacheStats:
    """Hits, misses and writes since start."""

    hits: int = 0
    misses: int = 0
    writes: int = 0
    evictions: int = 0


def _timings(items: tuple[Phoneme, ...] | list[Phoneme]) -> str:
    return json.dumps([[p.start_s, p.end_s, p.symbol] for p in items], ensure_ascii=False)


def _parse_timings(raw: str) -> tuple[Phoneme, ...]:
    return tuple(Phoneme(float(a), float(b), str(s)) for a, b, s in json.loads(raw))


class AudioCache:
    """A bounded folder of synthesised sentences."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._lock = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True)
        entries = sorted((p.stat().st_mtime, p.stem, p.stat().st_size) for p in folder.glob("*/*.npz"))
        self._recent: OrderedDict[str, int] = OrderedDict((key, size) for _, key, size in entries)
        self._size = sum(self._recent.values())

    @staticmethod
    def key(engine: str, settings: str, text: str) -> str:
        """The entry name for one text spoken by one engine with one voice and settings."""
        return hashlib.sha256(f"{engine}\x00{settings}\x00{text}".encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npz"

    def get(self, key: str) -> TtsChunk | None:
        """The whole sentence as one chunk, or None."""
        path = self._path(key)
        try:
            with np.load(path, allow_pickle=False) as entry:
                chunk = TtsChunk(
                    entry["pcm"],
                    int(entry["rate"]),
                    _parse_timings(str(entry["phonemes"])),
                    _parse_timings(str(entry["words"])),
                )
        except FileNotFoundError:
            self.stats.misses += 1
            return None
        except (OSError, ValueError, KeyError) as exc:
            log.warning("TTS cache entry %s is damaged (%s); synthesising again", path.name, exc)
            with contextlib.suppress(OSError):
                path.unlink()
            with self._lock:
                self._size -= self._recent.pop(key, 0)
            self.stats.misses += 1
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        with self._lock:
            if key in self._recent:
                self._recent.move_to_end(key)
        self.stats.hits += 1
        return chunk

    def put(self, key: str, chunks: list[TtsChunk]) -> None:
        """Store a complete sentence (all chunks share one rate); evicts old entries past the limit."""
        if not chunks:
            return
        rate = chunks[0].rate
        if any(c.rate != rate for c in chunks):
            return
        pcm = np.concatenate([as_frames(c.pcm) for c in chunks])
        phonemes = [p for c in chunks for p in c.phonemes]
        words = [w for c in chunks for w in c.words]
        path = self._path(key)
        path.parent.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
            np.savez(tmp, pcm=pcm, rate=np.int64(rate), phonemes=_timings(phonemes), words=_timings(words))
        Path(tmp.name).replace(path)
        size = path.stat().st_size
        with self._lock:
            self.stats.writes += 1
            self._size += size - self._recent.pop(key, 0)
            self._recent[key] = size
            while self._size > self.max_bytes and len(self._recent) > 1:
                old, old_size = self._recent.popitem(last=False)
                with contextlib.suppress(OSError):
                    self._path(old).unlink()
                self._size -= old_size
                self.stats.evictions += 1

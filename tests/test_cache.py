from pathlib import Path

import numpy as np

from broadcaster.voice.cache import AudioCache
from broadcaster.voice.speech_track import Phoneme
from broadcaster.voice.tts.base import TtsChunk


def chunk(n: int, value: int = 5) -> TtsChunk:
    return TtsChunk(np.full(n, value, np.int16), 22050, (Phoneme(0.0, 0.1, "a"),), (Phoneme(0.0, 0.2, "hi"),))


def test_a_sentence_round_trips_and_counts_hits_and_misses(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, 10_000_000)
    key = AudioCache.key("local", "espeak/cmn/175/50", "你好。")
    assert cache.get(key) is None
    cache.put(key, [chunk(1000), chunk(500, 7)])
    got = AudioCache(tmp_path, 10_000_000).get(key)
    assert got is not None and got.rate == 22050
    assert got.pcm.shape == (1500, 1) and (got.pcm[1000:] == 7).all()
    assert got.phonemes == (Phoneme(0.0, 0.1, "a"),) * 2 and got.words[0].symbol == "hi"
    assert cache.stats.misses == 1 and cache.stats.writes == 1
    assert AudioCache.key("local", "espeak/cmn/175/50", "你好！") != key
    assert AudioCache.key("edge", "espeak/cmn/175/50", "你好。") != key


def test_the_least_recently_used_go_first_past_the_limit(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, 50_000)
    keys = [AudioCache.key("local", "v", str(i)) for i in range(8)]
    for i, key in enumerate(keys):
        cache.put(key, [chunk(10_000, i)])
        if i >= 1:
            assert cache.get(keys[0]) is not None, "a used entry is kept"
    assert cache.stats.evictions > 0
    assert cache.get(keys[0]) is not None
    assert cache.get(keys[1]) is None
    assert sum(p.stat().st_size for p in tmp_path.glob("*/*.npz")) <= 50_000


def test_a_damaged_entry_is_a_miss_and_is_removed(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, 1_000_000)
    key = AudioCache.key("local", "v", "x")
    cache.put(key, [chunk(100)])
    path = next(tmp_path.glob("*/*.npz"))
    path.write_bytes(b"not a zip")
    assert cache.get(key) is None
    assert not path.exists()

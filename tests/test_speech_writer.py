import itertools

import numpy as np

from broadcaster.voice.pcm import resample
from broadcaster.voice.speech_track import Phoneme, SpeechTrack
from broadcaster.voice.speech_writer import SpeechWriter


def voice_like(n: int, rate: int) -> np.ndarray:
    t = np.arange(n) / rate
    return (8000 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.int16)


def test_streamed_chunks_play_exactly_as_the_whole_sentence_would() -> None:
    rate = 22050
    pcm = voice_like(rate * 2 + 123, rate)
    track = SpeechTrack(samples_per_tick=1920)
    writer = SpeechWriter(track, tag="s1", prebuffer_ms=80)
    cuts = [0, 1, 700, 701, 5000, 9999, 20000, 30011, len(pcm)]
    for a, b in itertools.pairwise(cuts):
        writer.write(pcm[a:b], rate)
    writer.finish()
    assert all(u.samples % 1920 == 0 for u in writer.utterances[:-1])
    assert all(u.tag == "s1" for u in writer.utterances)
    played = []
    for _ in range(-(-writer.samples // 1920) + 2):
        audio, _ = track.pull()
        played.append(audio)
    out = np.concatenate(played)
    expected = resample(pcm, rate, 48000)
    assert writer.samples == len(expected)
    np.testing.assert_array_equal(out[: len(expected)], expected)
    assert not out[len(expected) :].any()


def test_the_first_piece_goes_out_at_the_prebuffer_and_phonemes_follow_their_piece() -> None:
    track = SpeechTrack(samples_per_tick=1920)
    writer = SpeechWriter(track, prebuffer_ms=80)
    writer.write(voice_like(3000, 48000), 48000, (Phoneme(0.0, 0.05, "a"), Phoneme(0.05, 0.12, "o")))
    assert not writer.utterances
    writer.write(voice_like(1000, 48000), 48000)
    assert [u.samples for u in writer.utterances] == [3840]
    assert writer.utterances[0].phonemes == (Phoneme(0.0, 0.05, "a"), Phoneme(0.05, 0.08, "o"))
    writer.write(voice_like(1000, 48000), 48000)
    writer.finish()
    assert [u.samples for u in writer.utterances] == [3840, 1160]
    second = writer.utterances[1].phonemes
    assert len(second) == 1 and second[0].symbol == "o"
    assert abs(second[0].start_s) < 1e-9 and abs(second[0].end_s - 1160 / 48000) < 1e-9

from pathlib import Path

import numpy as np
import pytest

from broadcaster.voice.pcm import read_audio, resample
from broadcaster.voice.speech_track import SpeechTrack, Utterance
from tests.media import write_tone_wav


def test_silence_is_exact_zeros_and_utterances_start_on_tick_boundaries() -> None:
    track = SpeechTrack(samples_per_tick=1920)
    audio, speaking = track.pull()
    assert not audio.any() and speaking is None
    first = track.append(np.full(3000, 7, np.int16), 48000)
    second = track.append(np.full((1000, 2), -9, np.int16), 48000)
    pulled = [track.pull() for _ in range(4)]
    out = np.concatenate([a for a, _ in pulled])
    assert (out[:3000] == 7).all()
    assert not out[3000:3840].any()
    assert (out[3840:4840] == -9).all()
    assert not out[4840:].any()
    assert [(s.utterance.id, s.index) if s else None for _, s in pulled] == [(1, 0), (1, 1), (2, 0), None]
    assert first.start_tick == 1 and first.start_sample == 1920
    assert second.start_tick == 3 and second.start_sample == 3 * 1920
    assert first.done.is_set() and second.done.is_set()
    assert track.samples_spoken == 4000


def test_an_utterance_waits_for_lip_sync_but_only_so_long() -> None:
    prepared: list[int] = []

    def prepare(utterance: Utterance, pcm: np.ndarray) -> None:
        prepared.append(len(pcm))
        if utterance.id == 1:
            utterance.ready.set()

    track = SpeechTrack(samples_per_tick=1920, max_hold_ticks=3, prepare=prepare)
    quick = track.append(np.full(1920, 5, np.int16), 48000)
    slow = track.append(np.full(1920, 6, np.int16), 48000)
    assert prepared == [1920, 1920]
    speaking = [track.pull()[1] for _ in range(6)]
    assert speaking[0] is not None and speaking[0].utterance is quick
    assert speaking[1:4] == [None, None, None]
    assert speaking[4] is not None and speaking[4].utterance is slow
    assert slow.held_ticks == 3 and track.held_ticks == 3


def test_a_failing_prepare_does_not_lose_the_speech() -> None:
    def prepare(utterance: Utterance, pcm: np.ndarray) -> None:
        raise RuntimeError("boom")

    track = SpeechTrack(samples_per_tick=1920, prepare=prepare)
    track.append(np.full(1920, 5, np.int16), 48000)
    audio, speaking = track.pull()
    assert speaking is not None and (audio == 5).all()


@pytest.mark.parametrize("rate", [16000, 22050, 24000, 44100])
def test_any_rate_is_resampled_to_48k_keeping_duration(rate: int) -> None:
    seconds = 1.3
    t = np.arange(int(rate * seconds)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    out = resample(pcm, rate, 48000)
    assert out.shape[1] == 2
    assert abs(len(out) - 48000 * seconds) <= 48
    spectrum = np.abs(np.fft.rfft(out[:, 0].astype(np.float64)))
    assert abs(np.argmax(spectrum) * 48000 / len(out) - 300) < 2


def test_bad_pcm_is_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        SpeechTrack().append(np.zeros((10, 3), np.int16), 48000)
    with pytest.raises(ValueError, match="positive"):
        SpeechTrack().append(np.zeros(10, np.int16), 0)


def test_read_audio_decodes_a_wav_to_program_format(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    write_tone_wav(path, 16000, 0.5, 0.5, 0.25)
    pcm = read_audio(path)
    assert pcm.dtype == np.int16 and pcm.shape[1] == 2
    assert abs(len(pcm) - 48000 * 1.25) <= 48
    assert not pcm[: 48000 * 4 // 10].any()
    assert np.abs(pcm[int(48000 * 0.6) : int(48000 * 0.9)]).max() > 10000


def test_dropping_a_tag_fades_the_playing_piece_and_removes_the_rest() -> None:
    track = SpeechTrack(samples_per_tick=1920)
    loud = np.full(1920 * 4, 10000, np.int16)
    reply = track.append(loud, 48000, tag="reply")
    after = track.append(loud, 48000, tag="reply")
    other = track.append(np.full(1920, 300, np.int16), 48000, tag="script")
    track.pull()
    dropped = track.drop("reply")
    assert dropped == 1920 * 3 - 240 + 1920 * 4
    audio, speaking = track.pull()
    assert speaking is not None and speaking.utterance is reply
    assert audio[0, 0] == 10000 and abs(int(audio[239, 0])) < 100 and not audio[240:].any()
    assert reply.cut and after.cut and after.done.is_set() and not other.cut
    audio, speaking = track.pull()
    assert speaking is not None and speaking.utterance is other and (audio == 300).all()


def test_a_placed_utterance_starts_at_its_sample_and_not_before() -> None:
    track = SpeechTrack(samples_per_tick=1920)
    placed = track.append(np.full(1920 * 2, 3, np.int16), 48000, at_sample=1920 * 3)
    pulled = [track.pull() for _ in range(6)]
    out = np.concatenate([a for a, _ in pulled])
    assert not out[: 1920 * 3].any()
    assert (out[1920 * 3 : 1920 * 5] == 3).all()
    assert not out[1920 * 5 :].any()
    assert placed.start_tick == 3 and placed.late_samples == 0
    assert track.held_ticks == 0  # waiting for its place is not a lip-sync hold
    with pytest.raises(ValueError, match="tick boundary"):
        track.append(np.zeros(10, np.int16), 48000, at_sample=100)


def test_a_late_placed_utterance_skips_what_is_late_and_keeps_its_place() -> None:
    track = SpeechTrack(samples_per_tick=1920)
    for _ in range(4):
        track.pull()  # ticks 0-3 are gone
    ramp = (np.arange(1920 * 6) // 1920).astype(np.int16)  # tick i of the piece holds value i
    late = track.append(ramp, 48000, at_sample=1920 * 2)  # should have started two ticks ago
    gone = track.append(np.full(1920, 9, np.int16), 48000, at_sample=0)  # wholly late
    after = track.append(np.full(1920, 8, np.int16), 48000, at_sample=1920 * 8)
    pulled = [track.pull() for _ in range(6)]  # ticks 4-9
    values = [int(a[0, 0]) for a, _ in pulled]
    assert values == [2, 3, 4, 5, 8, 0]  # tick 4 carries the piece's tick 2: still in place
    frames = [s for _, s in pulled]
    assert frames[0] is not None and frames[0].index == 2  # lip-sync reads the right tick of it
    assert late.start_tick == 2 and late.late_samples == 2 * 1920
    assert gone.cut and gone.done.is_set() and gone.late_samples == 1920
    assert after.start_tick == 8
    assert track.late_samples == 3 * 1920

from pathlib import Path

import numpy as np
import pytest

from broadcaster.voice.pcm import read_audio, resample
from broadcaster.voice.speech_track import SpeechTrack
from tests.media import write_tone_wav


def test_silence_is_exact_zeros_and_utterances_play_back_to_back() -> None:
    track = SpeechTrack()
    assert not track.pull(1920)[0].any()
    first = track.append(np.full(3000, 7, np.int16), 48000)
    second = track.append(np.full((1000, 2), -9, np.int16), 48000)
    out = np.concatenate([track.pull(1920)[0] for _ in range(3)])
    assert (out[:3000] == 7).all()
    assert (out[3000:4000] == -9).all()
    assert not out[4000:].any()
    assert first.start_sample == 1920 and second.start_sample == 1920 + 3000
    assert first.done.is_set() and second.done.is_set()
    assert track.samples_spoken == 4000


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

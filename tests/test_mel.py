from pathlib import Path

import numpy as np

from broadcaster.face.lipsync.mel import SILENCE, mel_spectrogram, mel_windows

REFERENCE = Path(__file__).parent / "data" / "wav2lip_mel_reference.npy"


def reference_input() -> np.ndarray:
    """The signal behind the reference file: a chirp plus hashed noise, fading out to digital silence.

    The reference was made by Wav2Lip's pipeline on librosa 0.11 (``pad_mode="reflect"`` as in 0.7/0.8)
    and scipy's ``lfilter`` pre-emphasis. Integer hashing keeps the input identical on any numpy.
    """
    n = 16_000 + 137
    t = np.arange(n) / 16_000
    chirp = 0.5 * np.sin(2 * np.pi * (100.0 * t + 1500.0 * t**2))
    h = np.arange(n, dtype=np.uint32) * np.uint32(2654435761)
    h ^= h >> np.uint32(15)
    h *= np.uint32(2246822519)
    h ^= h >> np.uint32(13)
    noise = 0.1 * (h / 2.0**32 - 0.5)
    envelope = np.where(t < 0.5, 1.0, 10.0 ** (-3.0 * (t - 0.5) / 0.3)) * (t < 0.9)
    return np.asarray((chirp + noise) * envelope, np.float32)


def test_matches_librosa_reference() -> None:
    expected = np.load(REFERENCE)
    mel = mel_spectrogram(reference_input())
    assert mel.dtype == np.float32
    assert mel.shape == expected.shape == (80, 1 + (16_000 + 137) // 200)
    np.testing.assert_allclose(mel, expected, atol=1e-3)


def test_silence_is_the_floor() -> None:
    mel = mel_spectrogram(np.zeros(1600, np.float32))
    assert mel.shape == (80, 9)
    assert (mel == SILENCE).all()


def test_a_click_lands_where_training_put_it_in_its_frames_window() -> None:
    fps = 25.0
    pcm = np.zeros(16_000 * 2, np.float32)
    frame = 20
    pcm[round((frame + 0.5) / fps * 16_000)] = 1.0
    windows = mel_windows(mel_spectrogram(pcm), fps, 50)
    assert windows.shape == (50, 80, 16)
    loudest = windows[frame].mean(axis=0)
    # The window of frame f starts at frame f - 1 (column 60.8 -> 60); the click is at column 65.6.
    assert set(np.flatnonzero(loudest > SILENCE + 1)) <= {4, 5, 6, 7}
    assert int(np.argmax(loudest)) in {5, 6}
    # The next frame's window sees the click 3.2 columns earlier.
    assert int(np.argmax(windows[frame + 1].mean(axis=0))) in {2, 3}


def test_edge_windows_are_whole_and_pad_with_silence() -> None:
    mel = mel_spectrogram(np.full(8000, 0.3, np.float32) * np.sin(np.arange(8000)))
    windows = mel_windows(mel, 30.0, 20)
    assert windows.shape == (20, 80, 16)
    assert (windows[0][:, :3] == SILENCE).all()  # frame 0's window starts at column -2.67 -> -3
    assert (windows[0][:, 3:] == mel[:, :13]).all()
    assert (windows[-1] == SILENCE).all()
    assert mel_windows(mel, 25.0, 0).shape == (0, 80, 16)

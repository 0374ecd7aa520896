"""The VAD engines on real speech (espeak-ng), silence and room noise."""

from __future__ import annotations

import importlib.util
import sys
import time

import numpy as np
import pytest

from broadcaster.listen.vad import SileroVad, Vad, VadError, WebrtcVad, create_vad
from tests.speech_samples import noise, silence, speech

SENTENCES = ("Please tell me about the weather tomorrow.", "Hello, can you hear me?", "Wait a moment please.")


def frames(vad: Vad, pcm: np.ndarray) -> np.ndarray:
    size = vad.frame_samples
    return pcm[: len(pcm) // size * size].reshape(-1, size)


def probabilities(vad: Vad, pcm: np.ndarray) -> np.ndarray:
    return np.array([vad.probability(frame) for frame in frames(vad, pcm)])


def loud_frames(vad: Vad, pcm: np.ndarray) -> np.ndarray:
    """Frames whose every 10 ms piece is at -30 dBFS RMS or louder: the middle of voiced speech."""
    pieces = np.array_split(frames(vad, pcm).astype(np.float64), 3, axis=1)
    level = [10 * np.log10((piece**2).mean(axis=1) / 32768**2 + 1e-12) for piece in pieces]
    return np.all(np.array(level) >= -30, axis=0)


@pytest.fixture(params=["silero", "webrtc"])
def vad(request: pytest.FixtureRequest) -> Vad:
    return create_vad(request.param)


def test_silence_is_not_speech(vad: Vad) -> None:
    assert probabilities(vad, silence(1.0)).max() < 0.1


def test_room_noise_is_not_speech(vad: Vad) -> None:
    stream = np.concatenate([silence(0.5), noise(3.0, level_dbfs=-50)])
    heard = probabilities(vad, stream)
    settled = heard[round(0.5 * 16000 / vad.frame_samples) + 6 :]  # webrtc calls a new noise speech at first
    assert settled.max() < 0.35, settled


@pytest.mark.parametrize("text", SENTENCES)
def test_speech_is_speech(vad: Vad, text: str) -> None:
    stream = np.concatenate([silence(0.5), speech(text), silence(0.5)])
    heard = probabilities(vad, stream)
    loud = loud_frames(vad, stream)
    assert loud.sum() >= 10
    assert np.median(heard[loud]) >= 0.9
    assert (heard[loud] >= 0.5).mean() >= 0.85
    lead = round(0.5 * 16000 / vad.frame_samples) - 1
    assert heard[:lead].max() < 0.1  # the silence before it


def test_wrong_frames_are_refused(vad: Vad) -> None:
    size = vad.frame_samples
    with pytest.raises(ValueError, match=f"frames of {size} samples"):
        vad.probability(np.zeros(size - 1, np.int16))
    with pytest.raises(ValueError, match=f"frames of {size} samples"):
        vad.probability(np.zeros((size, 2), np.int16))
    with pytest.raises(ValueError, match="int16"):
        vad.probability(np.zeros(size, np.float32))


def test_silero_carries_its_state_and_reset_clears_it() -> None:
    vad = SileroVad()
    talk = frames(vad, speech(SENTENCES[0]))[10:40]
    hiss = noise(0.032, level_dbfs=-60)[: vad.frame_samples]
    fresh = vad.probability(hiss)
    assert fresh < 0.2
    vad.reset()
    in_order = [vad.probability(frame) for frame in talk]
    assert vad.probability(hiss) > 0.5  # the recurrent state still hears the speech
    vad.reset()
    assert vad.probability(hiss) == pytest.approx(fresh, abs=1e-6)
    alone = []
    for frame in talk:
        vad.reset()
        alone.append(vad.probability(frame))
    assert np.mean(in_order) > np.mean(alone) + 0.15  # context makes each frame surer
    vad.reset()
    assert [vad.probability(frame) for frame in talk] == pytest.approx(in_order, abs=1e-6)


def test_webrtc_modes() -> None:
    assert WebrtcVad(0).mode == 0
    with pytest.raises(ValueError, match="0-3"):
        WebrtcVad(4)


def test_unknown_engine() -> None:
    with pytest.raises(ValueError, match="silero or webrtc"):
        create_vad("nope")  # type: ignore[arg-type]


def test_missing_packages_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "silero_vad" else real(name, *a)
    )
    with pytest.raises(VadError, match="pip install --no-deps silero-vad"):
        SileroVad()
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(VadError, match="pip install onnxruntime"):
        SileroVad()
    monkeypatch.setitem(sys.modules, "webrtcvad", None)
    with pytest.raises(VadError, match="pip install webrtcvad-wheels"):
        WebrtcVad()


def test_cpu_cost_per_second_of_audio(vad: Vad) -> None:
    stream = np.concatenate([speech(text) for text in SENTENCES])
    seconds = len(stream) / 16000
    started = time.process_time()
    probabilities(vad, stream)
    cost = (time.process_time() - started) / seconds
    print(f"\n{type(vad).__name__}: {cost * 1000:.2f} ms of CPU per second of audio")
    assert cost < 0.05

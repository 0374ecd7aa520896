"""Voice activity detection: how likely one short frame of the microphone is to be speech.

Every engine judges fixed frames of 16 kHz int16 mono audio and answers a probability; the turn detector
frames the stream for it and applies thresholds, so an engine stays a few lines around its library.
Engines are chosen by name in ``voice_in.vad``.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from broadcaster.listen.settings import VadName

RATE = 16000


class VadError(Exception):
    """A VAD engine's package or model is missing or could not be loaded."""


class Vad(ABC):
    """A voice activity detector over frames of ``frame_samples`` 16 kHz int16 mono samples."""

    name: ClassVar[VadName]
    frame_samples: int

    @abstractmethod
    def probability(self, frame: np.ndarray) -> float:
        """The speech probability (0..1) of exactly one frame; frames must follow each other in time."""

    @abstractmethod
    def reset(self) -> None:
        """Forget the stream so far (a new microphone, or a gap in the audio)."""

    def _check(self, frame: np.ndarray) -> np.ndarray:
        if frame.ndim != 1 or frame.shape[0] != self.frame_samples:
            raise ValueError(
                f"{self.name} VAD judges frames of {self.frame_samples} samples, got shape {frame.shape}"
            )
        if frame.dtype != np.int16:
            raise ValueError(f"{self.name} VAD needs int16 samples, got {frame.dtype}")
        return frame


def silero_model() -> Path:
    """The ONNX model inside the installed ``silero-vad`` package, found without importing it.

    Importing ``silero_vad`` imports torch (and sets torch's thread count), which we neither need nor
    install; the package is only the carrier of its model file.
    """
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise VadError("the silero VAD needs the silero-vad package: pip install --no-deps silero-vad")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise VadError(f"{path}: the silero-vad package has no silero_vad.onnx")
    return path


class SileroVad(Vad):
    """Silero VAD v5/v6 through onnxruntime, on one thread (the encoder needs the other cores).

    The model is recurrent: each 512-sample frame is judged with the last 64 samples of the previous one
    before it and the state the previous call returned, so frames must be given in order.
    """

    name = "silero"
    frame_samples = 512
    context_samples = 64

    def __init__(self, model: Path | None = None) -> None:
        try:
            import onnxruntime  # noqa: PLC0415 (only when silero is chosen)
        except ImportError as exc:
            raise VadError("the silero VAD needs onnxruntime: pip install onnxruntime") from exc
        path = model or silero_model()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # the model's unused initialisers are not worth a warning each load
        try:
            self._session: Any = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise VadError(f"silero VAD model {path} could not be loaded: {exc}") from exc
        self._rate = np.array(RATE, dtype=np.int64)
        self._input = np.zeros((1, self.context_samples + self.frame_samples), np.float32)
        self._state = np.zeros((2, 1, 128), np.float32)

    def probability(self, frame: np.ndarray) -> float:
        """The model's speech probability for this frame, given every frame before it."""
        frame = self._check(frame)
        self._input[0, : self.context_samples] = self._input[0, -self.context_samples :]
        self._input[0, self.context_samples :] = frame * (1.0 / 32768.0)
        out, state = self._session.run(None, {"input": self._input, "state": self._state, "sr": self._rate})
        self._state = state
        return float(out[0, 0])

    def reset(self) -> None:
        """Zero the recurrent state and the carried context."""
        self._input.fill(0.0)
        self._state = np.zeros((2, 1, 128), np.float32)


class WebrtcVad(Vad):
    """The WebRTC GMM detector: cheap, on 30 ms frames, each judged as three 10 ms decisions.

    The probability is the share of the three that WebRTC calls speech: its hang-over after a sound is
    counted in decisions, so 10 ms decisions hang over about 80 ms past a 60 ms cough where 30 ms ones
    reach 120 ms and open a turn. ``mode`` 0 (least) to 3 (most eager to call a frame non-speech).
    """

    name = "webrtc"
    frame_samples = 480
    _decision_samples = 160

    def __init__(self, mode: int = 3) -> None:
        if mode not in (0, 1, 2, 3):
            raise ValueError(f"webrtc VAD mode must be 0-3, got {mode}")
        try:
            import webrtcvad  # noqa: PLC0415 (only when webrtc is chosen)
        except ImportError as exc:
            raise VadError("the webrtc VAD needs webrtcvad: pip install webrtcvad-wheels") from exc
        self._module: Any = webrtcvad
        self.mode = mode
        self._vad: Any = webrtcvad.Vad(mode)

    def probability(self, frame: np.ndarray) -> float:
        """The share (0, 1/3, 2/3 or 1) of the frame's 10 ms pieces WebRTC calls speech."""
        data = np.ascontiguousarray(self._check(frame)).tobytes()
        step = 2 * self._decision_samples
        voiced = sum(self._vad.is_speech(data[i : i + step], RATE) for i in range(0, len(data), step))
        return voiced / (self.frame_samples // self._decision_samples)

    def reset(self) -> None:
        """A fresh detector (its noise estimate adapts over the stream)."""
        self._vad = self._module.Vad(self.mode)


def create_vad(name: VadName) -> Vad:
    """The engine ``voice_in.vad`` names. Raises ``VadError`` when its package is missing."""
    if name == "silero":
        return SileroVad()
    if name == "webrtc":
        return WebrtcVad()
    raise ValueError(f"unknown VAD {name!r} (silero or webrtc)")

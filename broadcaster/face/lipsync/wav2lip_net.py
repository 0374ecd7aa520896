"""The Wav2Lip generator: the network, loading its public checkpoints, and running it on a batch.

The layout mirrors the public ``wav2lip.pth`` / ``wav2lip_gan.pth`` checkpoints key for key (after their
``module.`` prefix is stripped), so those files load strictly. Loading refuses anything that would run
code (``weights_only``) and fails at start-up with a message naming the file and what is wrong, rather
than producing a wrong mouth hours into a broadcast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

FACE_SIZE = 96
"""Side of the square face crop the generator sees and draws, in pixels."""
MEL_BANDS = 80
MEL_STEPS = 16
"""A window of 16 mel columns (0.2 s of audio) drives one video frame."""


class CheckpointError(Exception):
    """A Wav2Lip checkpoint is missing, unreadable, or not a Wav2Lip generator."""


class _Conv(nn.Module):
    """Convolution, batch norm, optional residual add, ReLU: the public ``Conv2d`` block."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int | tuple[int, int],
        padding: int,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block; the residual form keeps the input's shape."""
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class _Deconv(nn.Module):
    """Transposed convolution, batch norm, ReLU: the public ``Conv2dTranspose`` block."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, padding: int, output_padding: int = 0
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding), nn.BatchNorm2d(cout)
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample by the block's stride."""
        return self.act(self.conv_block(x))


def _res(channels: int) -> _Conv:
    return _Conv(channels, channels, 3, 1, 1, residual=True)


class Wav2LipNet(nn.Module):
    """The Wav2Lip generator: a mel window and a face crop in, the face with a matching mouth out.

    The face input has 6 channels: the target face with its lower half zeroed (where the mouth is to be
    drawn), then a reference face for identity and pose, both BGR in [0, 1]. The U-Net decoder starts
    from the audio embedding and concatenates each face-encoder feature map on the way up.
    """

    def __init__(self) -> None:
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList(
            [
                nn.Sequential(_Conv(6, 16, 7, 1, 3)),
                nn.Sequential(_Conv(16, 32, 3, 2, 1), _res(32), _res(32)),
                nn.Sequential(_Conv(32, 64, 3, 2, 1), _res(64), _res(64), _res(64)),
                nn.Sequential(_Conv(64, 128, 3, 2, 1), _res(128), _res(128)),
                nn.Sequential(_Conv(128, 256, 3, 2, 1), _res(256), _res(256)),
                nn.Sequential(_Conv(256, 512, 3, 2, 1), _res(512)),
                nn.Sequential(_Conv(512, 512, 3, 1, 0), _Conv(512, 512, 1, 1, 0)),
            ]
        )
        self.audio_encoder = nn.Sequential(
            _Conv(1, 32, 3, 1, 1),
            _res(32),
            _res(32),
            _Conv(32, 64, 3, (3, 1), 1),
            _res(64),
            _res(64),
            _Conv(64, 128, 3, 3, 1),
            _res(128),
            _res(128),
            _Conv(128, 256, 3, (3, 2), 1),
            _res(256),
            _Conv(256, 512, 3, 1, 0),
            _Conv(512, 512, 1, 1, 0),
        )
        self.face_decoder_blocks = nn.ModuleList(
            [
                nn.Sequential(_Conv(512, 512, 1, 1, 0)),
                nn.Sequential(_Deconv(1024, 512, 3, 1, 0), _res(512)),
                nn.Sequential(_Deconv(1024, 512, 3, 2, 1, 1), _res(512), _res(512)),
                nn.Sequential(_Deconv(768, 384, 3, 2, 1, 1), _res(384), _res(384)),
                nn.Sequential(_Deconv(512, 256, 3, 2, 1, 1), _res(256), _res(256)),
                nn.Sequential(_Deconv(320, 128, 3, 2, 1, 1), _res(128), _res(128)),
                nn.Sequential(_Deconv(160, 64, 3, 2, 1, 1), _res(64), _res(64)),
            ]
        )
        self.output_block = nn.Sequential(_Conv(80, 32, 3, 1, 1), nn.Conv2d(32, 3, 1, 1, 0), nn.Sigmoid())

    def forward(self, audio: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        """Draw faces (B, 3, 96, 96) in [0, 1] from mels (B, 1, 80, 16) and faces (B, 6, 96, 96)."""
        features = []
        x = face
        for block in self.face_encoder_blocks:
            x = block(x)
            features.append(x)
        x = self.audio_encoder(audio)
        for block in self.face_decoder_blocks:
            x = torch.cat((block(x), features.pop()), dim=1)
        out: torch.Tensor = self.output_block(x)
        return out


def _examples(keys: list[str], count: int = 3) -> str:
    shown = ", ".join(keys[:count])
    return shown + (", ..." if len(keys) > count else "")


def _state_dict_of(checkpoint: object, path: Path) -> dict[str, torch.Tensor]:
    """The generator weights in a loaded checkpoint, with any ``module.`` (DataParallel) prefix removed."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{path}: holds a {type(checkpoint).__name__}, not a checkpoint dict")
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        if state is not checkpoint:
            raise CheckpointError(f"{path}: its 'state_dict' is not a dict of tensors")
        top = _examples([str(k) for k in checkpoint], 6)
        raise CheckpointError(f"{path}: has no 'state_dict' and is not a state dict itself (keys: {top})")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def _kind_hint(keys: list[str]) -> str:
    """A guess at what a non-generator checkpoint is, since people often grab the wrong file."""
    if any(k.startswith("face_decoder_blocks.") for k in keys):
        return ""
    if any(k.startswith("binary_pred") for k in keys):
        return "; this looks like the visual-quality discriminator checkpoint, not the generator"
    if any(k.startswith(("face_encoder.", "audio_encoder.")) for k in keys):
        return "; this looks like a SyncNet (lip-sync expert) checkpoint, not the generator"
    return ""


def _check_layout(expected: Mapping[str, torch.Tensor], state: dict[str, torch.Tensor], path: Path) -> None:
    """Fail with the missing, unexpected and mis-shaped keys named, before any weight is copied."""
    optional = "num_batches_tracked"
    missing = [k for k in expected if k not in state and not k.endswith(optional)]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: not a Wav2Lip generator checkpoint: {len(missing)} keys missing"
            f" ({_examples(missing)}), {len(unexpected)} unexpected ({_examples(unexpected)})"
            + _kind_hint(list(state))
        )
    wrong = [
        f"{k} is {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
        for k, v in state.items()
        if v.shape != expected[k].shape
    ]
    if wrong:
        raise CheckpointError(
            f"{path}: {len(wrong)} weights have the wrong shape for a Wav2Lip generator:"
            f" {'; '.join(wrong[:3])}"
        )


def _load_failure(exc: Exception) -> str:
    """The gist of a ``torch.load`` failure; the weights-only unpickler wraps it in a long lecture."""
    cause = exc.__context__ if exc.__context__ is not None else exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0][:200]}" if lines else type(cause).__name__


def load_wav2lip(path: Path, device: torch.device) -> Wav2LipNet:
    """Load a Wav2Lip generator checkpoint, in eval mode and channels-last layout on ``device``.

    Accepts ``{"state_dict": {...}}`` (the public files) or a bare state dict, keys with or without the
    ``module.`` prefix. Raises ``CheckpointError`` naming the file and the problem.
    """
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = _load_failure(exc)
        if "Unsupported global" in reason:
            raise CheckpointError(
                f"{path}: refused, it holds Python objects beyond tensors and loading it could run code"
                f" ({reason})"
            ) from exc
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({reason})") from exc
    state = _state_dict_of(checkpoint, path)
    net = Wav2LipNet()
    expected = net.state_dict()
    _check_layout(expected, state, path)
    for key, value in expected.items():
        state.setdefault(key, value)
    net.load_state_dict(state)
    # Module.to accepts memory_format at run time, but torch's type stubs omit it.
    return net.to(device, memory_format=torch.channels_last).eval()  # type: ignore[call-overload]


def pick_device(name: str) -> torch.device:
    """The torch device for a config name: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r} asked for, but CUDA is not available (torch {torch.__version__});"
                " use 'cpu' or 'auto'"
            )
        return torch.device(name)
    raise ValueError(f"unknown device {name!r}: use 'auto', 'cpu' or 'cuda'")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16, AMX, Arm BF16).

    Without it, bf16 autocast is emulated and several times slower than fp32.
    """
    capabilities = torch.cpu.get_capabilities()
    return any(capabilities.get(flag) for flag in ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"))


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision name on ``device``; None means plain fp32.

    ``auto`` is fp16 on CUDA, and on CPU bf16 where the CPU has it natively, else fp32. fp16 on CPU is
    refused: few CPUs run it natively.
    """
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError("precision 'fp16' needs CUDA; use 'bf16' or 'fp32' on CPU")
        return torch.float16
    raise ValueError(f"unknown precision {precision!r}: use 'auto', 'fp32', 'bf16' or 'fp16'")


def infer(net: Wav2LipNet, mels: np.ndarray, faces: np.ndarray, precision: str = "auto") -> np.ndarray:
    """Draw mouths for a batch: mels (B, 80, 16) float32 and BGR reference faces (B, 96, 96, 3) uint8.

    Each face is both the reference and, with its lower half blanked, the target to repaint. Returns
    the drawn faces, (B, 96, 96, 3) uint8 BGR.
    """
    if mels.ndim != 3 or mels.shape[1:] != (MEL_BANDS, MEL_STEPS):
        raise ValueError(f"mels must be (B, {MEL_BANDS}, {MEL_STEPS}), got {mels.shape}")
    if faces.shape[1:] != (FACE_SIZE, FACE_SIZE, 3) or faces.dtype != np.uint8:
        raise ValueError(
            f"faces must be uint8 (B, {FACE_SIZE}, {FACE_SIZE}, 3), got {faces.dtype} {faces.shape}"
        )
    if len(mels) != len(faces):
        raise ValueError(f"{len(mels)} mel windows for {len(faces)} faces")
    device = next(net.parameters()).device
    dtype = autocast_dtype(precision, device)
    autocast: contextlib.AbstractContextManager[object] = (
        torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    )
    with torch.inference_mode():
        audio = torch.from_numpy(np.ascontiguousarray(mels, np.float32)).to(device).unsqueeze(1)
        # NHWC permuted to NCHW is already channels-last in memory.
        reference = torch.from_numpy(np.ascontiguousarray(faces)).to(device).permute(0, 3, 1, 2).float() / 255
        target = reference.clone()
        target[:, :, FACE_SIZE // 2 :] = 0
        face = torch.cat((target, reference), dim=1).contiguous(memory_format=torch.channels_last)
        with autocast:
            drawn = net(audio, face)
        pixels = (drawn.float() * 255).round_().clamp_(0, 255).to(torch.uint8)
        return np.ascontiguousarray(pixels.permute(0, 2, 3, 1).cpu().numpy())

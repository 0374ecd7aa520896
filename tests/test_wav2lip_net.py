from pathlib import Path

import numpy as np
import pytest
import torch

from broadcaster.face.lipsync.wav2lip_net import (
    CheckpointError,
    Wav2LipNet,
    autocast_dtype,
    cpu_has_native_bf16,
    infer,
    load_wav2lip,
    pick_device,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def net() -> Wav2LipNet:
    """A randomly initialised generator with non-trivial batch-norm statistics."""
    torch.manual_seed(0)
    model = Wav2LipNet().eval()
    for name, buffer in model.named_buffers():
        if name.endswith("running_mean"):
            buffer.normal_(0.0, 0.1)
        elif name.endswith("running_var"):
            buffer.uniform_(0.5, 2.0)
    return model.to(memory_format=torch.channels_last)  # as load_wav2lip gives it; bf16 on CPU needs it


@pytest.fixture(scope="module")
def public_checkpoint(net: Wav2LipNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The net saved the way the public wav2lip.pth is: wrapped, with DataParallel's prefix."""
    path = tmp_path_factory.mktemp("ckpt") / "wav2lip.pth"
    state = {"module." + k: v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "global_step": 1, "global_epoch": 1}, path)
    return path


def inputs(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(batch, 1, 80, 16, generator=generator), torch.rand(
        batch, 6, 96, 96, generator=generator
    )


def test_key_layout_is_the_public_one(net: Wav2LipNet) -> None:
    state = net.state_dict()
    assert len(state) == 352  # 50 conv/deconv + batch-norm blocks of 7 entries, plus the final 1x1 conv
    assert state["face_encoder_blocks.0.0.conv_block.0.weight"].shape == (16, 6, 7, 7)
    assert state["audio_encoder.0.conv_block.0.weight"].shape == (32, 1, 3, 3)
    assert state["face_decoder_blocks.6.0.conv_block.0.weight"].shape == (160, 64, 3, 3)
    assert state["face_decoder_blocks.2.0.conv_block.1.running_var"].shape == (512,)
    assert state["output_block.1.weight"].shape == (3, 32, 1, 1)
    assert sum(p.numel() for p in net.parameters()) == 36_298_035


def test_public_checkpoint_round_trips(net: Wav2LipNet, public_checkpoint: Path) -> None:
    loaded = load_wav2lip(public_checkpoint, CPU)
    assert not loaded.training
    audio, face = inputs(2)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(audio, face), net(audio, face), atol=1e-5, rtol=1e-4)


def test_bare_state_dict_without_prefix_loads(net: Wav2LipNet, tmp_path: Path) -> None:
    path = tmp_path / "bare.pth"
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, path)
    loaded = load_wav2lip(path, CPU)
    torch.testing.assert_close(loaded.output_block[1].weight, net.output_block[1].weight)


def test_forward_draws_faces_in_unit_range(net: Wav2LipNet) -> None:
    audio, face = inputs(2)
    with torch.inference_mode():
        out = net(audio, face)
    assert out.shape == (2, 3, 96, 96)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nowhere\.pth: no such checkpoint file"):
        load_wav2lip(tmp_path / "nowhere.pth", CPU)


def test_garbage_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"this is not a checkpoint" * 8)
    with pytest.raises(CheckpointError, match=r"garbage\.pth: not a PyTorch checkpoint"):
        load_wav2lip(path, CPU)


def test_checkpoint_that_would_run_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pth"
    torch.save({"state_dict": {}, "where": Path("x")}, path)
    with pytest.raises(CheckpointError, match=r"pickled\.pth: refused.*could run code"):
        load_wav2lip(path, CPU)


def test_non_state_dict_is_named(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"optimizer": {"lr": 1}, "step": 3}, path)
    with pytest.raises(CheckpointError, match=r"other\.pth: has no 'state_dict'.*optimizer"):
        load_wav2lip(path, CPU)


def test_syncnet_checkpoint_is_recognised(tmp_path: Path) -> None:
    path = tmp_path / "lipsync_expert.pth"
    state = {
        "module.face_encoder.0.conv_block.0.weight": torch.zeros(32, 15, 7, 7),
        "module.audio_encoder.0.conv_block.0.weight": torch.zeros(32, 1, 3, 3),
    }
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as caught:
        load_wav2lip(path, CPU)
    message = str(caught.value)
    assert "lipsync_expert.pth" in message
    assert "keys missing" in message and "1 unexpected (face_encoder.0.conv_block.0.weight)" in message
    assert "SyncNet" in message


def test_wrong_shape_is_named(net: Wav2LipNet, tmp_path: Path) -> None:
    path = tmp_path / "resized.pth"
    state = dict(net.state_dict())
    state["output_block.1.weight"] = torch.zeros(4, 32, 1, 1)
    torch.save({"state_dict": state}, path)
    with pytest.raises(
        CheckpointError, match=r"resized\.pth: 1 weights.*output_block\.1\.weight is \(4, 32, 1, 1\)"
    ):
        load_wav2lip(path, CPU)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_infer_draws_uint8_faces(net: Wav2LipNet, precision: str) -> None:
    rng = np.random.default_rng(2)
    mels = rng.uniform(-4, 4, (1, 80, 16)).astype(np.float32)
    faces = rng.integers(0, 256, (1, 96, 96, 3), dtype=np.uint8)
    drawn = infer(net, mels, faces, precision)
    assert drawn.shape == (1, 96, 96, 3) and drawn.dtype == np.uint8
    if precision == "fp32":
        masked = faces.copy()
        masked[:, 48:] = 0
        face = np.concatenate([masked, faces], axis=3).transpose(0, 3, 1, 2) / 255.0
        with torch.inference_mode():
            out = net(torch.from_numpy(mels)[:, None], torch.from_numpy(face.astype(np.float32)))
        expected = (out.permute(0, 2, 3, 1).numpy() * 255).round()
        assert np.abs(drawn.astype(int) - expected).max() <= 1


def test_devices_and_precisions() -> None:
    assert pick_device("cpu") == CPU
    assert pick_device("auto").type in {"cpu", "cuda"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("tpu")
    assert autocast_dtype("auto", CPU) == (torch.bfloat16 if cpu_has_native_bf16() else None)
    assert autocast_dtype("bf16", CPU) == torch.bfloat16
    assert autocast_dtype("fp32", CPU) is None
    with pytest.raises(ValueError, match="needs CUDA"):
        autocast_dtype("fp16", CPU)

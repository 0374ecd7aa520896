"""The measured-sync contract, end to end: known speech on air, the output decoded, the mouth measured."""

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.sync import correlate, measure, run_and_measure, syllable_train, write_wav
from broadcaster.face.lipsync.wav2lip_net import Wav2LipNet
from tests.run_cli import Finished, finish, run, start


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised Wav2Lip generator saved in the public checkpoints' layout."""
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("w2l") / "wav2lip_random.pth"
    state = {f"module.{k}": v for k, v in Wav2LipNet().state_dict().items()}
    torch.save({"state_dict": state, "global_step": 0, "global_epoch": 0}, path)
    return path


def run_wav2lip(avatar_root: Path, wav: Path, checkpoint: Path, *args: str, seconds: int = 6) -> Finished:
    """A short `run` with ``wav`` on air and the Wav2Lip backend on ``checkpoint``."""
    return finish(
        start(
            avatar_root,
            "--for",
            str(seconds),
            "--play-wav",
            str(wav),
            "--set",
            'face.lipsync="wav2lip"',
            "--set",
            f'face.wav2lip.checkpoint="{checkpoint}"',
            *args,
        ),
        timeout=180,
    )


def test_classic_lip_sync_is_measurably_in_sync(avatar_root: Path, tmp_path: Path) -> None:
    wav = tmp_path / "speech.wav"
    write_wav(wav, syllable_train(9.0))
    result = run_and_measure(wav, tmp_path, avatar_root, "classic", seconds=10.0)
    assert result["faces_found"] >= 0.95 * result["frames"]
    assert abs(result["offset_ms"]) <= 40, result
    assert result["correlation"] >= 0.6, result


def test_the_metric_sees_a_mouth_that_lags(avatar_root: Path, tmp_path: Path) -> None:
    """The tool is not blind: the same run, with the mouth measured 3 frames late, reads as 120 ms."""
    wav = tmp_path / "speech.wav"
    write_wav(wav, syllable_train(7.0, seed=11))
    run_and_measure(wav, tmp_path, avatar_root, "classic", seconds=8.0)
    m = measure(tmp_path / "sync.mp4")
    m.opening = np.concatenate([np.full(3, np.nanmean(m.opening)), m.opening[:-3]])
    offset_ms, correlation = correlate(m)
    assert 100 <= offset_ms <= 140 and correlation >= 0.6


def test_a_random_wav2lip_runs_end_to_end_in_the_program(
    avatar_root: Path, tmp_path: Path, random_checkpoint: Path
) -> None:
    wav = tmp_path / "short.wav"
    write_wav(wav, syllable_train(1.2, seed=5))
    done = run_wav2lip(
        avatar_root,
        wav,
        random_checkpoint,
        "--output",
        str(tmp_path / "w2l.mp4"),
        "--set",
        "face.hold_ms=10000",
        "--set",
        "face.wav2lip.batch=8",
        "--set",
        "show.fillers.enabled=false",
        seconds=14,
    )
    assert done.code == 0, done.stderr[-3000:]
    summary = done.summary
    lipsync = summary["lipsync"]
    assert lipsync["backend"] == "wav2lip"
    assert lipsync["utterances"] == 1
    # the program holds the sound until the faces are ready (up to hold_ms), then all 30 ticks play
    assert summary["speech"]["samples"] == 30 * 1920, (summary["speech"], lipsync)
    # every tick of the utterance drew its generated face, but for ticks the program repeated (it falls
    # behind under a loaded CI machine and repeats the last picture rather than delay the sound)
    assert lipsync["degraded_frames"] == 0, lipsync
    assert 30 - summary["repeats"] <= lipsync["frames"] <= 30 and lipsync["frames"] >= 20, (lipsync, summary)
    assert lipsync["generated"] >= 30
    assert summary["render_errors"] == 0
    assert summary["encoder"]["dropped"] == 0


def test_wav2lip_that_cannot_keep_up_degrades_to_classic_and_says_so(
    avatar_root: Path, tmp_path: Path, random_checkpoint: Path
) -> None:
    wav = tmp_path / "long.wav"
    write_wav(wav, syllable_train(4.0, seed=6))
    done = run_wav2lip(avatar_root, wav, random_checkpoint, "--set", "face.hold_ms=0")
    assert done.code == 0, done.stderr[-3000:]
    lipsync = done.summary["lipsync"]
    assert lipsync["degraded_utterances"] == 1 and lipsync["degraded_frames"] > 0
    assert "classic lip-sync from tick" in done.stderr
    assert done.summary["speech"]["held_ticks"] == 0


def test_a_bad_checkpoint_fails_at_start(avatar_root: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "wav2lip.pth"
    garbage.write_bytes(b"definitely not a checkpoint")
    for args in (
        ["--set", 'face.lipsync="wav2lip"'],
        ["--set", 'face.lipsync="wav2lip"', "--set", f'face.wav2lip.checkpoint="{tmp_path / "missing.pth"}"'],
        ["--set", 'face.lipsync="wav2lip"', "--set", f'face.wav2lip.checkpoint="{garbage}"'],
    ):
        done = run("run", "--for", "5", "--set", f'avatar.dir="{avatar_root}"', "--set", "outputs=[]", *args)
        assert done.code == 2, done.stderr[-2000:]
        assert "face.wav2lip" in done.stderr
        assert "summary" not in done.stderr

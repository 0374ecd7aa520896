"""bench/soak.py: a half-minute real soak and an hour of simulated time both report their figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RTMP_MODULE

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"av_offset_samples", "rss_growth_mb_per_h", "lateness_p99_ms", "reconnects"}


def soak(*args: str, timeout: float) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run(
        [sys.executable, "bench/soak.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert last.startswith("RESULT "), f"no RESULT line:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.returncode, json.loads(last.removeprefix("RESULT ")), done.stdout


def test_a_short_real_soak_keeps_audio_on_the_video_and_exits_cleanly() -> None:
    if not RTMP_MODULE.exists():
        pytest.skip("nginx-light + libnginx-mod-rtmp not installed (make test installs them)")
    code, result, report = soak("--minutes", "0.5", timeout=150)
    assert code == 0
    assert result.keys() >= KEYS
    assert result["exit_code"] == 0
    assert result["av_offset_samples"] == 0
    assert result["reconnects"] == 0
    assert result["rtmp_record_frames"] and result["rtmp_record_frames"][0] > 0  # nginx received it
    assert result["rtmp_record_within_one_aac_frame"]
    assert result["ticks"] >= 0.5 * 60 * 25 * 0.9
    assert result["ticks_unaccounted"] == 0
    assert "A/V at the end" in report


def test_an_hour_of_simulated_ticks_does_not_drift_and_fires_the_schedule() -> None:
    code, result, _ = soak("--simulate-hours", "1", timeout=120)
    assert code == 0
    assert result.keys() >= KEYS
    assert result["ticks"] == result["ticks_expected"] == 3600 * 25
    assert result["av_offset_samples"] == 0
    assert result["av_drift_samples"] == 0
    assert result["encoder_audio_gaps"] == result["encoder_dropped"] == result["bad_ticks"] == 0
    assert result["speech_samples_lost"] == 0
    assert result["scheduled_fired"] == result["scheduled_expected"] > 0
    assert result["chat_rows"] == result["comments"] > 0

"""bench/fuzz.py's targets really run: every target, a few hundred inputs each, no crash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_fuzz_target_runs_without_a_crash() -> None:
    runs = 300
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fuzz.py"), "--all", "--runs", str(runs), "--max-len", "2048"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT ")
    result = json.loads(last.removeprefix("RESULT "))
    assert result["crashes"] == 0
    assert set(result["targets"]) == {"bilibili", "twitch", "json", "control", "config"}
    for name, figures in result["targets"].items():
        assert figures["executions"] >= runs, name
        assert 0 < figures["peak_rss_mb"] < 2048, name
    assert result["executions"] == sum(f["executions"] for f in result["targets"].values())

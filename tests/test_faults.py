"""The fault table as tests: each fault shows in /healthz and /metrics, heals by itself, loses nothing.

``bench/faults.py`` runs the same scenarios and prints their figures; here each must pass.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from bench.fault_process import process_fault
from bench.faults import SCENARIOS, Outcome, run_one

LATE_MS = 250  # a loaded CI machine may hand a tick over late; the program's lead is 300 ms

pytestmark = pytest.mark.usefixtures("loopback_ice")


def check(out: Outcome) -> None:
    assert out.shown, f"{out.fault}: not visible in /healthz and /metrics: {out}"
    assert out.recovery_s is not None, f"{out.fault}: did not recover: {out}"
    assert out.lost == [], f"{out.fault}: lost {out.lost}"
    assert out.late_max_ms < LATE_MS, f"{out.fault}: the program fell behind: {out}"


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_the_show_survives(name: str, tmp_path: Path) -> None:
    try:
        out = await run_one(name, tmp_path)
    except OSError as exc:
        if "cannot mount" in str(exc):
            pytest.skip(f"{name}: {exc} (the disk-full fault needs root, as CI has)")
        raise
    check(out)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_a_stopped_or_killed_process_loses_nothing_and_resumes(
    sig: signal.Signals, tmp_path: Path, avatar_root: Path
) -> None:
    check(await process_fault(tmp_path, sig, str(avatar_root)))

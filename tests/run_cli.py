"""Run the real command line in a subprocess, as users and CI do."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Finished:
    code: int
    stderr: str
    stdout: str

    @property
    def summary(self) -> dict[str, Any]:
        for line in reversed(self.stderr.splitlines()):
            if "summary {" in line:
                return dict(json.loads(line.split("summary ", 1)[1]))
        raise AssertionError(f"no summary line in:\n{self.stderr[-3000:]}")


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "broadcaster", *args]


def start(avatar_root: Path, *args: str) -> subprocess.Popen[str]:
    """Start `run` with the sample avatar from ``avatar_root`` and no configured outputs."""
    store = Path(tempfile.mkdtemp(prefix="store-")) / "broadcaster.sqlite3"
    return subprocess.Popen(
        command(
            "run",
            *("--set", f'avatar.dir="{avatar_root}"', "--set", "outputs=[]"),
            *("--set", f'store.path="{store}"', "--set", "control.port=0"),
            *args,
        ),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 120) -> Finished:
    out, err = process.communicate(timeout=timeout)
    return Finished(process.returncode, err, out)


def run(*args: str, timeout: float = 120) -> Finished:
    done = subprocess.run(
        command(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    return Finished(done.returncode, done.stderr, done.stdout)

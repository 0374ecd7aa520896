"""The soak benchmark's eyes on a running broadcaster: its process (psutil) and its /metrics.

``Watch`` samples the process every few seconds: resident memory (its own, and its children's: the
RTMP relay and the local model), open file descriptors, threads, and the program's counters read from
/metrics over HTTP. ``growth_per_hour`` fits a line through the second half of the samples (after the
warm-up: caches filled, the model loaded) so a slow leak shows as a slope, not as start-up.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_metrics(text: str) -> dict[str, list[tuple[str, float]]]:
    """Prometheus text: each family's ``(labels, value)`` pairs (labels as written, ``""`` if none)."""
    out: dict[str, list[tuple[str, float]]] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None or line.startswith("#"):
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        out.setdefault(match.group(1), []).append((match.group(2) or "", value))
    return out


def metric(families: dict[str, list[tuple[str, float]]], name: str, label: str = "") -> float | None:
    """The value of ``name`` (the first series whose labels contain ``label``); None when absent."""
    for labels, value in families.get(name, []):
        if label in labels:
            return value
    return None


def metric_sum(families: dict[str, list[tuple[str, float]]], name: str) -> float:
    """The sum of every series of ``name``."""
    return sum(value for _, value in families.get(name, []))


def http_get(url: str, timeout: float = 5.0, token: str = "") -> tuple[int, bytes]:
    """GET ``url`` (with the console token, if given): the status and body (an error's too)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


@dataclass
class Sample:
    """One look at the process: seconds since the watch began, and what it saw."""

    t: float
    rss_mb: float
    children_rss_mb: float
    fds: int
    threads: int
    ticks: int | None
    reconnects: float | None
    late_p99_ms: float | None


@dataclass
class Watch:
    """Samples ``pid`` and its /metrics every ``interval_s`` until cancelled."""

    pid: int
    metrics_url: str
    token: str
    interval_s: float = 5.0
    samples: list[Sample] = field(default_factory=list)
    metric_failures: int = 0
    started: float = field(default_factory=time.monotonic)

    def take(self) -> Sample:
        """One sample now (blocking: psutil and an HTTP GET)."""
        process = psutil.Process(self.pid)
        with process.oneshot():
            rss = process.memory_info().rss
            fds = process.num_fds()
            threads = process.num_threads()
        children = 0
        for child in process.children(recursive=True):
            try:
                children += child.memory_info().rss
            except psutil.Error:
                continue
        ticks = reconnects = late = None
        try:
            status, body = http_get(self.metrics_url, token=self.token)
            if status != 200:
                raise OSError(f"/metrics answered {status}")
            families = parse_metrics(body.decode())
            value = metric(families, "broadcaster_program_ticks_total")
            ticks = int(value) if value is not None else None
            reconnects = metric_sum(families, "broadcaster_output_reconnects_total")
            p99 = metric(families, "broadcaster_program_lateness_seconds", 'quantile="0.99"')
            late = p99 * 1000 if p99 is not None else None
        except OSError:
            self.metric_failures += 1
        sample = Sample(
            time.monotonic() - self.started,
            rss / 2**20,
            children / 2**20,
            fds,
            threads,
            ticks,
            reconnects,
            late,
        )
        self.samples.append(sample)
        return sample

    async def run(self) -> None:
        """Sample until cancelled (or the process is gone)."""
        while True:
            try:
                await asyncio.to_thread(self.take)
            except psutil.NoSuchProcess:
                return
            await asyncio.sleep(self.interval_s)


def growth_per_hour(samples: list[Sample], attr: str = "rss_mb") -> float | None:
    """MB per hour: the slope of a least-squares line through the second half of the samples."""
    half = samples[len(samples) // 2 :]
    if len(half) < 3 or half[-1].t - half[0].t <= 0:
        return None
    t = np.array([s.t for s in half]) / 3600
    y = np.array([float(getattr(s, attr)) for s in half])
    slope = np.polyfit(t, y, 1)[0]
    return round(float(slope), 2)


def tick_rate(samples: list[Sample], fps: int) -> dict[str, Any]:
    """Ticks produced against wall time between the first and the last sample that read /metrics."""
    read = [s for s in samples if s.ticks is not None]
    if len(read) < 2:
        return {"ticks_measured": None}
    first, last = read[0], read[-1]
    wall = last.t - first.t
    produced = (last.ticks or 0) - (first.ticks or 0)
    expected = wall * fps
    return {
        "ticks_measured": produced,
        "ticks_expected": round(expected),
        "ticks_deficit": round(expected - produced),
        "tick_rate_ratio": round(produced / expected, 5) if expected else None,
        "measured_over_s": round(wall, 1),
    }

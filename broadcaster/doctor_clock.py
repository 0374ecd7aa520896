"""The doctor's checks of time: the kernel clock is synchronised, timers wake on time, the zone resolves.

The program paces itself by sleeping until each tick is due, and the schedule runs on the wall clock,
so a machine whose clock drifts or whose sleeps overshoot shows it on air.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import math
import os
import sys
import time
from functools import partial

from broadcaster.config import Config
from broadcaster.doctor_checks import Check, Group, Outcome, in_thread

JITTER_SAMPLES = 50
JITTER_SLEEP_S = 0.010
JITTER_WARN_MS = 5.0
STA_UNSYNC = 0x0040
TIME_ERROR = 5


def clock_group(cfg: Config, timeout: float) -> Group:
    """[clock]: the kernel clock is synchronised, timers wake on time, the schedule's zone resolves."""
    return Group(
        "clock",
        [
            Check("clock sync", _clock_sync, timeout),
            Check("timer jitter", partial(_jitter, cfg.program.lead_ms), timeout),
            Check("schedule timezone", partial(_zone, cfg), timeout),
        ],
    )


class _Timex(ctypes.Structure):
    """Linux's ``struct timex`` (glibc layout), read by ``adjtimex`` with ``modes = 0``."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("padding", ctypes.c_int * 11),
    ]


def kernel_clock() -> tuple[int, _Timex] | None:
    """The clock state and ``timex`` from ``adjtimex`` (read-only); None where there is no adjtimex."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    adjtimex = getattr(libc, "adjtimex", None)
    if adjtimex is None:
        return None
    adjtimex.argtypes = [ctypes.POINTER(_Timex)]
    adjtimex.restype = ctypes.c_int
    timex = _Timex()
    timex.modes = 0
    state = adjtimex(ctypes.byref(timex))
    if state == -1:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return int(state), timex


async def _clock_sync() -> Outcome:
    try:
        found = kernel_clock()
    except OSError as exc:
        return Outcome("SKIP", f"adjtimex failed: {exc.strerror}")
    if found is None:
        return Outcome("SKIP", "no adjtimex on this system: cannot tell whether the clock is synchronised")
    state, timex = found
    if state == TIME_ERROR or timex.status & STA_UNSYNC:
        return Outcome(
            "WARN",
            "the kernel says the clock is not synchronised: scheduled talks and the on-air time drift "
            "from real time; run an NTP client (chrony, systemd-timesyncd)",
        )
    return Outcome("OK", f"synchronised, estimated error {timex.esterror} µs (at most {timex.maxerror} µs)")


def timer_overshoot(samples: int = JITTER_SAMPLES, sleep_s: float = JITTER_SLEEP_S) -> list[float]:
    """How late (ms) each of ``samples`` sleeps of ``sleep_s`` woke up, as a pacing thread sleeps."""
    late = []
    for _ in range(samples):
        started = time.perf_counter()
        time.sleep(sleep_s)
        late.append(max(0.0, (time.perf_counter() - started - sleep_s) * 1000))
    return late


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def _jitter(lead_ms: int) -> Outcome:
    late = await in_thread(timer_overshoot)
    p50, p99 = percentile(late, 0.5), percentile(late, 0.99)
    detail = (
        f"{JITTER_SAMPLES} sleeps of {JITTER_SLEEP_S * 1000:g} ms wake late by "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"
    )
    if p99 > lead_ms / 2:
        return Outcome(
            "FAIL",
            f"{detail}: more than half of program.lead_ms = {lead_ms}; frames will be late; "
            "free the CPU, or raise program.lead_ms",
        )
    if p99 > JITTER_WARN_MS:
        return Outcome(
            "WARN",
            f"{detail}: a loaded machine (or a VM short of CPU); lead_ms = {lead_ms} absorbs it for now",
        )
    return Outcome("OK", detail)


async def _zone(cfg: Config) -> Outcome:
    from broadcaster.show.schedule import zone  # noqa: PLC0415

    name = cfg.show.schedule_timezone
    try:
        tz = await in_thread(lambda: zone(name))
    except ValueError as exc:
        return Outcome("FAIL", f"show.schedule_timezone: {exc}")
    now = datetime.datetime.now(tz)
    which = name or f"the machine's zone ({tz})"
    entries = f"{len(cfg.schedule)} scheduled " + ("entry" if len(cfg.schedule) == 1 else "entries")
    return Outcome("OK", f"{which}: now {now:%Y-%m-%d %H:%M} (UTC{now:%z}), {entries}")

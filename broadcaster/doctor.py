"""``python -m broadcaster doctor``: the going-live check, the config against the real world.

Every check runs, in order, each within its time limit, whatever the ones before it found; one that
crashes is a FAIL row with the exception's text. The report is a table (or, with ``--json``, one JSON
object); the exit status is 1 when a check FAILed, 0 otherwise (WARN is fine to go live with).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from broadcaster.config import Config, ConfigError, OutputConfig, output_from_target
from broadcaster.doctor_checks import (
    Check,
    Group,
    Outcome,
    Status,
    avatar_group,
    config_group,
    control_group,
    fonts_group,
    store_group,
)
from broadcaster.doctor_clock import clock_group
from broadcaster.doctor_outputs import outputs_group
from broadcaster.doctor_show import MindChecks, VoiceChecks
from broadcaster.doctor_voice import voice_in_group

if TYPE_CHECKING:
    from rich.console import Console

GROUPS = ("config", "avatar", "fonts", "tts", "llm", "outputs", "control", "voice_in", "clock", "store")
DEFAULT_TIMEOUT_S = 10.0
GRACE_S = 2.0  # past a check's own limit, so its own (clearer) timeout message wins
CLOSE_LIMIT_S = 10.0
STYLES = {"OK": "green", "WARN": "yellow", "FAIL": "bold red", "SKIP": "dim"}
WIDTH_WITHOUT_TERMINAL = 160
CHECK_WIDTH = 40


@dataclass(frozen=True)
class Result:
    """One row of the report."""

    group: str
    check: str
    result: Status
    detail: str
    seconds: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The doctor's own options (``--config``, ``--set`` and ``--output`` are shared with ``run``)."""
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=GROUPS,
        metavar="NAME",
        help=f"skip a group of checks: {', '.join(GROUPS)} (repeatable)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="time limit of each check (the local model gets at least 60 s to start)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")


def run_doctor(cfg: Config, args: argparse.Namespace) -> int:
    """Run the checks, print the report; 1 when a check failed, else 0. ConfigError: bad arguments."""
    if not args.timeout > 0:
        raise ConfigError(f"--timeout {args.timeout:g}: must be more than 0 seconds")
    outputs = [*cfg.outputs, *(output_from_target(t) for t in args.outputs)]
    config_file = args.config if args.config is not None else Path("config.toml")
    groups = plan(cfg, outputs, args.timeout, set(args.skip), config_file)
    results = asyncio.run(run_groups(groups, progress=None if args.json else _progress_console()))
    failed = any(r.result == "FAIL" for r in results)
    if args.json:
        print(json.dumps(report(results), ensure_ascii=False))
    else:
        render(results, _console())
    return 1 if failed else 0


def plan(
    cfg: Config,
    outputs: list[OutputConfig],
    timeout: float,
    skip: set[str],
    config_file: Path | None = None,
) -> list[Group]:
    """The groups of checks, in report order; a skipped group is one SKIP row."""
    builders = {
        "config": lambda: config_group(cfg, len(outputs), timeout),
        "avatar": lambda: avatar_group(cfg, timeout),
        "fonts": lambda: fonts_group(cfg, timeout),
        "tts": lambda: VoiceChecks(cfg, timeout).group(),
        "llm": lambda: MindChecks(cfg, timeout).group(),
        "outputs": lambda: outputs_group(cfg, outputs, timeout),
        "control": lambda: control_group(cfg, timeout, config_file),
        "voice_in": lambda: voice_in_group(cfg, timeout),
        "clock": lambda: clock_group(cfg, timeout),
        "store": lambda: store_group(cfg, timeout),
    }
    groups = []
    for name in GROUPS:
        if name in skip:
            groups.append(_single(name, Outcome("SKIP", f"--skip {name}"), timeout))
            continue
        try:
            groups.append(builders[name]())
        except Exception as exc:  # a group that cannot even be set up is one FAIL row
            groups.append(_single(name, Outcome("FAIL", f"{type(exc).__name__}: {exc}"), timeout))
    return groups


def _single(name: str, outcome: Outcome, timeout: float) -> Group:
    """A group of one row with a known outcome."""

    async def known() -> Outcome:
        return outcome

    return Group(name, [Check(name, known, timeout)])


async def run_groups(groups: list[Group], progress: Console | None = None) -> list[Result]:
    """Every check of every group, one after the other; each group closes what it opened after its checks."""
    results = []
    for group in groups:
        try:
            for check in group.checks:
                shown = progress.status(f"checking {check.name}…") if progress else contextlib.nullcontext()
                with shown:
                    results.append(await run_check(group.name, check))
        finally:
            if group.close is not None:
                await _close(group)
    return results


async def run_check(group: str, check: Check) -> Result:
    """One check within its limit; a timeout or a crash is a FAIL row, never an exception."""
    started = time.monotonic()
    limit = asyncio.timeout(check.limit_s + min(GRACE_S, check.limit_s))
    try:
        async with limit:
            outcome = await check.run()
    except TimeoutError as exc:
        if not limit.expired():
            outcome = Outcome("FAIL", f"{type(exc).__name__}: {exc}")
        else:
            outcome = Outcome("FAIL", f"no result within {check.limit_s:g} s")
    except ConfigError as exc:
        outcome = Outcome("FAIL", str(exc))
    except Exception as exc:  # a check's bug, or a failure it did not foresee: a row, not a traceback
        outcome = Outcome("FAIL", f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    return Result(group, check.name, outcome.status, outcome.detail, time.monotonic() - started)


async def _close(group: Group) -> None:
    assert group.close is not None
    try:
        async with asyncio.timeout(CLOSE_LIMIT_S):
            await group.close()
    except Exception as exc:  # the report matters more than a tidy close
        print(f"warning: closing what the {group.name} checks opened failed: {exc!r}", file=sys.stderr)


def report(results: list[Result]) -> dict[str, object]:
    """The results as one JSON-ready object (``--json``)."""
    counts = {status: sum(r.result == status for r in results) for status in STYLES}
    return {
        "ok": counts["FAIL"] == 0,
        "counts": counts,
        "checks": [{**asdict(r), "seconds": round(r.seconds, 3)} for r in results],
    }


def render(results: list[Result], console: Console) -> None:
    """The table, then a line saying whether the show can go live."""
    from rich.table import Table  # noqa: PLC0415 (rich loads only to print the report)
    from rich.text import Text  # noqa: PLC0415

    table = Table(title="broadcaster doctor", title_justify="left")
    table.add_column("check", overflow="fold", max_width=CHECK_WIDTH)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold")
    table.add_column("time", justify="right", no_wrap=True)
    for r in results:
        # Text, not markup: details quote URLs and messages with brackets in them
        table.add_row(
            Text(r.check), Text(r.result, style=STYLES[r.result]), Text(r.detail), _duration(r.seconds)
        )
    console.print(table)
    counts = report(results)["counts"]
    assert isinstance(counts, dict)
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    if counts["FAIL"]:
        console.print(Text(f"{summary}: not ready to go live", style="bold red"))
    else:
        console.print(Text(f"{summary}: ready to go live", style="green"))


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _console() -> Console:
    from rich.console import Console  # noqa: PLC0415

    console = Console()
    if not console.is_terminal:  # a file or a pipe: wide lines rather than wrapped URLs
        console = Console(width=WIDTH_WITHOUT_TERMINAL)
    return console


def _progress_console() -> Console | None:
    from rich.console import Console  # noqa: PLC0415

    console = Console(stderr=True)
    return console if console.is_terminal else None

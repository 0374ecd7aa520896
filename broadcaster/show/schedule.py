"""The schedule: scripted talks and one-line announcements at set times, from ``[[schedule]]`` entries.

Each entry names what to play (``script`` with ``segments``, or ``say``) and exactly one trigger:
``cron`` (crontab syntax, five fields; weekday 0 or 7 is Sunday), ``every_s`` (an interval, from
``start`` or one interval after start-up) or ``at`` (once; a time already past at start-up is logged
and skipped). APScheduler 3 (its asyncio scheduler) keeps the times; ``fire(entry)`` is called on the
event loop and should only queue the run (the director plays it in its script lane). A run later than
``misfire_grace_s`` (the loop was stalled, the machine slept) is skipped and counted; with ``coalesce``
several missed runs become one.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tzlocal
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_SHUTDOWN,
    JobEvent,
    SchedulerEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

log = logging.getLogger(__name__)

Fire = Callable[["ScheduleEntry"], Awaitable[None] | None]


class ScheduleError(Exception):
    """Schedule entries that cannot be used; the message names ``schedule[i].key`` for each."""


def zone(name: str) -> tzinfo:
    """The IANA time zone ``name``; the machine's local zone for ""."""
    if not name:
        return tzlocal.get_localzone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{name!r} is not an IANA time zone (like 'Asia/Shanghai')") from exc


_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DAY_PART = re.compile(r"^(\*|\d+(?:-\d+)?)(?:/(\d+))?$")


def _weekdays(field: str) -> str:
    """A crontab weekday field (0 or 7 = Sunday) as APScheduler 3 reads it (names; its 0 is Monday)."""
    parts = []
    for part in field.split(","):
        match = _DAY_PART.match(part)
        if match is None or (match.group(1) == "*" and match.group(2) is None):
            parts.append(part)  # names ("mon-fri"), "*", or an error APScheduler reports
            continue
        first, _, last = match.group(1).partition("-")
        low, high = (0, 6) if first == "*" else (int(first), int(last or first))
        if not 0 <= low <= high <= 7:
            raise ValueError(f"weekday {part!r}: 0-7 (0 and 7 are Sunday)")
        step = int(match.group(2) or 1)
        if step < 1:
            raise ValueError(f"weekday {part!r}: the step must be at least 1")
        parts += [_DAYS[day % 7] for day in range(low, high + 1, step)]
    return ",".join(dict.fromkeys(parts))


def cron_trigger(expr: str, timezone: tzinfo | str) -> CronTrigger:
    """A crontab line (minute hour day month weekday) as a trigger; ValueError naming a bad field."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"a crontab line has 5 fields (minute hour day month weekday), not {len(fields)}")
    minute, hour, day, month, weekday = fields
    return CronTrigger(
        minute=minute, hour=hour, day=day, month=month, day_of_week=_weekdays(weekday), timezone=timezone
    )


class ScheduleEntry(BaseModel):
    """``[[schedule]]``: what to play and when (exactly one of ``cron``, ``every_s``, ``at``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    script: str = ""  # a script id of the library...
    say: str = ""  # ...or one line to announce
    segments: int = Field(0, ge=0, le=1000)  # segments a run plays; 0: one whole round
    cron: str = ""  # "*/10 * * * *": minute hour day month weekday
    every_s: int | None = Field(None, ge=1, le=7 * 86400)
    start: datetime | None = None  # the first `every_s` run (default: one interval after start-up)
    at: datetime | None = None  # a one-off
    misfire_grace_s: int = Field(60, ge=1, le=86400)
    coalesce: bool = True
    timezone: str = ""  # IANA zone of cron/at/start; "" = the schedule's zone

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if value:
            cron_trigger(value, "UTC")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if value:
            zone(value)
        return value

    @model_validator(mode="after")
    def _one_of_each(self) -> ScheduleEntry:
        if bool(self.script) == bool(self.say.strip()):
            raise ValueError("set exactly one of script (a script id) or say (a line)")
        triggers = [k for k in ("cron", "every_s", "at") if getattr(self, k) not in ("", None)]
        if len(triggers) != 1:
            raise ValueError(f"set exactly one of cron, every_s, at (found: {', '.join(triggers) or 'none'})")
        if self.start is not None and self.every_s is None:
            raise ValueError("start goes with every_s")
        if self.segments and not self.script:
            raise ValueError("segments goes with script")
        return self

    @property
    def label(self) -> str:
        """The entry's name for logs and the dashboard."""
        return self.name or self.script or self.say[:24]

    def trigger(self, default_zone: tzinfo, now: datetime) -> BaseTrigger:
        """The APScheduler trigger of this entry."""
        tz = zone(self.timezone) if self.timezone else default_zone
        if self.cron:
            return cron_trigger(self.cron, tz)
        if self.every_s is not None:
            first = self.start or now.astimezone(tz) + timedelta(seconds=self.every_s)
            return IntervalTrigger(seconds=self.every_s, start_date=first, timezone=tz)
        assert self.at is not None
        return DateTrigger(run_date=self.at, timezone=tz)


def load_schedule(entries: Sequence[dict[str, Any]]) -> list[ScheduleEntry]:
    """``[[schedule]]`` tables as entries; raises ScheduleError naming ``schedule[i].key`` for each error."""
    out, errors = [], []
    for i, raw in enumerate(entries):
        try:
            out.append(ScheduleEntry.model_validate(raw))
        except ValidationError as exc:
            for e in exc.errors():
                key = "".join(f".{p}" for p in e["loc"])
                value = "" if e["type"] == "missing" or not e["loc"] else f" = {e.get('input')!r}"
                errors.append(f"schedule[{i}]{key}{value}: {str(e['msg']).removeprefix('Value error, ')}")
    if errors:
        raise ScheduleError("; ".join(errors))
    return out


def check_scripts(entries: Sequence[ScheduleEntry], script_ids: Sequence[str]) -> list[str]:
    """``schedule[i].script = ...: no such script`` for each entry naming a script the library lacks."""
    return [
        f"schedule[{i}].script = {e.script!r}: no such script (known: {', '.join(script_ids) or 'none'})"
        for i, e in enumerate(entries)
        if e.script and e.script not in script_ids
    ]


@dataclass(frozen=True)
class ScheduledJob:
    """A schedule entry and when it fires next (None: done, skipped, or not started)."""

    index: int
    name: str
    next_fire: datetime | None


@dataclass
class ScheduleStats:
    """Runs fired, skipped past their grace time, and failed in ``fire``."""

    fired: int = 0
    missed: int = 0
    failed: int = 0


class Scheduler:
    """Fires schedule entries on the event loop; ``start`` and ``stop`` with the app."""

    def __init__(
        self,
        entries: Sequence[ScheduleEntry],
        fire: Fire,
        *,
        timezone: str = "",
        now: Callable[[], datetime] | None = None,
    ) -> None:
        """``now``: the wall clock (tests pass their own; APScheduler must then see the same clock)."""
        self.entries = list(entries)
        self.fire = fire
        self.zone = zone(timezone)
        self._now = now or (lambda: datetime.now(self.zone))
        self.stats = ScheduleStats()
        self._scheduler: AsyncIOScheduler | None = None
        self._stopped: asyncio.Event | None = None

    def start(self) -> None:
        """Add every entry's job and start (inside the running event loop)."""
        scheduler = AsyncIOScheduler(timezone=self.zone)
        scheduler.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR | EVENT_SCHEDULER_SHUTDOWN)
        now = self._now()
        for i, entry in enumerate(self.entries):
            trigger = entry.trigger(self.zone, now)
            if isinstance(trigger, DateTrigger) and trigger.run_date <= now:
                log.warning("schedule[%d] %s: at = %s is already past; skipped", i, entry.label, entry.at)
                continue
            scheduler.add_job(
                self._run, trigger, args=[i], id=f"schedule-{i}", name=entry.label,
                misfire_grace_time=entry.misfire_grace_s, coalesce=entry.coalesce, max_instances=1,
            )  # fmt: skip
        self._stopped = asyncio.Event()
        scheduler.start()
        self._scheduler = scheduler
        for job in self.jobs():
            log.info("schedule[%d] %s: next at %s", job.index, job.name, job.next_fire)

    async def stop(self) -> None:
        """Stop firing; returns once the scheduler has shut down (a run in progress is cancelled)."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is None or not scheduler.running:
            return
        scheduler.shutdown(wait=False)
        assert self._stopped is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self._stopped.wait()

    def wake(self) -> None:
        """Look for due runs now (after the wall clock jumped, or a test moved its clock)."""
        if self._scheduler is not None:
            self._scheduler.wakeup()

    def jobs(self) -> list[ScheduledJob]:
        """Each entry and its next fire time, for the dashboard."""
        out = []
        for i, entry in enumerate(self.entries):
            job = self._scheduler.get_job(f"schedule-{i}") if self._scheduler is not None else None
            out.append(ScheduledJob(i, entry.label, job.next_run_time if job is not None else None))
        return out

    async def _run(self, index: int) -> None:
        entry = self.entries[index]
        self.stats.fired += 1
        log.info("schedule[%d] %s fires", index, entry.label)
        result = self.fire(entry)
        if inspect.isawaitable(result):
            await result

    def _on_event(self, event: SchedulerEvent) -> None:
        if event.code == EVENT_SCHEDULER_SHUTDOWN:
            if self._stopped is not None:
                self._stopped.set()
        elif isinstance(event, JobEvent) and event.code == EVENT_JOB_MISSED:
            self.stats.missed += 1
            log.warning(
                "schedule %s: the run due at %s was too late; skipped", event.job_id, event.scheduled_run_time
            )
        elif event.code == EVENT_JOB_ERROR:
            self.stats.failed += 1

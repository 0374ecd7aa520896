import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import pytest

from broadcaster.show.schedule import (
    ScheduleEntry,
    ScheduleError,
    Scheduler,
    check_scripts,
    cron_trigger,
    load_schedule,
)

START = datetime(2026, 11, 21, 12, 3, 0, tzinfo=UTC)


class Clock:
    """The wall clock the scheduler sees; APScheduler reads it through a patched ``datetime.now``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(START)

    class FakeDatetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Any:
            return fake.now.astimezone(tz) if tz else fake.now.replace(tzinfo=None)

    for module in ("apscheduler.schedulers.base", "apscheduler.executors.base"):
        monkeypatch.setattr(f"{module}.datetime", FakeDatetime)
    return fake


Run = Callable[[datetime], Awaitable[None]]


async def started(clock: Clock, *entries: ScheduleEntry) -> tuple[Scheduler, list[str], Run]:
    fired: list[str] = []
    scheduler = Scheduler(entries, lambda e: fired.append(e.label), timezone="UTC", now=clock)
    scheduler.start()

    async def run_to(when: datetime) -> None:
        clock.now = when
        before = scheduler.stats.fired + scheduler.stats.missed
        due = [j for j in scheduler.jobs() if j.next_fire is not None and j.next_fire <= when]
        scheduler.wake()
        async with asyncio.timeout(2):
            # the runs are tasks of APScheduler's executor: yield the loop until its counters move
            while due and scheduler.stats.fired + scheduler.stats.missed == before:  # noqa: ASYNC110
                await asyncio.sleep(0)
            for _ in range(20):  # let the runs submitted together finish
                await asyncio.sleep(0)

    return scheduler, fired, run_to


def test_cron_fires_at_the_right_minutes(clock: Clock) -> None:
    async def main() -> None:
        scheduler, fired, run_to = await started(
            clock, ScheduleEntry(name="tea", script="t", cron="*/10 * * * *")
        )
        assert scheduler.jobs()[0].next_fire == START.replace(minute=10)
        await run_to(START.replace(minute=9, second=59))
        assert fired == []
        await run_to(START.replace(minute=10))
        assert fired == ["tea"]
        assert scheduler.jobs()[0].next_fire == START.replace(minute=20)
        await run_to(START.replace(minute=20, second=5))
        assert fired == ["tea", "tea"]
        await scheduler.stop()

    asyncio.run(main())


def test_interval_fires_every_period_and_a_one_off_once(clock: Clock) -> None:
    async def main() -> None:
        at = START + timedelta(minutes=5)
        scheduler, fired, run_to = await started(
            clock,
            ScheduleEntry(name="every", say="点个关注", every_s=120),
            ScheduleEntry(name="once", say="八点抽奖", at=at.replace(tzinfo=None)),
        )
        for minutes in (2, 4, 5, 6, 8):
            await run_to(START + timedelta(minutes=minutes))
        assert fired.count("every") == 4 and fired.count("once") == 1
        assert scheduler.jobs()[1].next_fire is None
        assert scheduler.stats.missed == 0
        await scheduler.stop()

    asyncio.run(main())


def test_a_one_off_already_past_is_skipped(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        caplog.set_level(logging.WARNING)
        scheduler, fired, run_to = await started(clock, ScheduleEntry(say="x", at=START - timedelta(hours=1)))
        await run_to(START + timedelta(hours=1))
        assert fired == [] and scheduler.jobs()[0].next_fire is None
        assert any("already past" in r.getMessage() for r in caplog.records)
        await scheduler.stop()

    asyncio.run(main())


def test_a_run_later_than_its_grace_is_skipped(clock: Clock) -> None:
    async def main() -> None:
        scheduler, fired, run_to = await started(
            clock, ScheduleEntry(script="t", cron="10 * * * *", misfire_grace_s=60)
        )
        await run_to(START.replace(minute=12))  # the loop stalled past 12:10 + 60 s
        assert fired == [] and scheduler.stats.missed == 1
        await run_to(START.replace(hour=13, minute=10, second=30))  # within the grace
        assert fired == ["t"]
        await scheduler.stop()

    asyncio.run(main())


@pytest.mark.parametrize(("coalesce", "runs"), [(True, 1), (False, 5)])
def test_a_stall_of_several_periods_fires_once_when_coalescing(
    clock: Clock, coalesce: bool, runs: int
) -> None:
    async def main() -> None:
        entry = ScheduleEntry(say="hi", every_s=60, coalesce=coalesce, misfire_grace_s=3600)
        scheduler, fired, run_to = await started(clock, entry)
        await run_to(START + timedelta(minutes=5, seconds=10))
        assert len(fired) == runs
        assert scheduler.jobs()[0].next_fire == START + timedelta(minutes=6)
        await scheduler.stop()
        assert scheduler.jobs()[0].next_fire is None

    asyncio.run(main())


def test_an_async_fire_is_awaited_and_a_failing_one_is_counted(clock: Clock) -> None:
    async def main() -> None:
        got: list[str] = []

        async def fire(entry: ScheduleEntry) -> None:
            got.append(entry.say)
            if entry.say == "bad":
                raise RuntimeError("director is gone")

        entries = [ScheduleEntry(say="ok", every_s=60), ScheduleEntry(say="bad", every_s=60)]
        scheduler = Scheduler(entries, fire, timezone="UTC", now=clock)
        scheduler.start()
        clock.now = START + timedelta(seconds=60)
        scheduler.wake()
        async with asyncio.timeout(2):
            while scheduler.stats.failed == 0 or len(got) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0)
        assert sorted(got) == ["bad", "ok"] and scheduler.stats.failed == 1
        await scheduler.stop()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"script": "t", "cron": "*/70 * * * *"}, "schedule[0].cron = '*/70 * * * *'"),
        ({"script": "t", "cron": "* * *"}, "schedule[0].cron = '* * *': a crontab line has 5 fields"),
        ({"script": "t"}, "schedule[0]: set exactly one of cron, every_s, at (found: none)"),
        ({"script": "t", "cron": "* * * * *", "every_s": 5}, "found: cron, every_s"),
        ({"cron": "* * * * *"}, "set exactly one of script (a script id) or say"),
        ({"say": "x", "every_s": 0}, "schedule[0].every_s = 0"),
        ({"say": "x", "every_s": 5, "timezone": "Mars/Olympus"}, "schedule[0].timezone = 'Mars/Olympus'"),
        ({"say": "x", "cron": "* * * * *", "start": "2026-01-01T00:00:00"}, "start goes with every_s"),
        ({"say": "x", "every_s": 5, "segments": 2}, "segments goes with script"),
        ({"say": "x", "every_s": 5, "colour": 1}, "schedule[0].colour = 1: Extra inputs"),
    ],
)
def test_bad_entries_name_the_entry_and_key(raw: dict[str, Any], expected: str) -> None:
    with pytest.raises(ScheduleError) as err:
        load_schedule([raw])
    assert expected in str(err.value)


def test_entries_load_and_unknown_scripts_are_reported() -> None:
    entries = load_schedule(
        [{"script": "tea", "cron": "0 20 * * 1-5", "segments": 3}, {"say": "hi", "every_s": 600}]
    )
    assert entries[0].segments == 3 and entries[1].label == "hi"
    assert check_scripts(entries, ["tea"]) == []
    assert check_scripts(entries, ["other"]) == ["schedule[0].script = 'tea': no such script (known: other)"]


def test_crontab_weekdays_count_from_sunday() -> None:
    saturday = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)  # a Saturday
    assert cron_trigger("0 20 * * 0", UTC).get_next_fire_time(None, saturday).weekday() == 6  # Sunday
    assert cron_trigger("0 20 * * 7", UTC).get_next_fire_time(None, saturday).weekday() == 6
    weekdays = cron_trigger("0 20 * * 1-5", UTC).get_next_fire_time(None, saturday)
    assert weekdays.weekday() == 0 and weekdays.day == 23  # Monday
    assert cron_trigger("0 9 * * sat", UTC).get_next_fire_time(None, saturday).day == 28

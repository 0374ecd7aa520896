"""The soak's accelerated mode: hours of the program's clock and schedule, at CPU speed.

Nothing here re-implements the arithmetic under test. The real ``Program`` render loop runs on the real
``ProgramClock`` (fed a virtual wall, the injection point the clock has for this), pulling the real
``SpeechTrack`` every tick and handing each tick to the real ``TickEncoder`` thread, whose audio framing
(the FIFO that turns 1920-sample ticks into 1024-sample AAC frames and stamps their pts) runs unchanged;
only the codecs are replaced by counters, and the picture is a small still one (rendering and x264 are
what the real mode measures). The real ``Scheduler`` (APScheduler underneath, shown the virtual time
as the schedule tests do) fires the configured ``[[schedule]]``; each run puts speech synthesised by
the configured TTS on the track. Chat arrives in bursts of DouyinBarrageGrab frames, parsed by the
real ``JsonFeed`` and judged and logged by the real ``ChatDesk`` into a real SQLite store.

What it checks: every tick carried exactly S samples and came in order; the encoder's audio ended on
the last tick's boundary with no gap (``av_drift_samples``, must be 0); every queued utterance played
whole from a tick boundary; the schedule fired as often as its triggers say (counted independently,
minute by minute); and how the process's memory grew per simulated hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import psutil

from bench.soak_ledger import QUEUE_TICKS, AudioCounter, StillPicture, TickLedger, VideoCounter
from bench.soak_watch import Sample, growth_per_hour
from broadcaster.config import Config, load_config
from broadcaster.show.schedule import ScheduleEntry, Scheduler
from broadcaster.show.show import build_chain, load_library
from broadcaster.store import Store
from broadcaster.stream.clock import ProgramClock, Timing, VirtualWall
from broadcaster.stream.encoder import TickEncoder
from broadcaster.stream.program import Program
from broadcaster.voice.speech_track import SpeechTrack, Utterance
from danmaku.desk import ChatDesk
from danmaku.feeds.json_relay import JsonFeed, JsonFeedConfig
from danmaku.triage.text import TextRules, block_rules
from tests.json_relay_server import douyin_chat_frames

ROOT = Path(__file__).resolve().parents[1]
START = (2026, 3, 2, 0, 0, 30)  # a Monday, 30 s past midnight (in the schedule's zone)
BURST_EVERY_S = 60
BURST_SIZE = 20
REPLY = "谢谢你的提问，这款茶叶今天有优惠。"
PICTURE = (64, 36)  # the still picture's size: the encoder's frame wrapping runs, on a small frame


class FakeDatetime(datetime):
    """``datetime`` whose ``now`` is the simulation's (patched into APScheduler, as the tests do)."""

    virtual: datetime = datetime(*START)

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> Any:
        return cls.virtual.astimezone(tz) if tz else cls.virtual.replace(tzinfo=None)


def cron_field_matches(field: str, value: int) -> bool:
    """A crontab minute or hour field: ``*``, ``*/n``, ``n``, ``a-b`` or comma lists of them."""
    for part in field.split(","):
        base, _, step = part.partition("/")
        if base == "*":
            low, high = 0, 59
        elif "-" in base:
            low, high = (int(x) for x in base.split("-"))
        else:
            low = high = int(base)
        if low <= value <= high and (value - low) % int(step or 1) == 0:
            return True
    return False


def expected_runs(entry: ScheduleEntry, start: datetime, end: datetime) -> int:
    """How often ``entry`` should fire in (start, end], counted without APScheduler."""
    if entry.every_s is not None:
        return int((end - start).total_seconds() // entry.every_s)
    if entry.at is not None:
        return int(start < entry.at.astimezone(start.tzinfo) <= end)
    minute, hour, day, month, weekday = entry.cron.split()
    if (day, month, weekday) != ("*", "*", "*"):
        raise ValueError(f"the simulation counts only minute and hour crontab fields, not {entry.cron!r}")
    count = 0
    t = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while t <= end:
        local = t.astimezone(start.tzinfo)
        count += cron_field_matches(minute, local.minute) and cron_field_matches(hour, local.hour)
        t += timedelta(minutes=1)
    return count


@dataclass
class Clip:
    """Speech ready to put on the track (one sentence's PCM from the TTS chain)."""

    pcm: np.ndarray
    rate: int
    text: str


@dataclass
class Simulation:
    """The virtual day: what fires when, and what it left behind."""

    cfg: Config
    loop: asyncio.AbstractEventLoop
    speech: SpeechTrack
    scheduler: Scheduler
    desk: ChatDesk
    feed: JsonFeed
    start: datetime
    clips: dict[int, list[Clip]]
    reply: list[Clip]
    utterances: list[Utterance] = field(default_factory=list)
    comments: int = 0
    bursts: int = 0
    next_burst: float = BURST_EVERY_S
    next_sample: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    hook_s: float = 0.0

    def fire(self, entry: ScheduleEntry) -> None:
        """A schedule run: its speech on the track (the script lane, as the director would queue it)."""
        index = self.scheduler.entries.index(entry)
        for clip in self.clips[index]:
            self.utterances.append(
                self.speech.append(clip.pcm, clip.rate, tag=f"schedule:{entry.label}", text=clip.text)
            )

    def next_event(self) -> float:
        """Virtual seconds of the next thing to do: a run due, a chat burst, a memory sample."""
        times = [self.next_burst, self.next_sample]
        for job in self.scheduler.jobs():
            if job.next_fire is not None:
                times.append((job.next_fire - self.start).total_seconds())
        return min(times)

    async def advance(self, seconds: float) -> None:
        """Bring the show's side to virtual time ``seconds``: due runs fire, a burst arrives, a sample."""
        when = self.start + timedelta(seconds=seconds)
        FakeDatetime.virtual = when
        due = [j for j in self.scheduler.jobs() if j.next_fire is not None and j.next_fire <= when]
        if due:
            stats = self.scheduler.stats
            before = stats.fired + stats.missed + stats.failed
            self.scheduler.wake()
            async with asyncio.timeout(10):
                while stats.fired + stats.missed + stats.failed < before + len(due):  # noqa: ASYNC110 (APScheduler's runs are tasks with no event to await)
                    await asyncio.sleep(0)
            for _ in range(5):
                await asyncio.sleep(0)
        if seconds >= self.next_burst:
            first = 7_400_000_000_000_000_000 + self.bursts * 1000
            frames = douyin_chat_frames(BURST_SIZE, first_id=first, seed=self.bursts)
            for frame in frames:
                await self.desk.accept(self.feed.handle(frame))
            self.comments += len(frames)
            self.bursts += 1
            self.next_burst += BURST_EVERY_S
            for clip in self.reply:
                self.utterances.append(self.speech.append(clip.pcm, clip.rate, tag="reply", text=clip.text))
        if seconds >= self.next_sample:
            process = psutil.Process()
            rss = process.memory_info().rss / 2**20
            self.samples.append(
                Sample(seconds, rss, 0.0, process.num_fds(), process.num_threads(), None, None, None)
            )
            self.next_sample += 3600

    def step(self, seconds: float) -> None:
        """``advance`` from the render thread, waiting for it."""
        started = time.perf_counter()
        asyncio.run_coroutine_threadsafe(self.advance(seconds), self.loop).result(60)
        self.hook_s += time.perf_counter() - started


class ShowWall(VirtualWall):
    """A virtual wall that, before jumping past the show's next event, lets the show catch up to it."""

    def __init__(self, sim: Simulation) -> None:
        super().__init__(0.0)
        self.sim = sim
        self._next = sim.next_event()

    def sleep_until(self, deadline: float, stop: threading.Event) -> bool:
        """Step through every show event up to ``deadline``, then jump there."""
        while self._next <= deadline and not stop.is_set():
            self._now = max(self._now, self._next)
            self.sim.step(self._next)
            self._next = self.sim.next_event()
        return super().sleep_until(deadline, stop)


async def synthesise(cfg: Config, texts: list[str]) -> list[Clip]:
    """Each text through the configured TTS chain (sentence by sentence, as the show speaks)."""
    chain = build_chain(cfg)
    clips = []
    try:
        for text in texts:
            for sentence in [s for s in text.replace("。", "。\n").splitlines() if s.strip()]:
                parts = [spoken.chunk async for spoken in chain.speak(sentence)]
                if parts:
                    pcm = np.concatenate([p.pcm for p in parts])
                    clips.append(Clip(pcm, parts[0].rate, sentence))
    finally:
        for engine in chain.engines:
            await engine.aclose()
    return clips


def sim_config(work: Path, schedule: str) -> Config:
    """The shipped config with the soak's schedule and a store in ``work``."""
    return load_config(
        ROOT / "config.toml",
        [
            f"schedule={schedule}",
            f"store.path={json.dumps(str(work / 'sim.sqlite3'))}",
            "voice.cache.enabled=false",
        ],
    )


def entry_texts(cfg: Config, entry: ScheduleEntry) -> list[str]:
    """What a run of ``entry`` says: its line, or the segments of its script that a run plays."""
    if entry.say:
        return [entry.say]
    script = load_library(cfg).get(entry.script)
    if script is None:
        raise ValueError(f"no script {entry.script!r}")
    segments = script.segments[: entry.segments or len(script.segments)]
    return [script.render(s.id) for s in segments]


def simulate(hours: float, schedule: str) -> dict[str, Any]:
    """Drive ``hours`` of virtual time through the real program, clock, track, scheduler and chat log."""
    with tempfile.TemporaryDirectory(prefix="soak-sim-") as tmp:
        return asyncio.run(_simulate(hours, schedule, Path(tmp)))


async def _simulate(hours: float, schedule: str, work: Path) -> dict[str, Any]:
    cfg = sim_config(work, schedule)
    timing = Timing(cfg.program.fps, cfg.program.sample_rate)
    spt = timing.samples_per_tick
    n_ticks = timing.ticks(hours * 3600)
    from broadcaster.show.schedule import zone  # noqa: PLC0415

    start = datetime(*START, tzinfo=zone(cfg.show.schedule_timezone))
    FakeDatetime.virtual = start
    clips = {i: await synthesise(cfg, entry_texts(cfg, e)) for i, e in enumerate(cfg.schedule)}
    reply = await synthesise(cfg, [REPLY])
    store = Store(cfg.resolve(cfg.store.path))
    rules = TextRules(block_rules(cfg.chat.block), cfg.chat.block.links, [cfg.persona.name])
    desk = ChatDesk(cfg.chat, [], store, rules)

    async def nowhere(events: Any) -> None:
        return None

    feed = JsonFeed(JsonFeedConfig(url="ws://relay", preset="douyin_barrage_grab"), nowhere)
    speech = SpeechTrack(timing.sample_rate, spt, max_hold_ticks=timing.ticks(cfg.face.hold_ms / 1000))
    fired: dict[str, int] = {e.label: 0 for e in cfg.schedule}
    holder: list[Simulation] = []

    def fire(entry: ScheduleEntry) -> None:
        fired[entry.label] += 1
        holder[0].fire(entry)

    with contextlib.ExitStack() as patches:
        for module in ("apscheduler.schedulers.base", "apscheduler.executors.base"):
            patches.enter_context(mock.patch(f"{module}.datetime", FakeDatetime))
        scheduler = Scheduler(
            cfg.schedule, fire, timezone=cfg.show.schedule_timezone, now=lambda: FakeDatetime.virtual
        )
        scheduler.start()
        sim = Simulation(cfg, asyncio.get_running_loop(), speech, scheduler, desk, feed, start, clips, reply)
        holder.append(sim)
        clock = ProgramClock(timing, ShowWall(sim))
        video, audio = VideoCounter(), AudioCounter()
        encoder = TickEncoder(timing, video, audio, QUEUE_TICKS, "sim-encoder")
        ledger = TickLedger(encoder, spt)
        program = Program(
            clock,
            StillPicture(PICTURE),
            speech,
            [ledger],
            lead_s=cfg.program.lead_ms / 1000,
            max_ticks=n_ticks,
        )
        gc.collect()
        gc.freeze()
        wall, cpu = time.perf_counter(), time.process_time()
        encoder.start()
        program.start()
        while not await asyncio.to_thread(program.join, 1.0):
            pass
        await asyncio.to_thread(encoder.close, 600.0)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        end = start + timedelta(seconds=clock.wall.now())
        await scheduler.stop()
    await desk.settle()
    rows = store.read_now(lambda c: c.execute("SELECT COUNT(*) FROM chat_events").fetchone()[0])
    store.close()
    db_mb = await asyncio.to_thread(lambda: sum(p.stat().st_size for p in work.glob("sim.sqlite3*")) / 2**20)
    process = psutil.Process()
    sim.samples.append(
        Sample(
            clock.wall.now(),
            process.memory_info().rss / 2**20,
            0.0,
            process.num_fds(),
            process.num_threads(),
            None,
            None,
            None,
        )
    )
    expected = {e.label: expected_runs(e, start, end) for e in cfg.schedule}
    queued = sum(u.samples for u in sim.utterances)
    misplaced = sum(
        u.start_tick is not None and (u.start_sample != u.start_tick * spt) for u in sim.utterances
    )
    first, last = sim.samples[0], sim.samples[-1]
    return {
        "mode": "simulated",
        "simulated_hours": hours,
        "ticks": program.stats.ticks,
        "ticks_expected": n_ticks,
        "av_offset_samples": audio.end - n_ticks * spt,
        "av_drift_samples": ledger.samples - program.stats.ticks * spt,
        "encoder_audio_samples": audio.samples,
        "encoder_audio_gaps": audio.gaps,
        "encoder_audio_first_sample": audio.first,
        "encoder_video_frames": video.frames,
        "encoder_video_out_of_order": video.out_of_order,
        "encoder_dropped": encoder.stats.dropped + ledger.refused,
        "bad_ticks": ledger.bad_ticks,
        "lateness_p99_ms": program.stats.lateness.percentile(99),  # on a virtual wall: -lead, always
        "reconnects": None,  # the simulation has no outputs (the real mode counts them)
        "clock_sample_error": float(clock.sample_at(clock.due(n_ticks)) - n_ticks * spt),
        "resyncs": clock.resyncs,
        "speaking_ticks": ledger.speaking_ticks,
        "utterances": len(sim.utterances),
        "utterances_cut": sum(u.cut for u in sim.utterances),
        "utterances_misplaced": misplaced,
        "speech_samples_lost": queued - speech.samples_spoken - speech.pending_samples,
        "speech_late_samples": speech.late_samples,
        "scheduled_fired": sum(fired.values()),
        "scheduled_expected": sum(expected.values()),
        "scheduled_by_entry": {k: [fired[k], expected[k]] for k in fired},
        "scheduled_missed": scheduler.stats.missed,
        "scheduled_failed": scheduler.stats.failed,
        "comments": sim.comments,
        "chat_rows": rows,
        "chat_db_mb": round(db_mb, 2),
        "rss_start_mb": round(first.rss_mb, 1),
        "rss_end_mb": round(last.rss_mb, 1),
        "rss_growth_mb_per_h": growth_per_hour(sim.samples),
        "hourly_rss_mb": [round(s.rss_mb, 1) for s in sim.samples],
        "fds_start": first.fds,
        "fds_end": last.fds,
        "threads_start": first.threads,
        "threads_end": last.threads,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "speedup": round(hours * 3600 / wall, 1),
        "show_side_s": round(sim.hook_s, 1),
    }


def report_simulation(r: dict[str, Any]) -> None:
    """The human-readable lines of a simulated run."""
    print(f"soak (simulated): {r['simulated_hours']} h of virtual time in {r['wall_s']} s ({r['speedup']}x)")
    print(
        f"  ticks {r['ticks']} of {r['ticks_expected']}; bad ticks {r['bad_ticks']}; encoder: "
        f"{r['encoder_video_frames']} frames, {r['encoder_audio_samples']} samples, "
        f"{r['encoder_audio_gaps']} gaps, {r['encoder_dropped']} dropped"
    )
    print(
        f"  A/V at the end {r['av_offset_samples']} samples; tick audio drift {r['av_drift_samples']}; "
        f"clock sample error {r['clock_sample_error']:.2e}; resyncs {r['resyncs']}"
    )
    print(
        f"  speech: {r['utterances']} utterances, {r['utterances_cut']} cut, {r['utterances_misplaced']} "
        f"off a tick boundary, {r['speech_samples_lost']} samples lost, {r['speaking_ticks']} speaking ticks"
    )
    print(
        f"  schedule fired {r['scheduled_fired']} of {r['scheduled_expected']} expected "
        f"{r['scheduled_by_entry']}, missed {r['scheduled_missed']}, failed {r['scheduled_failed']}"
    )
    print(f"  chat: {r['comments']} comments, {r['chat_rows']} rows, store {r['chat_db_mb']} MB")
    print(
        f"  RSS {r['rss_start_mb']} -> {r['rss_end_mb']} MB ({r['rss_growth_mb_per_h']} MB per simulated "
        f"hour, second half); fds {r['fds_start']} -> {r['fds_end']}; threads {r['threads_start']} -> "
        f"{r['threads_end']}"
    )

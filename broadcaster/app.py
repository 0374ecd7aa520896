"""Wiring and lifecycle: build the program and its outputs from the config, run, shut down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broadcaster.config import Config, ConfigError, OutputConfig, RecordOutputConfig, RtmpOutputConfig
from broadcaster.control.status import StatusReporter
from broadcaster.face.avatar import load_avatar
from broadcaster.face.compositor import Compositor, make_background
from broadcaster.face.lipsync import create_lipsync
from broadcaster.show.safety import RuleError
from broadcaster.show.show import Show
from broadcaster.store import Store, StoreError
from broadcaster.stream.clock import ProgramClock, Timing
from broadcaster.stream.encoder import AAC_FRAME, Encoder
from broadcaster.stream.memory import keep_frame_memory
from broadcaster.stream.outputs.base import PacketOutput
from broadcaster.stream.outputs.recorder import Recorder
from broadcaster.stream.outputs.rtmp import RtmpOutput
from broadcaster.stream.program import Program
from broadcaster.voice.pcm import read_audio
from broadcaster.voice.speech_track import SpeechTrack
from danmaku.desk import ChatDesk
from danmaku.triage.text import TextRules, block_rules

log = logging.getLogger("broadcaster")


def output_from_target(target: str) -> OutputConfig:
    """An output from a ``--output`` argument, chosen by its form (URL scheme or file suffix)."""
    lowered = target.lower()
    if lowered.startswith(("rtmp://", "rtmps://")):
        return RtmpOutputConfig(type="rtmp", url=target)
    if lowered.startswith(("whip+http://", "whip+https://")):
        raise ConfigError(f"--output {target}: WHIP outputs are not available in this version")
    if Path(target).suffix.lower() in (".flv", ".mp4", ".mkv"):
        return RecordOutputConfig(type="record", path=str(Path(target).resolve()))
    raise ConfigError(
        f"--output {target!r}: expected an rtmp:// or rtmps:// URL or a file ending .flv, .mp4 or .mkv"
    )


@dataclass
class RunOptions:
    """What the command line adds to the config for one run."""

    seconds: float | None = None
    outputs: list[str] = field(default_factory=list)
    play_wav: list[Path] = field(default_factory=list)
    say: list[str] = field(default_factory=list)
    chat: list[tuple[str, str]] = field(default_factory=list)


def chat_from_arg(item: str) -> tuple[str, str]:
    """A comment from ``--chat "NAME: TEXT"``: the name and the text."""
    name, sep, text = item.partition(":")
    if not sep or not name.strip() or not text.strip():
        raise ConfigError(f"--chat {item!r}: expected NAME: TEXT")
    return name.strip(), text.strip()


def build_desk(cfg: Config, show: Show, store: Store) -> ChatDesk:
    """The chat desk from ``[chat]`` and ``[[feeds]]``.

    A message naming the host or a product ranks as a question.
    """
    try:
        files = [cfg.resolve(p) for p in cfg.chat.block.lists]
        mentions = [cfg.persona.name, *(name for product in show.catalog for name in product.names)]
        rules = TextRules(block_rules(cfg.chat.block, files), cfg.chat.block.links, mentions)
    except RuleError as exc:
        raise ConfigError(f"chat.block.lists: {exc}") from exc
    return ChatDesk(cfg.chat, cfg.feeds, store, rules)


class Broadcaster:
    """One live room's process: the program, the encoder and the outputs, and their order of shutdown."""

    def __init__(self, cfg: Config, options: RunOptions) -> None:
        keep_frame_memory()
        self.cfg = cfg
        self.timing = Timing(cfg.program.fps, cfg.program.sample_rate)
        self.clock = ProgramClock(self.timing)
        size = cfg.program.size
        background = make_background(size, cfg.program.background, cfg.base_dir)
        root = cfg.resolve(cfg.avatar.dir)
        names = dict.fromkeys([cfg.avatar.name, *cfg.avatar.preload])
        avatars = [load_avatar(root, name) for name in names]
        self.lipsync = create_lipsync(cfg, self.timing)
        self.compositor = Compositor(size, background, avatars, cfg.avatar, self.lipsync)
        self.speech = SpeechTrack(
            self.timing.sample_rate,
            self.timing.samples_per_tick,
            max_hold_ticks=self.timing.ticks(cfg.face.hold_ms / 1000),
            prepare=self.lipsync.prepare,
        )
        self.show = Show(cfg, self.speech)
        try:
            self.store = Store(cfg.resolve(cfg.store.path), cfg.store.synchronous)
        except StoreError as exc:
            raise ConfigError(f"store.path = {str(cfg.store.path)!r}: {exc}") from exc
        try:
            self.desk = build_desk(cfg, self.show, self.store)
        except BaseException:
            self.store.close()
            raise
        self.options = options
        for wav in options.play_wav:
            pcm = read_audio(wav, self.timing.sample_rate)
            self.speech.append(pcm, self.timing.sample_rate)
            log.info("queued %s (%.2f s)", wav, len(pcm) / self.timing.sample_rate)
        configs = [*cfg.outputs, *(output_from_target(t) for t in options.outputs)]
        self.encoder: Encoder | None = None
        self.outputs: list[PacketOutput] = []
        if configs:
            lead_ticks = self.timing.ticks(cfg.program.lead_ms / 1000)
            self.encoder = Encoder(self.timing, size, cfg.encoder, queue_ticks=lead_ticks + self.timing.fps)
            self.outputs = [self._output(c, self.encoder) for c in configs]
            for output in self.outputs:
                self.encoder.add_sink(output)
        else:
            log.warning(
                "no outputs configured: the program runs but goes nowhere (add [[outputs]] or --output)"
            )
        self._finished: asyncio.Event | None = None
        max_ticks = self.timing.ticks(options.seconds) if options.seconds is not None else None
        self.program = Program(
            self.clock,
            self.compositor,
            self.speech,
            [self.encoder] if self.encoder else [],
            lead_s=cfg.program.lead_ms / 1000,
            max_ticks=max_ticks,
            on_finished=self._program_finished,
        )
        self.status = StatusReporter(
            self.program, self.encoder, self.outputs, self.lipsync, self.speech, self._show_stats
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        # everything built so far lives as long as the process: keep it out of the collector's scans,
        # which otherwise grow with it and cost the chat path a few percent
        gc.collect()
        gc.freeze()

    def _packets(self, seconds: float) -> int:
        return int(seconds * (self.timing.fps + self.timing.sample_rate / AAC_FRAME)) + 1

    def _output(self, c: OutputConfig, encoder: Encoder) -> PacketOutput:
        if isinstance(c, RtmpOutputConfig):
            return RtmpOutput(
                c, encoder.templates, self.clock, encoder.request_keyframe, self._packets(c.queue_seconds)
            )
        return Recorder(
            self.cfg.resolve(c.path),
            encoder.templates,
            self.timing,
            c.segment_seconds,
            self._packets(c.queue_seconds),
        )

    def _show_stats(self) -> dict[str, Any]:
        return {**self.show.stats(), "chat": self.desk.stats()}

    def _program_finished(self) -> None:
        if self._loop is not None and self._finished is not None:
            self._loop.call_soon_threadsafe(self._finished.set)

    def stop(self) -> None:
        """Ask the run to end (signal handlers, tests)."""
        self._program_finished()

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.program.status_interval_s)
            log.info("%s", self.status.line())

    async def run(self) -> dict[str, Any]:
        """Run until ``--for`` elapses or a signal arrives; returns the run's summary."""
        self._loop = asyncio.get_running_loop()
        self._finished = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.add_signal_handler(sig, self.stop)
        for output in self.outputs:
            output.start()
        if self.encoder is not None:
            self.encoder.start()
        self.program.start()
        log.info(
            "on air: %dx%d at %d fps, %d output(s)",
            *self.cfg.program.size,
            self.timing.fps,
            len(self.outputs),
        )
        await self.desk.start()
        reporter = asyncio.create_task(self._report())
        performing = asyncio.create_task(self._perform())
        try:
            await self._finished.wait()
        finally:
            for task in (reporter, performing):
                task.cancel()
            # whatever a task died of (logged by it), the outputs, the model and the store still close
            await asyncio.gather(reporter, performing, return_exceptions=True)
            await self._shutdown()
        return self.status.summary()

    async def _perform(self) -> None:
        """The ``--say`` lines, then the chat lane: the paced chat candidates, one at a time."""
        warming = None
        if self.cfg.chat.answer and (self.options.chat or any(f.type != "local" for f in self.cfg.feeds)):
            # chat is on its way: have the model ready (loaded, prompt read) before the first comment
            warming = asyncio.create_task(self._warm_llm())
        try:
            await self.show.read(self.options.say)
            for name, text in self.options.chat:
                await self.desk.local_feed().submit(name, text)
        except Exception:
            log.exception("the --say/--chat items stopped; the program goes on")
        try:
            await self._chat_lane()
        finally:
            if warming is not None:
                warming.cancel()
                await asyncio.gather(warming, return_exceptions=True)

    async def _warm_llm(self) -> None:
        try:
            await self.show.start_llm()
        except Exception as exc:
            log.error("the LLM did not start (tried again at the first comment): %s", exc)

    async def _chat_lane(self) -> None:
        while True:
            try:
                candidate = await self.desk.next()
            except Exception:
                log.exception("the chat queue failed; trying again in a second")
                await asyncio.sleep(1.0)
                continue
            try:
                why_not = await self.show.answer(candidate, self.cfg.chat)
            except Exception:
                log.exception("chat %s not said; the program goes on", candidate.kind)
                why_not = "error"
            self.desk.done(candidate, why_not is None, why_not or "")

    async def _shutdown(self) -> None:
        await self.desk.close()
        await self.show.close()
        self.program.stop()
        await asyncio.to_thread(self.program.join, 10.0)
        await asyncio.to_thread(self.lipsync.close)
        if self.encoder is not None:
            await asyncio.to_thread(self.encoder.close, 20.0)
        for output in self.outputs:
            if not await asyncio.to_thread(output.close, 20.0):
                log.warning("%s %s did not finish in time", output.kind, output.name)
        await asyncio.to_thread(self.store.close)

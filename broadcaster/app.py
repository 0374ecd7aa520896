"""Wiring and lifecycle: build the program and its outputs from the config, run, shut down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broadcaster.config import (
    Config,
    ConfigError,
    OutputConfig,
    RtmpOutputConfig,
    output_from_target,
)
from broadcaster.control.hub import EventHub
from broadcaster.control.preview import PreviewSink
from broadcaster.control.server import ControlServer
from broadcaster.control.settings import TokenError, load_token
from broadcaster.control.status import StatusReporter
from broadcaster.face.avatar import AvatarError, load_avatar
from broadcaster.face.backdrop import make_backdrop
from broadcaster.face.compositor import Compositor
from broadcaster.face.lipsync import create_lipsync
from broadcaster.listen.ear import ProgramEar
from broadcaster.listen.echo import EchoGuard
from broadcaster.listen.listener import Listener
from broadcaster.listen.vad import VadError, create_vad
from broadcaster.show.agenda import Agenda
from broadcaster.show.console import Console, Switchboard
from broadcaster.show.director import Director
from broadcaster.show.presynth import chain_speaker, presynthesise
from broadcaster.show.safety import RuleError
from broadcaster.show.schedule import ScheduleEntry, Scheduler
from broadcaster.show.show import Show, load_library
from broadcaster.store import Store, StoreError
from broadcaster.stream.clock import ProgramClock, Timing
from broadcaster.stream.encoder import AAC_FRAME, Encoder
from broadcaster.stream.memory import keep_frame_memory
from broadcaster.stream.outputs.base import Output
from broadcaster.stream.outputs.recorder import Recorder
from broadcaster.stream.outputs.rtmp import RtmpOutput
from broadcaster.stream.outputs.whip import WhipOutput
from broadcaster.stream.program import Program
from broadcaster.stream.rtc.encoder import RtcEncoder
from broadcaster.stream.rtc.runtime import RtcRuntime
from broadcaster.stream.rtc.settings import WhipOutputConfig
from broadcaster.stream.rtc.viewers import Viewers
from broadcaster.voice.pcm import read_audio
from broadcaster.voice.speech_track import SpeechTrack
from danmaku.desk import ChatDesk
from danmaku.events import ChatEvent
from danmaku.triage.text import TextRules, block_rules

log = logging.getLogger("broadcaster")


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


AVATAR_NAME = re.compile(r"\w[\w.-]*")


class Stages(Switchboard):
    """The compositor's avatars, switched by moderators.

    One that was not preloaded is loaded from ``avatar.dir`` when it is asked for (on the caller's
    thread: the console runs this off the event loop). An avatar that cannot be loaded (missing,
    corrupted) is an ``AvatarError``; the one on air stays.
    """

    def __init__(self, compositor: Compositor, cfg: Config | None = None) -> None:
        self.compositor = compositor
        self.cfg = cfg
        self.load_failures = 0
        self.last_error = ""

    def avatars(self) -> list[str]:
        """The preloaded avatars."""
        return sorted(self.compositor.stages)

    def avatar(self) -> str:
        """The avatar on air."""
        return self.compositor.stage.name

    def switch_avatar(self, name: str) -> None:
        """Put ``name`` on air at the next tick, loading it first when it was not preloaded."""
        if name not in self.compositor.stages and self.cfg is not None:
            if not AVATAR_NAME.fullmatch(name):
                raise KeyError(f"no avatar {name!r}: a name is a folder under avatar.dir")
            try:
                avatar = load_avatar(self.cfg.resolve(self.cfg.avatar.dir), name)
                self.compositor.add(avatar, self.cfg.avatar, self.cfg.avatar.chroma)
            except AvatarError as exc:
                self._failed(str(exc))
                raise
            except Exception as exc:  # a corrupted picture, cache or landmark file
                self._failed(f"avatar {name!r} cannot be loaded: {type(exc).__name__}: {exc}")
                raise AvatarError(self.last_error) from exc
        self.compositor.switch(name)

    def stats(self) -> dict[str, Any]:
        """The avatar on air, the loaded ones, and the loads that failed (for /healthz and /metrics)."""
        return {
            "on_air": self.avatar(),
            "loaded": len(self.compositor.stages),
            "load_failures": self.load_failures,
            "last_error": self.last_error,
        }

    def _failed(self, message: str) -> None:
        self.load_failures += 1
        self.last_error = message[:300]
        log.error("%s; %r stays on air", self.last_error, self.avatar())


def failing_component(stats: dict[str, Any]) -> dict[str, Any]:
    """A /healthz component for a service that fails call by call (a TTS engine, the LLM).

    Not ok while its last calls failed, ok again at its first success. It ``degrades`` the show (named
    in /healthz's ``degraded``) without failing it: the show speaks through its fallbacks meanwhile.
    """
    failing = int(stats.get("failing", 0))
    component: dict[str, Any] = {"ok": failing == 0, "state": "failing" if failing else "ok"}
    component["degrades"] = True
    if failing:
        component.update(failing=failing, error=stats.get("last_error", ""))
    return component


class Broadcaster:
    """One live room's process: the program, the encoder and the outputs, and their order of shutdown."""

    def __init__(self, cfg: Config, options: RunOptions) -> None:
        keep_frame_memory()
        self.cfg = cfg
        self.options = options
        configs = [*cfg.outputs, *(output_from_target(t) for t in options.outputs)]
        self.timing = Timing(cfg.program.fps, cfg.program.sample_rate)
        self.clock = ProgramClock(self.timing)
        size = cfg.program.size
        queue_ticks = self.timing.ticks(cfg.program.lead_ms / 1000) + self.timing.fps
        root = cfg.resolve(cfg.avatar.dir)
        names = dict.fromkeys([cfg.avatar.name, *cfg.avatar.preload])
        avatars = [load_avatar(root, name) for name in names]
        self.lipsync = create_lipsync(cfg, self.timing)
        try:
            backdrop = make_backdrop(
                size, cfg.program.background, cfg.base_dir, cfg.program.fps, cfg.program.background_video
            )
            self.compositor = Compositor(
                size,
                backdrop,
                avatars,
                cfg.avatar,
                self.lipsync,
                overlay=cfg.overlay,
                chroma=cfg.avatar.chroma,
                products_dir=cfg.resolve(cfg.show.library) / "products",
                base_dir=cfg.base_dir,
            )
        except ValueError as exc:  # a missing overlay.font, an unreadable background picture or video
            raise ConfigError(str(exc)) from exc
        self.speech = SpeechTrack(
            self.timing.sample_rate,
            self.timing.samples_per_tick,
            max_hold_ticks=self.timing.ticks(cfg.face.hold_ms / 1000),
            prepare=self.lipsync.prepare,
        )
        self.library = load_library(cfg)
        self.show = Show(cfg, self.speech, self.library.catalog)
        self.hub = EventHub()
        self.preview = PreviewSink(self.hub, cfg.control, self.timing.fps) if cfg.control.enabled else None
        # the WebRTC encode: for WHIP pushes and the dashboard's live view; idle while nobody takes it
        self.rtc_encoder: RtcEncoder | None = None
        self.rtc: RtcRuntime | None = None
        self.viewers: Viewers | None = None
        watchable = cfg.control.enabled and cfg.rtc.preview
        if watchable or any(isinstance(c, WhipOutputConfig) for c in configs):
            self.rtc_encoder = RtcEncoder(self.timing, size, cfg.rtc, queue_ticks)
            self.rtc = RtcRuntime(cfg.rtc)
            if watchable:
                self.viewers = Viewers(self.rtc, self.rtc_encoder, self.clock, cfg.rtc.max_viewers)
        try:
            self.store = Store(cfg.resolve(cfg.store.path), cfg.store.synchronous)
        except StoreError as exc:
            raise ConfigError(f"store.path = {str(cfg.store.path)!r}: {exc}") from exc
        try:
            self._build_show(cfg)
        except BaseException:
            self.store.close()
            raise
        for wav in options.play_wav:
            pcm = read_audio(wav, self.timing.sample_rate)
            self.speech.append(pcm, self.timing.sample_rate)
            log.info("queued %s (%.2f s)", wav, len(pcm) / self.timing.sample_rate)
        self.encoder: Encoder | None = None
        if any(not isinstance(c, WhipOutputConfig) for c in configs):
            self.encoder = Encoder(self.timing, size, cfg.encoder, queue_ticks=queue_ticks)
        self.outputs: list[Output] = [self._output(c) for c in configs]
        if not configs:
            log.warning(
                "no outputs configured: the program runs but goes nowhere (add [[outputs]] or --output)"
            )
        self._finished: asyncio.Event | None = None
        max_ticks = self.timing.ticks(options.seconds) if options.seconds is not None else None
        sinks: list[Any] = [
            s for s in (self.encoder, self.rtc_encoder, self.preview, self.ear) if s is not None
        ]
        self.program = Program(
            self.clock,
            self.compositor,
            self.speech,
            sinks,
            lead_s=cfg.program.lead_ms / 1000,
            max_ticks=max_ticks,
            on_finished=self._program_finished,
        )
        self.status = StatusReporter(
            self.program,
            self.encoder,
            self.outputs,
            self.lipsync,
            self.speech,
            self._show_stats,
            rtc_encoder=self.rtc_encoder,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._health_ticks = (0, 0.0)  # the tick count last seen by /healthz, and when it last changed
        # everything built so far lives as long as the process: keep it out of the collector's scans,
        # which otherwise grow with it and cost the chat path a few percent
        gc.collect()
        gc.freeze()

    def _build_show(self, cfg: Config) -> None:
        """The chat desk, the director and its console, the schedule and the control server."""
        self.desk = build_desk(cfg, self.show, self.store)
        self.desk.on_decision = self._triaged
        self.director = Director(
            self.show,
            Agenda(self.store),
            self.hub,
            cfg.show.fillers,
            library=self.library,
            desk=self.desk,
            card=self.compositor,
            resume_after_s=cfg.show.resume_after_s,
            boundary_s=cfg.show.boundary_s,
        )
        self.director.review = cfg.show.review
        self.scheduler = Scheduler(cfg.schedule, self._scheduled, timezone=cfg.show.schedule_timezone)
        personas = {cfg.persona.name: cfg.persona, **cfg.personas}
        self.stages = Stages(self.compositor, cfg)
        self.console = Console(self.director, personas, self.stages, self.scheduler)
        self.listener: Listener | None = None
        self.ear: ProgramEar | None = None
        if cfg.voice_in.enabled and cfg.control.enabled:  # the microphone comes in through the console
            try:
                create_vad(cfg.voice_in.vad)  # checked now, not when a console first speaks
            except VadError as exc:
                raise ConfigError(f"voice_in.vad = {cfg.voice_in.vad!r}: {exc}") from exc
            echo = EchoGuard(cfg.voice_in.barge_in, self.timing.sample_rate)
            self.ear = ProgramEar(echo, self.timing.samples_per_tick)
            self.listener = Listener(
                cfg.voice_in.resolved(cfg.resolve),
                self.clock,
                self.speech,
                self.director,
                self.desk,
                echo,
                subtitle=self.compositor.captions.post,
            )
            self.console.listen(self.listener)
        self.control: ControlServer | None = None
        if cfg.control.enabled:
            try:
                token = load_token(cfg.control, cfg.base_dir)
            except TokenError as exc:
                raise ConfigError(f"control: {exc}") from exc
            self.control = ControlServer(
                cfg.control,
                self.console,
                self.hub,
                token,
                health=self._health,
                stats=self._figures,
                preview=self.preview,
                viewers=self.viewers,
                listener=self.listener,
            )

    def _triaged(self, seq: int, event: ChatEvent, decision: str, reason: str) -> None:
        """A chat decision: kept for consoles that connect later, and sent to those watching."""
        entry = {
            "seq": seq,
            "event": {
                "platform": event.platform,
                "kind": event.kind,
                "user": {"name": event.user.name},
                "text": event.text[:200],
            },
            "verdict": {"decision": decision, "reason": reason},
        }
        self.console.recent_chat.append(entry)
        if self.hub.wants("triage"):
            self.hub.publish("triage", entry)

    async def _scheduled(self, entry: ScheduleEntry) -> None:
        source = f"schedule:{entry.label}"
        if any(item.source == source for item in self.director.agenda.items.values()):
            log.info("schedule: %s is still queued or on air from its last run; this run is skipped", source)
            return
        if entry.script:
            await self.console.queue_script(entry.script, entry.segments, source)
        elif entry.say:
            await self.console.announce(entry.say, source)

    def _figures(self) -> dict[str, Any]:
        """What /metrics serves: the run summary with the live lead and encoder queue."""
        out = self.status.summary()
        out["lead_ms"] = round(self.program.stats.lead_s * 1000, 1)
        if self.encoder is not None:
            out["encoder"]["queued"] = self.encoder.queued
        return out

    def _health(self) -> dict[str, dict[str, Any]]:
        """Each component's state for /healthz."""
        ticks = self.program.stats.ticks
        now = asyncio.get_running_loop().time()
        if ticks != self._health_ticks[0]:
            self._health_ticks = (ticks, now)
        moving = now - self._health_ticks[1] < 1.0  # a tick within the last second, however often polled
        out: dict[str, dict[str, Any]] = {
            "program": {"ok": moving, "state": "ticking" if moving else "stalled", "ticks": ticks},
            "director": {
                "ok": all(not t.done() for t in self.director.tasks),
                "state": "on air" if self.director.stack else "idle",
                **self.director.stats(),
            },
            "store": {
                "ok": True,
                "state": "open",
                "commits": self.store.commits,
                "failures": self.store.failures,
            },
        }
        if self.encoder is not None:
            out["encoder"] = {"ok": True, "state": "encoding", "dropped": self.encoder.stats.dropped}
        for output in self.outputs:
            state = output.stats.state
            out[f"output:{output.name}"] = {
                "ok": state == "live" or state.startswith("recording"),
                "state": state,
            }
        for name, feed in self.desk.stats()["feeds"].items():
            out[f"feed:{name}"] = {"ok": feed["state"] not in ("backoff", "closed"), "state": feed["state"]}
        out["avatar"] = {"ok": True, "state": "on air", **self.stages.stats()}
        voice = self.show.chain.stats()
        for name, engine in voice["engines"].items():
            out[f"tts:{name}"] = failing_component(engine)
        if self.show.host.llm is not None:
            out["llm"] = failing_component(self.show.host.llm.stats())
        return out

    def _packets(self, seconds: float) -> int:
        return int(seconds * (self.timing.fps + self.timing.sample_rate / AAC_FRAME)) + 1

    def _output(self, c: OutputConfig) -> Output:
        if isinstance(c, WhipOutputConfig):
            assert self.rtc is not None and self.rtc_encoder is not None
            return WhipOutput(c, self.rtc, self.rtc_encoder, self.clock)
        encoder = self.encoder
        assert encoder is not None
        output: RtmpOutput | Recorder
        if isinstance(c, RtmpOutputConfig):
            output = RtmpOutput(
                c, encoder.templates, self.clock, encoder.request_keyframe, self._packets(c.queue_seconds)
            )
        else:
            output = Recorder(
                self.cfg.resolve(c.path),
                encoder.templates,
                self.timing,
                c.segment_seconds,
                self._packets(c.queue_seconds),
                min_free_bytes=c.min_free_mb << 20,
            )
        encoder.add_sink(output)
        return output

    def _show_stats(self) -> dict[str, Any]:
        out = {**self.show.stats(), "chat": self.desk.stats(), "director": self.director.stats()}
        out["avatar"] = self.stages.stats()
        if self.listener is not None:
            out["voice_in"] = self.listener.stats.as_dict()
        return out

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
        self.hub.bind(self._loop)
        self._health_ticks = (0, self._loop.time())
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.add_signal_handler(sig, self.stop)
        if self.rtc is not None and self.rtc_encoder is not None:
            self.rtc.start()
            self.rtc_encoder.start()
        for output in self.outputs:
            output.start()
        if self.encoder is not None:
            self.encoder.start()
        if self.preview is not None:
            self.preview.start()
        self.program.start()
        log.info(
            "on air: %dx%d at %d fps, %d output(s)",
            *self.cfg.program.size,
            self.timing.fps,
            len(self.outputs),
        )
        tasks = [asyncio.create_task(self._report())]
        try:
            await self.desk.start()
            await self.director.start()
            if self.listener is not None:
                self.listener.start()
            self.scheduler.start()
            if self.control is not None:
                try:
                    await self.control.start()
                except OSError as exc:  # the port is taken: the show goes on without its console
                    log.error(
                        "control: cannot listen on %s:%d (%s); the show runs without its console",
                        self.cfg.control.host,
                        self.cfg.control.port,
                        exc,
                    )
                    self.control = None
            tasks.append(asyncio.create_task(self._perform()))
            tasks.append(asyncio.create_task(self._library()))
            await self._finished.wait()
        finally:
            for task in tasks:
                task.cancel()
            # whatever a task died of (logged by it), the outputs, the model and the store still close
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._shutdown()
        return self.status.summary()

    async def _library(self) -> None:
        """Pre-synthesise the scripts into the audio cache, then follow edits of the library."""
        speak = chain_speaker(self.show.chain)

        def sentences(text: str) -> list[str]:
            return self.show.host.sentences(text, "script")

        async def changed(ids: set[str], removed: set[str]) -> None:
            self.show.use_catalog(self.library.catalog)
            if ids:
                await presynthesise(self.library, sentences, speak, script_ids=ids)

        if self.cfg.voice.cache.enabled:
            try:
                await presynthesise(self.library, sentences, speak)
            except Exception:
                log.exception("scripts: pre-synthesis stopped; lines are synthesised when they air")
        await self.library.watch(changed, interval_s=self.cfg.show.reload_interval_s)

    async def _perform(self) -> None:
        """Queue the ``--say`` lines and post the ``--chat`` comments; warm the LLM when chat is coming."""
        warming = None
        if self.cfg.chat.answer and (self.options.chat or any(f.type != "local" for f in self.cfg.feeds)):
            # chat is on its way: have the model ready (loaded, prompt read) before the first comment
            warming = asyncio.create_task(self._warm_llm())
        try:
            for line in self.options.say:
                await self.console.say(line, "next")
            for name, text in self.options.chat:
                await self.desk.local_feed().submit(name, text)
        except Exception:
            log.exception("the --say/--chat items stopped; the program goes on")
        if warming is not None:
            await asyncio.gather(warming, return_exceptions=True)

    async def _warm_llm(self) -> None:
        try:
            await self.show.start_llm()
        except Exception as exc:
            log.error("the LLM did not start (tried again at the first comment): %s", exc)

    async def _shutdown(self) -> None:
        if self.control is not None:
            await self.control.close()
        await self.scheduler.stop()
        if self.listener is not None:
            await self.listener.close()
        await self.director.close()
        await self.desk.close()
        await self.show.close()
        self.hub.close()
        self.program.stop()
        await asyncio.to_thread(self.program.join, 10.0)
        await asyncio.to_thread(self.lipsync.close)
        if self.preview is not None:
            await asyncio.to_thread(self.preview.close)
        for encoder in (self.encoder, self.rtc_encoder):
            if encoder is not None:
                await asyncio.to_thread(encoder.close, 20.0)
        # all at once: one output slow to finish (a server in backoff) does not hold up the others
        finished = await asyncio.gather(*(asyncio.to_thread(o.close, 20.0) for o in self.outputs))
        for output, done in zip(self.outputs, finished, strict=True):
            if not done:
                log.warning("%s %s did not finish in time", output.kind, output.name)
        if self.rtc is not None:
            if self.viewers is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.viewers.close(), 5.0)
            await asyncio.to_thread(self.rtc.close, 5.0)
        await asyncio.to_thread(self.store.close)

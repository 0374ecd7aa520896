"""The listener: one console's microphone, in the mode the moderators chose, turned into the show.

- **pass-through**: each stretch of the moderator's speech goes on air as the avatar's voice at a
  fixed delay (``PassThrough``), holding the air as a moderator item (what was on air is cut; a script
  resumes after ``show.resume_after_s``); what was said is recognised and logged.
- **conversation**: each turn the person speaks is recognised (``voice_in.asr``); its final text is
  logged in the chat log as the host's words and answered through the reply path (LLM, safety, TTS)
  before anything queued. Speaking over the avatar stops it (barge-in), unless what the microphone
  hears is the program's own sound coming back from the room (``EchoGuard``).
- **off**: the microphone stays connected and nothing is done with it.

Everything here runs on the event loop, per block of audio as it arrives; recognition runs in the
engine's own worker. One microphone at a time: a second console is told the first one has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson

from broadcaster.listen.asr import AsrEngine, AsrError, AsrStream, Transcript, create_asr
from broadcaster.listen.echo import EchoGuard
from broadcaster.listen.mic import ASR_RATE, MicStream
from broadcaster.listen.passthrough import LiveVoice, PassThrough
from broadcaster.listen.settings import MicMode, VoiceInConfig
from broadcaster.listen.turns import SpeechEnded, SpeechStarted, TurnDetector
from broadcaster.listen.vad import create_vad
from broadcaster.stream.clock import ProgramClock
from broadcaster.voice.speech_track import SpeechTrack
from danmaku.events import HOST_FEED, HOST_PLATFORM, ChatEvent, User, now_ms
from danmaku.triage.candidate import Candidate

log = logging.getLogger(__name__)

Send = Callable[[str, dict[str, Any]], None]  # an event to the console whose microphone it is
ECHO_WINDOW_S = 0.5
KEPT_TURNS = 200
DETACH_WAIT_S = 10.0
RECOGNISE_TIMEOUT_S = 15.0  # a recogniser that hangs does not hold the director (or the turn) longer


class Stage(Protocol):
    """What the listener asks of the director."""

    def speaking(self) -> bool:
        """Whether the avatar is saying something."""
        ...

    def barge_in(self) -> bool:
        """Stop the avatar (the person started speaking); True if something was cut."""
        ...

    def air_voice(self, voice: LiveVoice) -> None:
        """Put the moderator's live voice on air now."""
        ...

    def voice_said(self, voice: LiveVoice, text: str) -> None:
        """What the live voice said, once recognised."""
        ...

    def answer_host(self, candidate: Candidate) -> None:
        """Answer what the host said, first."""
        ...

    def listening(self, on: bool) -> None:
        """The person is speaking (start nothing new on air) or has stopped."""
        ...


class HostLog(Protocol):
    """Where the host's words are logged (the chat desk)."""

    async def accept_host(self, event: ChatEvent, answer: bool, priority: int = 100) -> Candidate | None:
        """Log the event; the candidate to answer when ``answer``."""
        ...


class MicBusy(Exception):
    """Another console's microphone is live."""


@dataclass
class TurnTiming:
    """One turn's moments (monotonic seconds): for the voice-turn benchmark and the status line."""

    started: float  # the person began speaking (the first voiced sample's arrival)
    detected: float  # the VAD confirmed it
    ended: float | None = None  # the last voiced sample arrived
    end_detected: float | None = None  # the VAD called the end of the turn
    final: float | None = None  # the recogniser's final text
    text: str = ""
    barge_in: bool = False
    cut_tick: int | None = None  # the first tick the barge-in silenced
    echo: bool = False
    candidate: Candidate | None = None


@dataclass
class ListenStats:
    """Counters for the status line and /metrics."""

    blocks: int = 0
    seconds: float = 0.0
    turns: int = 0
    barge_ins: int = 0
    echo_rejected: int = 0
    asr_errors: int = 0
    empty_turns: int = 0
    voice_stretches: int = 0
    bad_blocks: int = 0

    def as_dict(self) -> dict[str, Any]:
        """As a plain dict."""
        return dict(self.__dict__)


@dataclass(eq=False)
class MicLink:
    """A console's microphone while it is attached."""

    rate: int
    send: Send
    stream: MicStream
    detector: TurnDetector
    passthrough: PassThrough
    turn: TurnTiming | None = None
    asr: AsrStream | None = None
    voice: LiveVoice | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class Listener:
    """Owns the mode, the recogniser and the one microphone attached."""

    def __init__(
        self,
        cfg: VoiceInConfig,
        clock: ProgramClock,
        track: SpeechTrack,
        stage: Stage,
        host_log: HostLog,
        echo: EchoGuard,
        subtitle: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.track = track
        self.stage = stage
        self.host_log = host_log
        self.echo = echo
        self.subtitle = subtitle if cfg.subtitles else None
        self.mode: MicMode = cfg.mode
        self.asr: AsrEngine | None = None
        self.asr_error = ""
        self.link: MicLink | None = None
        self.stats = ListenStats()
        self.turns: deque[TurnTiming] = deque(maxlen=KEPT_TURNS)
        self.on_mode: Callable[[MicMode, bool], None] | None = None  # told mode and mic changes
        self._ids = itertools.count(1)
        self._opening: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the recogniser in the background (a model may take seconds to load)."""
        self._opening = asyncio.create_task(self._open(), name="asr-open")

    async def _open(self) -> None:
        engine = create_asr(self.cfg.asr)
        try:
            await engine.open()
        except AsrError as exc:
            self.asr_error = str(exc)
            log.error("voice in: speech recognition is unavailable: %s", exc)
            await engine.close()
            return
        except BaseException:  # cancelled by ``close`` (or a bug): the half-open engine is closed too
            await engine.close()
            raise
        self.asr = engine
        log.info("voice in: speech recognition ready (%s)", self.cfg.asr.engine)

    async def close(self) -> None:
        """Let the microphone go and close the recogniser."""
        if self._opening is not None:
            self._opening.cancel()
            await asyncio.gather(self._opening, return_exceptions=True)
        if self.link is not None:
            await self.detach(self.link)
        if self.asr is not None:
            await self.asr.close()
            self.asr = None

    # -- the microphone ----------------------------------------------------------------------------

    def attach(self, rate: int, send: Send) -> MicLink:
        """A console's microphone at ``rate``; raises MicBusy while another one is live."""
        if self.link is not None:
            raise MicBusy("another console's microphone is live; it has to stop first")
        delay_s = self.cfg.passthrough.delay_ms / 1000
        stream = MicStream(rate, self.clock, delay_s)
        detector = TurnDetector(self.cfg.turns, create_vad(self.cfg.vad))
        self.link = MicLink(rate, send, stream, detector, PassThrough(self.track, stream))
        log.info("voice in: a console's microphone is live (%d Hz, mode %s)", rate, self.mode)
        self._changed()
        return self.link

    async def detach(self, link: MicLink) -> None:
        """The console's microphone went away: what it was saying ends here, and is still recognised.

        The turns already ended get up to ``DETACH_WAIT_S`` to be recognised, logged and handed on.
        """
        if self.link is not link:
            return
        self._end_turn(link, None, recognise=True)
        self.link = None
        self.stage.listening(False)
        if link.tasks:
            await asyncio.wait(link.tasks, timeout=DETACH_WAIT_S)
        for task in list(link.tasks):
            task.cancel()
        await asyncio.gather(*link.tasks, return_exceptions=True)
        log.info("voice in: the microphone went away after %.0f s", link.stream.received / link.rate)
        self._changed()

    def stalled(self, link: MicLink) -> None:
        """The console stopped sending audio without going: what it was saying ends (and is heard)."""
        if link is self.link and link.turn is not None:
            log.warning("voice in: the microphone went quiet mid-turn (no audio for a while); the turn ends")
            self._end_turn(link, None, recognise=True)

    def set_mode(self, mode: MicMode) -> None:
        """Switch mode live: a turn or a stretch in progress ends where it is."""
        if mode == self.mode:
            return
        if self.link is not None:
            self._end_turn(self.link, None)
        self.mode = mode
        log.info("voice in: mode %s", mode)
        self._changed()

    def _changed(self) -> None:
        if self.link is not None:
            self.link.send("mic", self.public())
        if self.on_mode is not None:
            self.on_mode(self.mode, self.link is not None)

    def public(self) -> dict[str, Any]:
        """The microphone's state as consoles see it."""
        return {
            "state": "live" if self.link is not None else "off",
            "mode": self.mode,
            "mic": self.link is not None,
            "delay_ms": self.cfg.passthrough.delay_ms,
            "rate": self.link.rate if self.link is not None else None,
            "asr": self.cfg.asr.engine if self.asr is not None else None,
            "asr_error": self.asr_error or None,
        }

    def audio(self, link: MicLink, pcm: np.ndarray, wall: float | None = None) -> None:
        """One block from the microphone (int16 mono at ``link.rate``), as it arrived."""
        if link is not self.link:
            return
        self.stats.blocks += 1
        self.stats.seconds += len(pcm) / link.rate
        at16 = link.stream.push(pcm, time.monotonic() if wall is None else wall)
        if link.asr is not None and len(at16):  # the open turn hears this block (its end may be in it)
            link.asr.feed(at16)
        events = link.detector.push(at16)  # always: its positions are the mic stream's
        if self.mode == "off":
            return
        for event in events:
            if isinstance(event, SpeechStarted):
                self._begin_turn(link, event)  # the recogniser gets this block with the pre-roll
            elif isinstance(event, SpeechEnded):
                self._end_turn(link, event)
        link.passthrough.pump()

    # -- turns -------------------------------------------------------------------------------------

    def _program_rate(self, at16: int) -> int:
        return at16 * self.clock.timing.sample_rate // ASR_RATE

    def _arrived_at(self, link: MicLink, at16: int) -> int:
        """The program sample due on air when mic sample ``at16`` (16 kHz) arrived."""
        timeline = link.stream.timeline
        delay = round(timeline.delay_s * link.stream.program_rate)
        return timeline.program_at(self._program_rate(at16)) - delay

    def _wall_of(self, link: MicLink, at16: int) -> float:
        """When mic sample ``at16`` (16 kHz) arrived, from the timeline (monotonic seconds)."""
        return self.clock.wall_at(self._arrived_at(link, at16))

    def _is_echo(self, link: MicLink) -> bool:
        """Whether the last half second the microphone heard (a turn's start) is the program's sound."""
        if not self.cfg.barge_in.echo_guard:
            return False
        end = self._arrived_at(link, link.detector.position)
        if not (self.stage.speaking() or self.echo.speaking(end)):  # the room may still play its tail
            return False
        window = link.detector.recent(round(ECHO_WINDOW_S * ASR_RATE))
        return self.echo.is_echo(window, end, at_onset=True)

    def _begin_turn(self, link: MicLink, event: SpeechStarted) -> None:
        self._end_turn(link, None)
        turn = TurnTiming(self._wall_of(link, event.at), time.monotonic())
        if self._is_echo(link):
            turn.echo = True
            self.stats.echo_rejected += 1
            self.turns.append(turn)
            link.turn = turn  # followed to its end, and ignored
            log.info("voice in: what the microphone hears is the program's own sound; not a turn")
            return
        self._open_turn(link, event.at, turn)

    def _open_turn(self, link: MicLink, at: int, turn: TurnTiming) -> None:
        """A turn the person speaks, from mic sample ``at`` (16 kHz)."""
        self.turns.append(turn)
        self.stats.turns += 1
        link.turn = turn
        link.send("speech", {"speaking": True})
        if self.mode == "passthrough":
            preroll = self._program_rate(round(self.cfg.turns.preroll_ms * ASR_RATE / 1000))
            voice = link.passthrough.begin(self._program_rate(at), preroll, f"voice-{next(self._ids)}")
            link.voice = voice
            self.stats.voice_stretches += 1
            self.stage.air_voice(voice)  # cuts the track: the stretch's pieces are queued after it
            link.passthrough.pump()
        else:
            self.stage.listening(True)
        if self.mode == "conversation" and self.cfg.barge_in.enabled and self.stage.barge_in():
            turn.barge_in = True
            turn.cut_tick = self.track.next_tick
            self.stats.barge_ins += 1
            link.send("barge_in", {})
        if self.asr is not None:
            link.asr = self.asr.stream(lambda t: self._partial(link, t))
            link.asr.feed(link.detector.preroll(at))
        elif self.mode == "conversation":
            link.send(
                "error", {"code": "asr", "message": self.asr_error or "speech recognition is not ready"}
            )

    def _end_turn(self, link: MicLink, event: SpeechEnded | None, recognise: bool = False) -> None:
        """The turn ends; ``event`` None: cut short (a mode change), or ``recognise`` what was said.

        A microphone that went away or went quiet still has its last words recognised.
        """
        turn, link.turn = link.turn, None
        if turn is None:
            return
        if event is not None:
            turn.ended = self._wall_of(link, event.at)
            turn.end_detected = time.monotonic()
        if turn.echo:
            return
        link.send("speech", {"speaking": False})
        voice, link.voice = link.voice, None
        if voice is not None:
            if event is not None:
                link.passthrough.end(self._program_rate(event.at))
            else:
                link.passthrough.close()
        stream, link.asr = link.asr, None
        if stream is None or (event is None and not recognise):
            self.stage.listening(False)
        if stream is None:
            return
        if event is None and not recognise:
            task = asyncio.create_task(stream.cancel(), name="asr-cancel")
        else:  # the director keeps still until the host's words are handed over (or come to nothing)
            task = asyncio.create_task(self._recognised(link, stream, turn, voice), name="asr-final")
        link.tasks.add(task)
        task.add_done_callback(link.tasks.discard)

    def _partial(self, link: MicLink, transcript: Transcript) -> None:
        link.send("transcript", {"text": transcript.text, "final": False})
        if self.subtitle is not None and transcript.text.strip():
            self.subtitle(transcript.text)

    async def _recognised(
        self, link: MicLink, stream: AsrStream, turn: TurnTiming, voice: LiveVoice | None
    ) -> None:
        """The turn's final text: shown, logged as the host's words and (conversation) answered."""
        try:
            await self._hand_over(link, stream, turn, voice)
        finally:
            if link.turn is None:  # no newer turn holds the director
                self.stage.listening(False)

    async def _hand_over(
        self, link: MicLink, stream: AsrStream, turn: TurnTiming, voice: LiveVoice | None
    ) -> None:
        try:
            async with asyncio.timeout(RECOGNISE_TIMEOUT_S):
                transcript = await stream.finish()
        except (AsrError, TimeoutError) as exc:
            self.stats.asr_errors += 1
            why = str(exc) or f"no final text in {RECOGNISE_TIMEOUT_S:.0f} s"
            log.error("voice in: the turn was not recognised: %s", why)
            link.send("error", {"code": "asr", "message": why})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await stream.cancel()
            return
        turn.final = time.monotonic()
        text = transcript.text.strip()
        turn.text = text
        link.send("transcript", {"text": text, "final": True})
        if not text:
            self.stats.empty_turns += 1
            return
        if self.subtitle is not None:
            self.subtitle(text)
        if voice is not None:
            self.stage.voice_said(voice, text)
        answer = voice is None and self.mode == "conversation"
        event = ChatEvent(
            id=f"voice-{now_ms()}-{next(self._ids)}",
            platform=HOST_PLATFORM,
            kind="chat",
            ts=now_ms(),
            user=User("host", self.cfg.host_name, ("broadcaster",)),
            text=text,
            raw=orjson.dumps({"engine": transcript.engine, "mode": self.mode}).decode(),
            feed=HOST_FEED,
        )
        candidate = await self.host_log.accept_host(event, answer)
        if candidate is not None:
            turn.candidate = candidate
            self.stage.answer_host(candidate)

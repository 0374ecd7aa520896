"""The director: decides, sentence by sentence, what the host says next.

Four lanes, by priority: moderator lines > chat replies > scripted talks > idle fillers. One item airs
at a time; between two of its sentences (when the earlier one is on air and ``boundary_s`` from its
end, so the next can be synthesised in time) the director looks at the lanes above it and performs
what waits there first, nested, then carries on where it stopped:

- a moderator "say next" waits for the sentence on air (of a reply or a script), then plays;
- a chat reply waits for the script's sentence on air, the script resumes after it;
- a script never cuts off a reply: a reply's own boundaries only yield to moderators;
- a moderator "say now" or "interrupt" cancels everything on air (``cut``): the speech track is cut at
  the next tick, the LLM stream and TTS work are cancelled (invariant 6).

A script's place (round, segment, sentence) is written each time one of its sentences goes on air, so
a restart or an interrupt resumes at that sentence. When nothing is queued for ``fillers.after_s``,
a filler keeps the room alive: the next segment of the scripts in turn, or a filler line. The moderator
commands (``Console``) work through ``cut``, ``wake`` and the agenda.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from broadcaster.control.hub import EventHub
from broadcaster.latency import RecentLatency
from broadcaster.listen.passthrough import LiveVoice
from broadcaster.show.agenda import LANES, Agenda, Item, Lane, now_ms
from broadcaster.show.airing import Airing, CardHolder, Cut, NoCard
from broadcaster.show.host import Source
from broadcaster.show.script_runs import ScriptRuns
from broadcaster.voice.speaker import Gate, Speech
from broadcaster.voice.speech_track import Utterance
from danmaku.triage.candidate import Candidate

if TYPE_CHECKING:
    from broadcaster.config import FillerConfig
    from broadcaster.show.script_library import ScriptLibrary
    from broadcaster.show.show import Show
    from danmaku.desk import ChatDesk

log = logging.getLogger(__name__)

KEEP_DAYS = 30  # closed items and the on-air log are kept this long (pruned at each start)
REPLY_RETRIES = 1  # a chat reply whose LLM call failed before a word was said is tried again once...
REPLY_RETRY_S = 2.0  # ...after this long (a blip of the model server; a longer outage fails it)
POLL_S = 0.02  # how often a boundary looks whether the sentence before it went on air (half a tick)


class Director:
    """Owns the show's running order; ``start`` begins it, ``close`` ends it."""

    def __init__(
        self,
        show: Show,
        agenda: Agenda,
        hub: EventHub,
        fillers: FillerConfig,
        *,
        library: ScriptLibrary | None = None,
        desk: ChatDesk | None = None,
        card: CardHolder | None = None,
        resume_after_s: float = 4.0,
        boundary_s: float = 0.6,
    ) -> None:
        self.show = show
        self.agenda = agenda
        self.hub = hub
        self.fillers = fillers
        self.library = library
        self.desk = desk
        self.card: CardHolder = card or NoCard()
        self.resume_after_s = resume_after_s
        self.boundary_s = boundary_s
        self.stack: list[Airing] = []
        self.chat_answering = True
        self.review = False
        self.chat: Candidate | None = None  # the candidate taken from the desk, waiting to air
        self.host: Candidate | None = None  # what the host said to the avatar (voice in), to answer first
        self.live: Airing | None = None  # the moderator's live voice, to air now
        self.barge_ins = 0
        self.host_speaking = False  # the person at the microphone is talking: nothing new starts
        self.on_air_text = ""
        self.said = 0
        self.closing = False
        self.cuts = 0
        self.reply_latency = RecentLatency()  # comment received → its reply's first sentence on air (ms)
        self.fillers_played = 0
        self._chat_free = asyncio.Event()
        self._chat_free.set()
        self._wake = asyncio.Event()
        self._quiet_since = time.monotonic()
        self._filler_lines = itertools.cycle(range(max(1, len(fillers.lines))))
        self._filler_scripts = 0
        self.tasks: list[asyncio.Task[None]] = []
        self.scripts = ScriptRuns(self)
        show.speaker.on_tag = self._tagged
        self.on_review: Callable[[Candidate], Any] | None = None  # the console composes review replies

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume the queue from the store and start airing."""
        resumed = await self.agenda.load()
        self.review = self.review or bool(self.agenda.settings.get("review", False))  # on stays on
        pruned = await self.agenda.prune(KEEP_DAYS)
        if pruned:
            log.info("director: pruned %d closed item(s) and on-air line(s) past %d days", pruned, KEEP_DAYS)
        if resumed:
            log.info("director: %d item(s) were on air at the last stop; they air again first", len(resumed))
        queued = self.agenda.queued()
        if queued:
            log.info("director: resuming a queue of %d item(s)", len(queued))
        self.tasks.append(asyncio.create_task(self._run(), name="director"))
        if self.desk is not None:
            self.tasks.append(asyncio.create_task(self._intake(), name="director-chat"))
        self.publish_queue()

    async def close(self) -> None:
        """Stop airing; what is on air stays ``on_air`` in the store.

        The next start airs it again first (a script from the sentence it was playing), and a chat
        comment taken but not answered is answered then (the chat log still has it queued).
        """
        self.closing = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()

    def _tagged(self, tag: str) -> None:
        if self.stack:  # the innermost airing is the one speaking
            self.stack[-1].tags.append(tag)

    def wake(self) -> None:
        """Something was queued: look at the lanes now."""
        self._wake.set()

    # -- the lanes ---------------------------------------------------------------------------------

    def _pick(self, below: Lane | None) -> Airing | None:
        """The next thing to air that outranks lane ``below`` (anything when None)."""
        limit = LANES.index(below) if below is not None else len(LANES)
        if self.live is not None and below is None:  # it cut everything on its way in: never nested
            airing, self.live = self.live, None
            return airing
        if self.host is not None and limit > 0 and self.host.not_before <= time.monotonic():
            candidate, self.host = self.host, None
            return Airing("moderator", candidate=candidate)
        now = now_ms()
        for item in self.agenda.queued():
            if LANES.index(item.lane) >= limit:
                break
            if item.args.get("not_before_ms", 0) > now:
                continue
            if item.lane == "chat" and not self.chat_answering:
                continue
            return Airing(item.lane, item=item)
        if self.chat is not None and self.desk is not None and self.desk.pacer.stale(self.chat):
            self._drop_chat(self.chat, "stale")
        waiting = self.chat is not None and self.chat.not_before > time.monotonic()
        if self.chat is not None and self.chat_answering and LANES.index("chat") < limit and not waiting:
            candidate, self.chat = self.chat, None
            return Airing("chat", candidate=candidate)
        return None

    def _drop_chat(self, candidate: Candidate, why: str) -> None:
        """A taken candidate that will not air: record why and take the next."""
        if self.chat is candidate:
            self.chat = None
        if self.desk is not None:
            self.desk.done(candidate, False, why)
        if not candidate.host:
            self._chat_free.set()

    def _filler(self) -> Airing | None:
        if not self.fillers.enabled or time.monotonic() - self._quiet_since < self.fillers.after_s:
            return None
        if self.show.speaker.track.pending_samples:
            return None
        scripts = self.library.ids() if self.library is not None and self.fillers.scripts else []
        # a script with a run waiting (after an interrupt) keeps its place for that run
        running = {str(i.args.get("script")) for i in self.agenda.items.values() if i.kind == "script"}
        scripts = [s for s in scripts if s not in running]
        if scripts:
            script = scripts[self._filler_scripts % len(scripts)]
            self._filler_scripts += 1
            item = Item(0, "filler", "script", args={"script": script, "segments": 1})
        elif self.fillers.lines:
            item = Item(0, "filler", "say", self.fillers.lines[next(self._filler_lines)])
        else:
            return None
        self.fillers_played += 1
        return Airing("filler", item=item)

    async def _run(self) -> None:
        while True:
            held = self.host_speaking and self.live is None  # the host's live voice is what to air
            airing = None if held else self._pick(None) or self._filler()
            if airing is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.25):
                        await self._wake.wait()
                if not self.speaking() and self.on_air_text:
                    self._publish_on_air(None, "")
                continue
            try:
                await self._perform(airing)
            except Exception:
                log.exception("director: %s item failed; the show goes on", airing.lane)
            self._quiet_since = time.monotonic()

    async def _intake(self) -> None:
        """Take chat candidates from the desk one at a time, as its pacing allows."""
        assert self.desk is not None
        while True:
            await self._chat_free.wait()
            try:
                candidate = await self.desk.next()
            except Exception:
                log.exception("director: the chat queue failed; trying again in a second")
                await asyncio.sleep(1.0)
                continue
            if self.review and candidate.kind == "answer" and self.on_review is not None:
                try:
                    await self.on_review(candidate)
                except Exception:
                    log.exception("director: a reply for review was not written")
                    self.desk.done(candidate, False, "error")
                continue
            self.chat = candidate
            self._chat_free.clear()
            self.wake()

    # -- performing --------------------------------------------------------------------------------

    async def _perform(self, airing: Airing) -> None:
        """Air one thing in its own task (so ``cut`` can cancel just it), and wait for it."""
        airing.task = asyncio.create_task(self._air(airing), name=f"air-{airing.lane}")
        self.stack.append(airing)
        try:
            await asyncio.wait({airing.task})
        except asyncio.CancelledError:
            airing.task.cancel()
            await asyncio.gather(airing.task, return_exceptions=True)
            raise
        finally:
            self.stack.remove(airing)
            if not airing.began and airing.candidate is not None and not self.closing:
                self._put_back(airing.candidate)  # cut before it started: it was never heard
        if not airing.task.cancelled() and airing.task.exception() is not None:
            log.error("director: %s item failed", airing.lane, exc_info=airing.task.exception())
            item = airing.item
            if item is not None and item.id and item.state == "on_air":
                try:  # closed, so it is not retried (and does not fail again) at every start
                    await self.set_state(item, "failed", reason=type(airing.task.exception()).__name__)
                except Exception:
                    log.exception("director: could not record item %d as failed", item.id)

    def _put_back(self, candidate: Candidate) -> None:
        """A chat candidate cut before anyone heard it waits again, first in its lane."""
        if candidate.host:
            if self.host is None:
                self.host = candidate
                self.wake()
            else:  # the host said something newer meanwhile: that one is answered
                self._drop_chat(candidate, "superseded")
        elif self.chat is None:
            self.chat = candidate
            self.wake()
        else:  # another was taken meanwhile (cannot happen with one intake); do not lose it silently
            self._drop_chat(candidate, "interrupted")

    async def _air(self, airing: Airing) -> None:
        airing.began = True
        item = airing.item
        if airing.voice is not None:
            await self._air_voice(airing, airing.voice)
        elif airing.candidate is not None:
            await self._air_chat(airing, airing.candidate)
        elif item is not None and item.kind == "script":
            await self.scripts.air(airing, item)
        elif item is not None:
            await self._air_line(airing, item)

    async def _air_line(self, airing: Airing, item: Item) -> None:
        await self.set_state(item, "on_air")
        source: Source = "script" if item.lane in ("script", "filler") else "moderator"
        if item.lane == "chat":
            source = "viewer"
        try:
            speech = await self.show.host.say(
                item.text,
                source,
                cache=item.lane != "chat",
                gate=self.gate(airing),
                checked="llm" if item.kind == "reply" and not item.args.get("edited") else None,
            )
            if speech is None:
                raise asyncio.CancelledError
            await self.settle(airing, speech)
        except asyncio.CancelledError:
            if self.closing:
                raise
            if not airing.heard(self.show.speaker.track) and item.id:  # never heard: it airs next instead
                await self.agenda.set_state(
                    item, "queued", reason="unheard", rank=self.agenda.front(item.lane)
                )
                self.publish_queue()
                raise
            await self.set_state(item, "interrupted", reason=airing.cut or "cancelled")
            if item.kind == "reply":
                self._chat_done(item.args.get("seqs", []), False, "interrupted")
            raise
        await self.set_state(item, "done")
        if item.kind == "reply":
            self._chat_done(item.args.get("seqs", []), True, "answer")

    async def _air_voice(self, airing: Airing, voice: LiveVoice) -> None:
        """The moderator's own voice holds the air until it is over (nothing else is queued meanwhile)."""
        airing.tags.append(voice.tag)
        try:
            await voice.finished()
        except asyncio.CancelledError:
            voice.cut = True  # the pass-through stops queueing it
            raise
        if voice.late_samples:
            rate = self.show.speaker.track.sample_rate
            log.warning(
                "pass-through: %.0f ms of the voice came too late for its place on the program (skipped)",
                voice.late_samples * 1000 / rate,
            )

    async def _air_chat(self, airing: Airing, candidate: Candidate) -> None:
        assert self.desk is not None
        host = candidate.host
        why_not: str | None = "interrupted"
        try:
            why_not = await self._answer(airing, candidate)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("chat %s not said; the program goes on", candidate.kind)
            why_not = "error"
        finally:
            if self.closing:
                self._chat_free.set()
            elif why_not == "interrupted" and not airing.heard(self.show.speaker.track):
                self._put_back(candidate)
            elif (
                why_not == "reply_failed"
                and candidate.retries < REPLY_RETRIES
                and not airing.heard(self.show.speaker.track)
            ):
                candidate.retries += 1  # the LLM failed before a word was said: once more, soon
                candidate.not_before = time.monotonic() + REPLY_RETRY_S
                log.warning("the reply failed before a word was said; trying again in %g s", REPLY_RETRY_S)
                self._put_back(candidate)
            else:
                self.desk.done(candidate, why_not is None, why_not or "")
                if not host:  # the host's turns never held the chat lane
                    self._chat_free.set()

    async def _answer(self, airing: Airing, candidate: Candidate) -> str | None:
        assert self.desk is not None
        why_not, speech = await self.show.answer(candidate, self.desk.cfg, self.gate(airing))
        if speech is not None:
            await self.settle(airing, speech)
        return why_not

    def _chat_done(self, seqs: list[int], said: bool, reason: str) -> None:
        if self.desk is not None and seqs:
            self.desk.done_seqs(seqs, said, reason)

    # -- sentence boundaries -----------------------------------------------------------------------

    def gate(self, airing: Airing, started: Callable[[int], None] | None = None) -> Gate:
        """Between sentences: wait for the one before to go on air, then let higher lanes go first."""

        async def gate(speech: Speech) -> None:
            await self.settle(airing, speech, started)
            await self._near_end(speech)
            await self.yield_to(airing)

        return gate

    async def settle(
        self, airing: Airing, speech: Speech, started: Callable[[int], None] | None = None
    ) -> None:
        """Wait until the last sentence queued is on air, then announce it (once)."""
        if not speech.sentences:
            return
        index = len(speech.sentences) - 1
        sentence = speech.sentences[index]
        first = sentence.utterances[0] if sentence.utterances else None
        if first is not None:
            while first.start_tick is None and not first.done.is_set():  # noqa: ASYNC110
                await asyncio.sleep(POLL_S)  # the render thread starts it; there is no loop event to await
        if speech.announced >= index:
            return
        speech.announced = index
        if started is not None:
            started(index + len(speech.unspoken))
        self._publish_on_air(airing, sentence.text, first)

    async def _near_end(self, speech: Speech) -> None:
        """Wait until the last sentence queued has at most ``boundary_s`` left to play.

        A line queued before that point airs right after this sentence; the next sentence is
        synthesised from then on, early enough to follow without a gap.
        """
        if not speech.sentences:
            return
        utterances = speech.sentences[-1].utterances
        track = self.show.speaker.track
        limit = int(self.boundary_s * track.sample_rate)
        while track.remaining(utterances) > limit:  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)

    async def until_done(self, speech: Speech) -> None:
        """Wait until the last sentence queued has finished playing (or was dropped)."""
        if speech.sentences and speech.sentences[-1].utterances:
            last = speech.sentences[-1].utterances[-1]
            while not last.done.is_set():  # noqa: ASYNC110
                await asyncio.sleep(POLL_S)

    async def yield_to(self, airing: Airing) -> None:
        """Perform, nested, whatever waits in a lane above ``airing``'s; then make a cut left pending."""
        while (waiting := self._pick(airing.lane)) is not None:
            await self._perform(waiting)
        if airing.pending:
            airing.cut, airing.pending = airing.pending, ""
            raise asyncio.CancelledError  # unwinds like a cut, at this boundary

    def cut_at(self, why: Cut, depth: int) -> bool:
        """Cut the item at ``depth``: now if it is the innermost, else at its next boundary.

        What is nested in it (a reply, a moderator line) finishes first: a script never cuts a reply.
        """
        if depth == len(self.stack) - 1:
            return self.cut(why, depth)
        self.stack[depth].pending = why
        return True

    def cut(self, why: Cut, depth: int = 0) -> bool:
        """Cancel what is on air: the whole stack (``depth`` 0) or only its innermost item (-1).

        The speech track is cut either way (what plays stops at the next tick); an outer item that was
        only cut short by a skip continues with its next sentence.
        """
        if not self.stack:  # between items: the last one's final sentence may still be playing
            dropped = self.show.speaker.track.drop()
            if dropped:
                self.cuts += 1
            return dropped > 0
        targets = self.stack[depth:]
        for airing in targets:
            airing.cut = why
        task = targets[0].task
        if task is None or task.done():
            return False
        task.cancel()
        self.cuts += 1
        self.show.speaker.track.drop()  # what is heard stops at the next tick, even audio already queued
        return True

    # -- voice in ----------------------------------------------------------------------------------

    def speaking(self) -> bool:
        """Whether the avatar is saying something: an item on air, or speech still queued."""
        return bool(self.stack) or self.show.speaker.track.pending_samples > 0

    def barge_in(self) -> bool:
        """The person talking with the avatar started speaking: stop the avatar (as an interrupt)."""
        if not self.speaking():
            return False
        self.barge_ins += 1
        on_air = ", ".join(a.lane for a in self.stack) or "the speech still playing"
        log.info("director: the host spoke over the avatar; cutting %s", on_air)
        return self.cut("interrupt")

    def air_voice(self, voice: LiveVoice) -> None:
        """The moderator's live voice goes on air now: what is on air is cut (a script resumes later)."""
        self.cut("now")
        self.live = Airing("moderator", voice=voice)
        self.wake()

    def voice_said(self, voice: LiveVoice, text: str) -> None:
        """What the live voice said, once recognised: logged as said on air and shown to consoles."""
        voice.text = text
        self.said += 1
        self.agenda.said(None, "moderator", text)
        self.hub.publish(
            "on_air", {"item": None, "lane": "moderator", "text": text, "at_ms": now_ms(), "tick": None}
        )

    def listening(self, on: bool) -> None:
        """The person at the microphone is talking (``on``): what is on air goes on, nothing new starts."""
        self.host_speaking = on
        if not on:
            self._quiet_since = time.monotonic()
            self.wake()

    def answer_host(self, candidate: Candidate) -> None:
        """The host said something to the avatar: it is answered before anything queued."""
        if self.host is not None:
            self._drop_chat(self.host, "superseded")
        self.host = candidate
        self.wake()

    # -- publishing --------------------------------------------------------------------------------

    async def set_state(self, item: Item, state: Any, reason: str = "") -> None:
        """Move a stored item on and tell the consoles (fillers, id 0, are not stored)."""
        if item.id:
            await self.agenda.set_state(item, state, reason=reason)
            self.publish_queue()

    def _publish_on_air(self, airing: Airing | None, text: str, first: Utterance | None = None) -> None:
        """Announce the sentence on air.

        ``at_ms``: when its first tick entered the program (wall ms); ``tick``: that tick's number (its
        place on the program clock).
        """
        started = first.started_at if first is not None else None
        at_ms = now_ms() if started is None else now_ms() - int((time.monotonic() - started) * 1000)
        self.on_air_text = text
        lane: Lane = airing.lane if airing is not None else "filler"
        item = airing.item if airing is not None else None
        if airing is not None and not airing.aired and text:
            airing.aired = True
            if airing.candidate is not None:
                self.reply_latency.add(at_ms - airing.candidate.event.received_at)
        if text:
            self.said += 1
            self.agenda.said(item if item is not None and item.id else None, lane, text)
        self.hub.publish(
            "on_air",
            {
                "item": item.id if item is not None and item.id else None,
                "lane": lane if text else None,
                "text": text,
                "at_ms": at_ms,
                "tick": first.start_tick if first is not None else None,
            },
        )

    def publish_queue(self) -> None:
        """Tell consoles the queue changed."""
        if self.hub.wants("queue"):
            self.hub.publish("queue", {"items": [i.public() for i in self.agenda.queued()]})

    def stats(self) -> dict[str, Any]:
        """Queue depths per lane and what aired, for the status line and /metrics."""
        depth = {lane: len(self.agenda.queued(lane)) for lane in LANES}
        depth["chat"] += self.chat is not None
        return {
            "queued": depth,
            "review": len(self.agenda.waiting_review()),
            "on_air": [a.lane for a in self.stack],
            "sentences": self.said,
            "fillers": self.fillers_played,
            "interrupts": self.cuts,
            "barge_ins": self.barge_ins,
            "reply_p50_ms": self.reply_latency.p50(),
            "chat_answering": self.chat_answering,
            "review_mode": self.review,
        }

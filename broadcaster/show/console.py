"""The moderators' console: the control API's commands (``ShowControl``) carried out on the director.

Each command checks its arguments against the show (the item exists and is queued, the script and its
segment exist, the avatar is preloaded...) and raises ``ControlError`` without changing anything when
they are wrong. What it queues is committed to the store before it returns. Review mode lives here
too: a chat reply is written by the LLM off air, kept in the store as an item ``review``, and airs only
when a moderator approves it (as written, or edited); rejected, it is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from broadcaster.config import PersonaConfig
from broadcaster.control.backend import SayMode
from broadcaster.control.hub import ControlError
from broadcaster.face.avatar import AvatarError
from broadcaster.show.agenda import Item, Place
from broadcaster.show.director import Director
from broadcaster.show.persona import Persona
from danmaku.triage.candidate import Candidate

if TYPE_CHECKING:
    from broadcaster.listen.listener import Listener
    from broadcaster.listen.settings import MicMode
    from broadcaster.show.schedule import Scheduler

log = logging.getLogger(__name__)

MAX_TEXT = 2000
RECENT_CHAT = 100  # triage decisions a console sees when it connects


class Switchboard:
    """What the console switches besides the show: avatars (the compositor) and the scheduler's jobs."""

    def avatars(self) -> list[str]:
        """The preloaded avatars."""
        return []

    def avatar(self) -> str:
        """The avatar on air."""
        return ""

    def switch_avatar(self, name: str) -> None:
        """Put ``name`` on air (KeyError when it is not preloaded)."""
        raise KeyError(name)


class Console:
    """Implements ``broadcaster.control.backend.ShowControl`` on a director."""

    def __init__(
        self,
        director: Director,
        personas: Mapping[str, PersonaConfig],
        switchboard: Switchboard | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.director = director
        self.agenda = director.agenda
        self.personas = dict(personas)
        self.persona = next(iter(self.personas), "")
        self.switchboard = switchboard or Switchboard()
        self.scheduler = scheduler
        self.recent_chat: deque[dict[str, Any]] = deque(maxlen=RECENT_CHAT)  # the last triage decisions
        director.on_review = self._to_review
        self.listener: Listener | None = None  # the console's microphone (voice_in), when enabled

    # -- lines and cuts ----------------------------------------------------------------------------

    async def say(self, text: str, mode: SayMode) -> dict[str, Any]:
        """Queue a moderator line; ``now`` cuts what is on air."""
        text = text.strip()
        if not text:
            raise ControlError("bad_args", "say: the text is empty")
        if len(text) > MAX_TEXT:
            raise ControlError("bad_args", f"say: the text is longer than {MAX_TEXT} characters")
        if mode not in ("now", "next"):
            raise ControlError("bad_args", "say: mode is now or next")
        item = await self.agenda.add(
            "moderator", "say", text, {"mode": mode}, front=mode == "now", source="moderator"
        )
        if mode == "now":
            self.director.cut("now")
        self.director.wake()
        self.director.publish_queue()
        return item.public()

    async def interrupt(self) -> dict[str, Any]:
        """Cut everything on air."""
        return {"cut": self.director.cut("interrupt")}

    async def skip(self) -> dict[str, Any]:
        """Cut the innermost item on air; what it interrupted carries on."""
        return {"cut": self.director.cut("skip", -1)}

    async def chat_answering(self, on: bool) -> dict[str, Any]:
        """Pause or resume answering chat (comments are still logged and triaged)."""
        director = self.director
        director.chat_answering = on
        if director.desk is not None:
            director.desk.pacer.paused = not on
            director.desk.pacer.resume()
        director.wake()
        self._state_changed()
        return {"chat_answering": on}

    # -- the queue ---------------------------------------------------------------------------------

    def queue_list(self) -> list[dict[str, Any]]:
        """Queued items in airing order."""
        return [i.public() for i in self.agenda.queued()]

    def _queued(self, item_id: int) -> Item:
        item = self.agenda.items.get(item_id)
        if item is None or item.state != "queued":
            raise ControlError("not_found", f"item {item_id} is not in the queue")
        return item

    async def queue_remove(self, item_id: int) -> dict[str, Any]:
        """Remove a queued item."""
        item = self._queued(item_id)
        await self.agenda.set_state(item, "removed", reason="moderator")
        if item.kind == "reply" and self.director.desk is not None:
            self.director.desk.done_seqs(item.args.get("seqs", []), False, "removed")
        self.director.publish_queue()
        return {"removed": item_id}

    async def queue_move(self, item_id: int, position: int) -> dict[str, Any]:
        """Move a queued item within its lane."""
        item = self._queued(item_id)
        if position < 0:
            raise ControlError("bad_args", "queue.move: position is 0 or more")
        await self.agenda.move(item, position)
        self.director.publish_queue()
        return {"items": self.queue_list()}

    # -- scripts -----------------------------------------------------------------------------------

    def _script(self, name: str) -> Any:
        library = self.director.library
        script = library.get(name) if library is not None else None
        if script is None:
            known = ", ".join(library.ids()) if library is not None else "none"
            raise ControlError("not_found", f"no script {name!r} (scripts: {known})")
        return script

    def _place_of(self, script: Any, segment: str) -> Place:
        try:
            return self.director.scripts.place_of(script, segment)
        except KeyError as exc:
            raise ControlError("not_found", str(exc.args[0])) from None

    async def script_start(self, script: str, segment: str | None = None) -> dict[str, Any]:
        """Queue a run of ``script`` (one round), from ``segment`` when given."""
        found = self._script(script)
        if segment:
            self.agenda.set_place(found.id, self._place_of(found, segment))
        return (await self.queue_script(found.id, 0, "moderator")).public()

    async def queue_script(self, script: str, segments: int, source: str) -> Item:
        """Queue a run of ``segments`` segments of ``script`` (0 = a round) in the script lane."""
        item = await self.agenda.add(
            "script", "script", "", {"script": script, "segments": segments}, source=source
        )
        self.director.wake()
        self.director.publish_queue()
        return item

    async def announce(self, text: str, source: str) -> Item:
        """Queue a line in the script lane (a scheduled announcement): after replies, before fillers."""
        item = await self.agenda.add("script", "say", text, source=source)
        self.director.wake()
        self.director.publish_queue()
        return item

    async def script_stop(self) -> dict[str, Any]:
        """Stop the script on air (its place is kept) and drop the queued runs."""
        removed = []
        for item in self.agenda.queued("script"):
            if item.kind == "script":
                await self.agenda.set_state(item, "removed", reason="script.stop")
                removed.append(item.id)
        depth = next(
            (i for i, a in enumerate(self.director.stack) if a.item and a.item.kind == "script"), None
        )
        stopped = depth is not None and self.director.cut_at("stop", depth)
        self.director.publish_queue()
        return {"stopped": stopped, "removed": removed}

    async def script_jump(self, script: str, segment: str) -> dict[str, Any]:
        """Move a script's place to ``segment``; when it is on air it continues from there now."""
        found = self._script(script)
        place = self._place_of(found, segment)
        self.agenda.set_place(found.id, place)
        depth = next((i for i, a in enumerate(self.director.stack) if a.script == found.id), None)
        jumped = depth is not None and self.director.cut_at("jump", depth)
        self.director.wake()
        return {"script": found.id, "segment": segment, "on_air": jumped}

    # -- switches ----------------------------------------------------------------------------------

    async def switch_avatar(self, name: str) -> dict[str, Any]:
        """Put an avatar on air: a preloaded one at once, another once it is loaded from disk."""
        try:
            await asyncio.to_thread(self.switchboard.switch_avatar, name)
        except KeyError as exc:
            raise ControlError("not_found", str(exc.args[0]) if exc.args else name) from None
        except AvatarError as exc:
            raise ControlError("bad_avatar", str(exc)) from None
        self._state_changed(avatar=name)
        return {"avatar": name}

    async def switch_persona(self, name: str) -> dict[str, Any]:
        """Answer chat as another configured persona."""
        cfg = self.personas.get(name)
        if cfg is None:
            raise ControlError("not_found", f"no persona {name!r} (personas: {', '.join(self.personas)})")
        show = self.director.show
        show.persona = show.host.persona = Persona(cfg, show.catalog.grounding())
        self.persona = name
        self._state_changed()
        return {"persona": name}

    # -- review ------------------------------------------------------------------------------------

    async def review_mode(self, on: bool) -> dict[str, Any]:
        """Turn review mode on or off (replies already waiting keep waiting); kept across restarts."""
        await self.agenda.remember("review", on)
        self.director.review = on
        self._state_changed()
        return {"review": on}

    async def _to_review(self, candidate: Candidate) -> None:
        """Write a reply off air and keep it for a moderator (the director's intake calls this)."""
        director, event = self.director, candidate.event
        await director.show.start_llm()
        question = director.show.question(candidate)
        reply = await director.show.host.compose(question)
        seqs = [seq for seq, _ in candidate.events]
        if reply.error or not reply.text:
            assert director.desk is not None
            director.desk.done(candidate, False, "reply_failed" if reply.error else "blocked")
            return
        args = {
            "seqs": seqs,
            "question": {"user": event.user.name, "user_id": question.viewer_id, "text": event.text},
        }
        item = await self.agenda.add("chat", "reply", reply.text, args, state="review", source="llm")
        # the reply owns these comments now: a restart resumes the reply, it does not answer them again
        assert director.desk is not None
        director.desk.done_seqs(seqs, False, "in_review")
        self._review_event("waiting", item)

    def _review_item(self, item_id: int) -> Item:
        item = self.agenda.items.get(item_id)
        if item is None or item.state != "review":
            raise ControlError("not_found", f"item {item_id} is not waiting for review")
        return item

    async def review_approve(self, item_id: int, text: str | None = None) -> dict[str, Any]:
        """Queue a reviewed reply in the chat lane (with the moderator's edit, if any)."""
        item = self._review_item(item_id)
        edited = text is not None and text.strip() != item.text
        if text is not None and not text.strip():
            raise ControlError("bad_args", "review.approve: the edited text is empty")
        if text is not None and len(text) > MAX_TEXT:
            raise ControlError("bad_args", f"review.approve: the text is longer than {MAX_TEXT} characters")
        if edited:
            item.args["edited"] = True
        await self.agenda.set_state(
            item, "queued", rank=self.agenda.back("chat"), text=text.strip() if edited and text else None
        )
        self._review_event("approved", item)
        self.director.wake()
        self.director.publish_queue()
        return item.public()

    async def review_reject(self, item_id: int) -> dict[str, Any]:
        """Drop a reply waiting for review."""
        item = self._review_item(item_id)
        await self.agenda.set_state(item, "rejected", reason="moderator")
        if self.director.desk is not None:
            self.director.desk.done_seqs(item.args.get("seqs", []), False, "rejected")
        self._review_event("rejected", item)
        return {"rejected": item_id}

    def _review_event(self, action: str, item: Item) -> None:
        self.director.hub.publish("review", {"action": action, "item": item.public()})

    # -- voice in ----------------------------------------------------------------------------------

    def listen(self, listener: Listener) -> None:
        """Take the microphone's listener: its mode is switched here, its changes reach the consoles."""
        self.listener = listener
        listener.on_mode = lambda _mode, _mic: self._state_changed()

    async def voice_mode(self, mode: MicMode) -> dict[str, Any]:
        """Switch what the console's microphone does."""
        if self.listener is None:
            raise ControlError("unavailable", "voice in is off (voice_in.enabled = false, or no console)")
        self.listener.set_mode(mode)
        return {"mode": self.listener.mode}

    # -- state -------------------------------------------------------------------------------------

    def _state_changed(self, **extra: Any) -> None:
        self.director.hub.publish("state", {**self._switches(), **extra})

    def _switches(self) -> dict[str, Any]:
        director = self.director
        return {
            "chat_answering": director.chat_answering,
            "review_mode": director.review,
            "avatar": self.switchboard.avatar(),
            "persona": self.persona,
            "voice": self.listener.public() if self.listener is not None else None,
        }

    def state(self) -> dict[str, Any]:
        """Everything a console shows when it connects."""
        director = self.director
        library = director.library
        scripts = []
        for name in library.ids() if library is not None else []:
            script = library.get(name) if library is not None else None
            if script is None:
                continue
            place = self.agenda.place(name)
            scripts.append(
                {
                    "id": name,
                    "title": script.title,
                    "segments": [s.id for s in script.segments],
                    "place": {"round": place.round, "index": place.idx, "sentence": place.sentence},
                }
            )
        return {
            **self._switches(),
            "avatars": self.switchboard.avatars(),
            "personas": list(self.personas),
            "on_air": {"text": director.on_air_text, "stack": [a.public() for a in director.stack]},
            "queue": self.queue_list(),
            "review": [i.public() for i in self.agenda.waiting_review()],
            "scripts": scripts,
            "schedule": self.scheduler.jobs() if self.scheduler is not None else [],
            "chat": list(self.recent_chat),
            "stats": director.stats(),
        }

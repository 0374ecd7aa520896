"""Script runs: a scripted talk played segment by segment, sentence by sentence, from its place.

A run plays ``segments`` segments (0: one round) of a script in its rotation order. Its place (round,
index in the round, sentence) is written each time one of its sentences goes on air and when a segment
is done, so a cut or a restart resumes at the sentence that was playing. A cut run goes back to the
front of the script lane (after ``resume_after_s`` when a moderator interrupted it; at the next segment
when skipped), unless it was stopped. While a product's talk plays, its card is on the picture.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from broadcaster.show.agenda import Item, Place, now_ms
from broadcaster.show.airing import Airing, seed_of

if TYPE_CHECKING:
    from broadcaster.show.director import Director
    from broadcaster.show.scripts import Script

log = logging.getLogger("broadcaster.show.director")


class ScriptRuns:
    """Plays script runs for a director."""

    def __init__(self, director: Director) -> None:
        self.director = director

    async def air(self, airing: Airing, item: Item) -> None:
        """Play a run of a script: its segments from the script's place, sentence by sentence."""
        name = str(item.args.get("script", ""))
        script = self.director.library.get(name) if self.director.library is not None else None
        if script is None:
            log.error("director: script %r is not in the library; its run is dropped", name)
            await self.director.set_state(item, "failed", reason="unknown script")
            return
        start = item.args.pop("from_segment", None)
        if start:  # a run asked to start at a segment: its place moves there now, not when it was asked
            try:
                self.director.agenda.set_place(script.id, self.place_of(script, str(start)))
            except KeyError as exc:
                log.warning("director: script %r: %s; it goes on from its place", name, exc.args[0])
        await self.director.set_state(item, "on_air")
        airing.script = name
        total = int(item.args.get("segments", 0)) or len(script.segments)
        try:
            while int(item.args.get("played", 0)) < total:
                await self._segment(airing, script, item)
                if item.id:
                    await self.director.set_state(item, "on_air")
        except asyncio.CancelledError:
            await self._cut(airing, item, script)
            raise
        finally:
            self.show_card(None)
        await self.director.set_state(item, "done")

    def place_of(self, script: Script, segment: str) -> Place:
        """The place at the start of ``segment`` in the script's current (or next) round; KeyError if none."""
        if segment not in script.segment_ids:
            raise KeyError(
                f"script {script.id!r} has no segment {segment!r} ({', '.join(script.segment_ids)})"
            )
        place = self.director.agenda.place(script.id)
        for round_no in (place.round, place.round + 1):
            order = script.round_order(round_no, seed_of(script.id))
            if segment in order:
                return Place(round_no, order.index(segment), 0)
        raise KeyError(f"segment {segment!r} is not in the rotation of {script.id!r}")

    def show_card(self, product: Any) -> None:
        """Show a product's card (showing the one on air again changes nothing), or none."""
        self.director.card.show_card(product)

    async def _cut(self, airing: Airing, item: Item, script: Script) -> None:
        """A script run was cut: keep its place (skip: the next segment) and, unless stopped, requeue it."""
        if self.director.closing:
            return
        if airing.cut == "skip" and not airing.segment_done:
            place = self.director.agenda.place(script.id)
            self.director.agenda.set_place(script.id, Place(place.round, place.idx + 1, 0))
            item.args["played"] = int(item.args.get("played", 0)) + 1
        if airing.cut in ("stop", "") or not item.id:
            await self.director.set_state(item, "interrupted", reason=airing.cut or "cancelled")
            return
        if airing.cut in ("interrupt", "now"):
            item.args["not_before_ms"] = now_ms() + int(self.director.resume_after_s * 1000)
        await self.director.agenda.set_state(
            item, "queued", reason=airing.cut, rank=self.director.agenda.front("script")
        )
        self.director.publish_queue()

    async def _segment(self, airing: Airing, script: Script, item: Item) -> None:
        airing.segment_done = False
        place = self.director.agenda.place(script.id)
        order = script.round_order(place.round, seed_of(script.id))
        if place.idx >= len(order):
            place = Place(place.round + 1, 0, 0)
            order = script.round_order(place.round, seed_of(script.id))
        segment_id = order[place.idx]
        segment = script.segment(segment_id)
        airing.segment = segment_id
        self.director.agenda.set_place(script.id, place)
        self.show_card(script.product)
        lines = self.director.show.host.sentences(script.render(segment_id), "script")[place.sentence :]
        first = place.sentence

        def started(index: int) -> None:
            self.director.agenda.set_place(script.id, Place(place.round, place.idx, first + index))

        speech = await self.director.show.host.say_lines(
            lines, "script", gate=self.director.gate(airing, started), prefer=segment.voice or None
        )
        if speech is None:
            raise asyncio.CancelledError
        await self.director.settle(airing, speech, started)
        # the segment is played once its last sentence is on air: the place and the count move together
        self.director.agenda.set_place(script.id, Place(place.round, place.idx + 1, 0))
        item.args["played"] = int(item.args.get("played", 0)) + 1
        airing.segment_done = True
        if segment.pause_after_s:
            await self.director.until_done(speech)
            await asyncio.sleep(segment.pause_after_s)
        await self.director.yield_to(airing)

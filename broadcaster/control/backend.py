"""What the control API drives: the show's moderator commands, as one protocol the director implements.

Every method either does what it says and returns a JSON-ready result, or raises ``ControlError``
(unknown item, unknown script, nothing on air...) and changes nothing. Items that are queued are in the
SQLite store before the method returns (invariant 7).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from broadcaster.listen.settings import MicMode

SayMode = Literal["now", "next"]


class ShowControl(Protocol):
    """The moderator's levers on the show."""

    async def say(self, text: str, mode: SayMode) -> dict[str, Any]:
        """Queue a moderator line: ``now`` interrupts what is on air, ``next`` waits for its sentence."""
        ...

    async def interrupt(self) -> dict[str, Any]:
        """Cut whatever is on air (a script resumes later from the cut sentence)."""
        ...

    async def skip(self) -> dict[str, Any]:
        """Cut the item on air and go on with the next (a script skips to its next segment)."""
        ...

    async def chat_answering(self, on: bool) -> dict[str, Any]:
        """Pause (False) or resume (True) answering chat; comments are still logged and triaged."""
        ...

    def queue_list(self) -> list[dict[str, Any]]:
        """The queued items, in the order they will air."""
        ...

    async def queue_remove(self, item_id: int) -> dict[str, Any]:
        """Remove a queued item."""
        ...

    async def queue_move(self, item_id: int, position: int) -> dict[str, Any]:
        """Move a queued item to ``position`` (0 = first) among the items of its lane."""
        ...

    async def script_start(self, script: str, segment: str | None = None) -> dict[str, Any]:
        """Queue a run of ``script`` (from ``segment`` when given, else where it last stopped)."""
        ...

    async def script_stop(self) -> dict[str, Any]:
        """Stop the script on air (its place is kept) and drop queued script runs."""
        ...

    async def script_jump(self, script: str, segment: str) -> dict[str, Any]:
        """Move ``script``'s place to ``segment``; if it is on air, it continues from there at once."""
        ...

    async def switch_avatar(self, name: str) -> dict[str, Any]:
        """Put a preloaded avatar on air."""
        ...

    async def switch_persona(self, name: str) -> dict[str, Any]:
        """Answer chat as another configured persona."""
        ...

    async def review_mode(self, on: bool) -> dict[str, Any]:
        """In review mode, LLM replies wait for a moderator's approval before they air."""
        ...

    async def review_approve(self, item_id: int, text: str | None = None) -> dict[str, Any]:
        """Air a reply waiting for review (``text``: the moderator's edit)."""
        ...

    async def review_reject(self, item_id: int) -> dict[str, Any]:
        """Drop a reply waiting for review."""
        ...

    async def voice_mode(self, mode: MicMode) -> dict[str, Any]:
        """Switch what the console's microphone does: off, pass-through or conversation."""
        ...

    def state(self) -> dict[str, Any]:
        """A snapshot for a console that just connected: on air, queue, reviews, switches, scripts."""
        ...

"""Scripted talks: what the host reads when no viewer is waiting, in segments played in rounds.

A script is one TOML file in ``<show.library>/scripts/`` (format: ``scripts_library/README.md``; parsing
and validation: ``script_files.py``; the watched folder: ``script_library.py``). Its segments play in
rounds, each round holding as many plays as the script has segments:

- ``sequential``: file order, every round the same;
- ``shuffle``: a new random permutation each round; no segment twice in a round, and a round does not
  start with the segment the previous one ended with (with exactly two segments: one fixed order);
- ``weighted``: each play drawn by ``weight``, never the same segment twice in a row (with exactly two
  they alternate); plays are drawn as one chain over blocks of 16 rounds, so a restart recomputes at
  most one block.

``round_order(round_no, seed)`` is a pure function of the script, the round number and the seed, so the
director can persist (script id, round, index in the round, sentence index) and, after a restart,
recompute the same round and carry on where it stopped. ``render`` fills the template variables from
the product as it is now: a script is rebuilt whenever its file or its product's file changes.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from broadcaster.show.products import Product
from broadcaster.show.script_template import fill, product_values

WEIGHTED_BLOCK = 16  # weighted rounds are drawn 16 at a time, as one chain

Rotation = Literal["sequential", "shuffle", "weighted"]
Language = Literal["zh", "en"]


class ScriptError(Exception):
    """Scripts that cannot be used; ``errors`` holds one ``file:line: key: what is wrong`` per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Segment:
    """One piece of a talk: its template text and how it is said."""

    id: str
    text: str  # the template, as written
    weight: float = 1.0
    voice: str | None = None  # the TTS engine that speaks it first (None: the chain's order)
    pause_after_s: float = 0.0
    line: int = 0  # where it is written (its [[segments]] header)


@dataclass(frozen=True)
class Script:
    """A validated talk, bound to its product's facts as they were when it was (re)built."""

    id: str
    title: str
    language: Language
    rotation: Rotation
    segments: tuple[Segment, ...]
    product: Product | None = None
    vars: tuple[tuple[str, str], ...] = ()
    path: Path = Path()

    @cached_property
    def _values(self) -> dict[str, str]:
        return {**product_values(self.product, self.language == "en"), **dict(self.vars)}

    @cached_property
    def _by_id(self) -> dict[str, Segment]:
        return {s.id: s for s in self.segments}

    @property
    def segment_ids(self) -> list[str]:
        """The segments' ids in file order."""
        return [s.id for s in self.segments]

    def segment(self, segment_id: str) -> Segment:
        """The segment with this id; KeyError when the script has none (it may have been edited)."""
        return self._by_id[segment_id]

    def render(self, segment_id: str) -> str:
        """What the host says for this segment: its text with the product's current facts filled in."""
        return fill(self.segment(segment_id).text, self._values)

    @cached_property
    def digest(self) -> str:
        """Changes whenever anything the audience would hear changes (segments, order, rendered text)."""
        parts = [self.id, self.title, self.language, self.rotation]
        for s in self.segments:
            parts += [s.id, self.render(s.id), repr(s.weight), s.voice or "", repr(s.pause_after_s)]
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]

    def round_order(self, round_no: int, seed: int = 0) -> list[str]:
        """The segment ids round ``round_no`` plays, in order; the same for the same (round, seed)."""
        if round_no < 0:
            raise ValueError("rounds count from 0")
        ids = self.segment_ids
        if self.rotation == "sequential" or len(ids) == 1:
            return ids
        if self.rotation == "shuffle":
            return self._shuffled(round_no, seed)
        return self._weighted(round_no, seed)

    def _rng(self, round_no: int, seed: int, what: str) -> random.Random:
        return random.Random(f"{self.id}\x00{seed}\x00{round_no}\x00{what}")

    def _permutation(self, round_no: int, seed: int) -> list[str]:
        order = self.segment_ids
        self._rng(round_no, seed, "shuffle").shuffle(order)
        return order

    def _shuffled(self, round_no: int, seed: int) -> list[str]:
        if len(self.segments) == 2:  # no repeat across the boundary leaves one order
            return self._permutation(0, seed)
        order = self._permutation(round_no, seed)
        # the fix below only swaps the first two, so a round's last segment is its raw permutation's
        if round_no > 0 and order[0] == self._permutation(round_no - 1, seed)[-1]:
            order[0], order[1] = order[1], order[0]
        return order

    def _draw(self, rng: random.Random, exclude: set[str]) -> str:
        choices = [s for s in self.segments if s.id not in exclude]
        return rng.choices(choices, weights=[s.weight for s in choices])[0].id

    def _block_last(self, block: int, seed: int) -> str:
        return self._draw(self._rng(block, seed, "last"), set())

    @cached_property
    def _blocks(self) -> dict[tuple[int, int], list[str]]:
        return {}

    def _block(self, block: int, seed: int) -> list[str]:
        """The plays of ``WEIGHTED_BLOCK`` rounds: one chain, each play drawn by weight, none repeated.

        A block's last play is drawn on its own, so the next block can avoid it without replaying the
        blocks before it: a restart recomputes at most one block.
        """
        if (block, seed) not in self._blocks:
            rng = self._rng(block, seed, "plays")
            total = WEIGHTED_BLOCK * len(self.segments)
            last = self._block_last(block, seed)
            previous = self._block_last(block - 1, seed) if block > 0 else None
            plays: list[str] = []
            for position in range(total - 1):
                exclude = {previous} if previous else set()
                if position == total - 2:
                    exclude.add(last)
                previous = self._draw(rng, exclude)
                plays.append(previous)
            self._blocks.clear()
            self._blocks[(block, seed)] = [*plays, last]
        return self._blocks[(block, seed)]

    def _weighted(self, round_no: int, seed: int) -> list[str]:
        n = len(self.segments)
        if n == 2:  # never twice in a row leaves one choice: they alternate
            return self.segment_ids
        block, offset = divmod(round_no, WEIGHTED_BLOCK)
        return self._block(block, seed)[offset * n : (offset + 1) * n]

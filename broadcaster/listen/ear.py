"""The program's own sound, as the echo guard needs it: a tick sink that hands it each tick's audio."""

from __future__ import annotations

from broadcaster.listen.echo import EchoGuard
from broadcaster.stream.tick import Tick


class ProgramEar:
    """Offers each tick's audio to the echo guard at its program position (cheap; never blocks)."""

    def __init__(self, echo: EchoGuard, samples_per_tick: int) -> None:
        self.echo = echo
        self.samples_per_tick = samples_per_tick

    def offer(self, tick: Tick) -> bool:
        """Keep the tick's sound envelope; always taken."""
        self.echo.add_program(tick.k * self.samples_per_tick, tick.audio)
        return True

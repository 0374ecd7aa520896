"""A show with its director, for tests: real TTS (espeak), real store, a real chat desk, a track player.

The player pulls the speech track faster than real time (as the render thread does, tick by tick) and
records which sentences were heard, in order: the director's decisions are checked on what goes on air.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from broadcaster.app import build_desk
from broadcaster.config import Config, load_config
from broadcaster.control.hub import EventHub
from broadcaster.show.agenda import Agenda
from broadcaster.show.console import Console
from broadcaster.show.director import Director
from broadcaster.show.script_library import ScriptLibrary
from broadcaster.show.show import Show
from broadcaster.store import Store
from broadcaster.voice.speech_track import SpeechTrack
from danmaku.desk import ChatDesk

ROOT = Path(__file__).resolve().parents[1]


class Player:
    """Pulls ``track`` every ``period`` seconds (a 40 ms tick each): ``speed`` times real time."""

    def __init__(self, track: SpeechTrack, speed: float = 4.0) -> None:
        self.track = track
        self.period = 0.04 / speed
        self.heard: list[str] = []
        self.cut: list[str] = []
        self.ticks = 0
        self.starts: list[tuple[int, str]] = []  # (tick, sentence) when each sentence began
        self._last = -1
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            _, speaking = self.track.pull()
            self.ticks += 1
            if speaking is not None:
                u = speaking.utterance
                if (
                    speaking.index == 0
                    and u.id != self._last
                    and (not self.heard or u.text != self.heard[-1])
                ):
                    self.heard.append(u.text)
                    self.starts.append((self.ticks, u.text))
                if u.cut and u.text not in self.cut:
                    self.cut.append(u.text)
                self._last = u.id
            await asyncio.sleep(self.period)


@dataclass
class Rig:
    cfg: Config
    show: Show
    store: Store
    director: Director
    console: Console
    player: Player
    hub: EventHub
    desk: ChatDesk | None
    library: ScriptLibrary
    events: list[tuple[str, object]] = field(default_factory=list)

    async def heard(self, condition: Callable[[list[str]], bool], within: float = 20.0) -> list[str]:
        deadline = time.monotonic() + within
        while not condition(self.player.heard):
            assert time.monotonic() < deadline, f"timed out; heard {self.player.heard}"
            await asyncio.sleep(0.01)
        return self.player.heard

    async def comment(self, name: str, text: str) -> None:
        assert self.desk is not None
        await self.desk.local_feed().submit(name, text)


def library_folder(tmp_path: Path, scripts: dict[str, str]) -> Path:
    folder = tmp_path / "library"
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "scripts_library" / "products", folder / "products")
    (folder / "scripts").mkdir(parents=True)
    for name, text in scripts.items():
        (folder / "scripts" / f"{name}.toml").write_text(text, encoding="utf-8")
    return folder


def talk(script_id: str, *segments: list[str], rotation: str = "sequential", pause: float = 0.0) -> str:
    """A script file: one ``[[segments]]`` per list of sentences (``pause``: seconds after each)."""
    out = [f'id = "{script_id}"', 'language = "en"', f'rotation = "{rotation}"']
    for i, sentences in enumerate(segments, 1):
        out += ["[[segments]]", f'id = "s{i}"', f"text = {json.dumps(' '.join(sentences))}"]
        if pause:
            out.append(f"pause_after_s = {pause}")
    return "\n".join(out) + "\n"


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path,
    scripts: dict[str, str] | None = None,
    *overrides: str,
    llm_url: str = "",
    chat: bool = False,
    speed: float = 4.0,
    store_path: Path | None = None,
    start: bool = True,
) -> AsyncIterator[Rig]:
    folder = library_folder(tmp_path, scripts or {})
    cfg = load_config(
        None,
        [
            f"show.library={json.dumps(str(folder))}",
            f"voice.cache.dir={json.dumps(str(tmp_path / 'tts'))}",
            "show.fillers.enabled=false",
            "show.resume_after_s=0",
            "chat.interval_s=0",
            f"llm.base_url={json.dumps(llm_url)}",
            *overrides,
        ],
    )
    track = SpeechTrack()
    show = Show(cfg, track)
    store = Store(store_path or tmp_path / "show.sqlite3")
    library = ScriptLibrary.load(folder)
    desk = build_desk(cfg, show, store) if chat else None
    hub = EventHub()
    hub.bind(asyncio.get_running_loop())
    director = Director(
        show,
        Agenda(store),
        hub,
        cfg.show.fillers,
        library=library,
        desk=desk,
        resume_after_s=cfg.show.resume_after_s,
        boundary_s=cfg.show.boundary_s,
    )
    console = Console(director, {"default": cfg.persona, **cfg.personas})
    player = Player(track, speed)
    r = Rig(cfg, show, store, director, console, player, hub, desk, library)
    if desk is not None:
        await desk.start()
    player.start()
    if start:
        await director.start()
    try:
        yield r
    finally:
        await director.close()
        await player.stop()
        if desk is not None:
            await desk.close()
        await show.close()
        store.close()

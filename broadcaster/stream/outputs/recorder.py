"""The recorder: the program's encoded streams written to segmented files for the archive."""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from pathlib import Path

from broadcaster.stream.clock import Timing
from broadcaster.stream.encoder import StreamTemplates
from broadcaster.stream.mux import FORMAT_BY_SUFFIX, PacketMuxer
from broadcaster.stream.outputs.base import PacketOutput

log = logging.getLogger(__name__)


def segment_path(template: Path, index: int, started: float) -> Path:
    """The file of segment ``index``.

    ``{start}`` and ``{index}`` are filled in; without them, later segments get -001, -002...
    """
    text = str(template)
    if "{start" in text or "{index" in text:
        return Path(text.format(start=time.strftime("%Y%m%d-%H%M%S", time.localtime(started)), index=index))
    if index == 0:
        return template
    return template.with_name(f"{template.stem}-{index:03d}{template.suffix}")


class Recorder(PacketOutput):
    """Writes segments of about ``segment_seconds`` each, every one starting on a keyframe."""

    kind = "record"

    def __init__(
        self,
        path: Path,
        templates: StreamTemplates,
        timing: Timing,
        segment_seconds: int = 3600,
        capacity: int = 1000,
        min_free_bytes: int = 0,
    ) -> None:
        super().__init__(path.name, capacity)
        self.template = path
        self.fmt = FORMAT_BY_SUFFIX[path.suffix.lower()]
        self.segment_ticks = segment_seconds * timing.fps
        self.files: list[Path] = []
        self._recording = False
        self.min_free_bytes = min_free_bytes
        self._space_checked = 0.0
        self._space_low = False
        self._templates = templates
        self._timing = timing

    def _open(self, index: int) -> PacketMuxer:
        path = segment_path(self.template, index, time.time())
        path.parent.mkdir(parents=True, exist_ok=True)
        muxer = PacketMuxer(str(path), self.fmt, self._templates, self._timing)
        self.files.append(path)
        self._recording = False  # "recording" once a packet is written into it
        log.info("recording to %s", path)
        return muxer

    def _run(self) -> None:
        index = 0
        muxer: PacketMuxer | None = None
        # The segment just cut stays open for the audio that the AAC encoder emits after the cut's
        # keyframe but that plays before it.
        ending: PacketMuxer | None = None
        try:
            while True:
                packet = self.next_packet() if muxer is not None else self.next_keyframe()
                if self._short_of_space():
                    for open_muxer in (ending, muxer):
                        if open_muxer is not None:
                            self._close_quietly(open_muxer)
                    ending = muxer = None
                    index += 1
                    self.stats.dropped += 1
                    continue
                if ending is not None and packet.kind == "audio" and ending.owns_audio(packet):
                    ending.write(packet)
                    self.stats.packets += 1
                    continue
                if ending is not None and packet.kind == "audio":
                    self._close_quietly(ending)
                    ending = None
                if (
                    muxer is not None
                    and muxer.base_tick is not None
                    and packet.kind == "video"
                    and packet.keyframe
                    and packet.pts - muxer.base_tick >= self.segment_ticks
                ):
                    if ending is not None:
                        self._close_quietly(ending)
                    ending, muxer = muxer, None
                    ending.end_tick = packet.pts
                    index += 1
                try:
                    if muxer is None:
                        muxer = self._open(index)
                    muxer.write(packet)
                except (OSError, ValueError) as exc:
                    self.stats.state = "failing"  # until a new segment takes a packet (a full disk...)
                    self.fail(f"cannot write: {exc}; retrying at the next keyframe")
                    if muxer is not None:
                        self._close_quietly(muxer)
                        if not self._recording:  # this segment opened but took nothing: no empty file
                            with contextlib.suppress(OSError):
                                self.files.pop().unlink()
                    muxer = None
                    index += 1
                    if self.wait(1.0):
                        return
                    continue
                if not self._recording:
                    self._recording = True
                    self.stats.state = f"recording {self.files[-1]}"
                self.stats.packets += 1
                self.stats.bytes += len(packet.data)
        finally:
            for open_muxer in (ending, muxer):
                if open_muxer is not None:
                    self._close_quietly(open_muxer)

    def _short_of_space(self) -> bool:
        """Whether the folder's free space is under the floor (looked at once a second)."""
        now = time.monotonic()
        if not self.min_free_bytes or now - self._space_checked < 1.0:
            return self._space_low
        self._space_checked = now
        try:
            free = shutil.disk_usage(self.template.parent).free
        except OSError:
            return self._space_low  # a missing folder is created by _open, which reports its own errors
        # hysteresis: once low, it waits for half as much again, so it does not flap at the floor
        low = free < (self.min_free_bytes * 3 // 2 if self._space_low else self.min_free_bytes)
        if low and not self._space_low:
            self.stats.state = f"failing: disk full ({free >> 20} MB free)"
            self.fail(
                f"{free >> 20} MB free in {self.template.parent}: the segment is closed, recording pauses"
            )
        elif self._space_low and not low:
            log.info("record %s: %d MB free again; recording goes on", self.name, free >> 20)
        self._space_low = low
        return low

    def _close_quietly(self, muxer: PacketMuxer) -> None:
        try:
            muxer.close()
        except OSError as exc:
            self.fail(f"closing the segment failed: {exc}")

"""The status line: one log line every few seconds with fps, lead, lateness, drops and each output."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from broadcaster.face.lipsync.base import LipSync
from broadcaster.stream.encoder import Encoder, TickEncoder
from broadcaster.stream.outputs.base import Output
from broadcaster.stream.program import Program
from broadcaster.voice.speech_track import SpeechTrack

log = logging.getLogger("broadcaster.status")


class StatusReporter:
    """Formats the status of the program, the encoder and the outputs since the previous report."""

    def __init__(
        self,
        program: Program,
        encoder: Encoder | None,
        outputs: Sequence[Output],
        lipsync: LipSync | None = None,
        speech: SpeechTrack | None = None,
        show: Callable[[], dict[str, Any]] | None = None,
        rtc_encoder: TickEncoder | None = None,
    ) -> None:
        self.program = program
        self.encoder = encoder
        self.rtc_encoder = rtc_encoder
        self.outputs = list(outputs)
        self.lipsync = lipsync
        self.speech = speech
        self.show = show
        self._last = (time.monotonic(), 0)

    def line(self) -> str:
        """The status since the last call."""
        now, ticks = time.monotonic(), self.program.stats.ticks
        then, before = self._last
        self._last = (now, ticks)
        stats = self.program.stats
        fps = (ticks - before) / (now - then) if now > then else 0.0
        late = stats.take_interval_late()
        parts = [
            f"tick {ticks}",
            f"fps {fps:.1f}",
            f"lead {stats.lead_s * 1000:.0f}ms",
            f"late_max {late * 1000:.0f}ms" if late > float("-inf") else "late_max -",
            f"repeats {stats.repeats}",
        ]
        if self.lipsync is not None:
            ls = self.lipsync.stats
            parts.append(
                f"lipsync {self.lipsync.name} frames={ls.frames} degraded={ls.degraded_utterances}"
                f"/{ls.utterances}"
            )
        if self.show is not None:
            show = self.show()
            host, voice = show["host"], show["voice"]
            parts.append(
                f"show replies={host['replies']} lines={host['lines']} blocked={host['blocked_sentences']}"
                f" tts_fallbacks={voice['fallbacks']} unspoken={voice['unspoken']}"
            )
            chat = show.get("chat")
            if chat is not None:
                feeds = " ".join(
                    f"{name}={f['state']}/{f['events']}ev/{f['garbage']}bad"
                    for name, f in chat["feeds"].items()
                )
                parts.append(f"chat queued={chat['queued']} {feeds}".rstrip())
            director = show.get("director")
            if director is not None:
                lanes = "/".join(str(director["queued"][lane]) for lane in ("moderator", "chat", "script"))
                parts.append(
                    f"director on_air={'>'.join(director['on_air']) or '-'} queued(m/c/s)={lanes}"
                    f" review={director['review']}"
                )
        for name, encoder in (("encoder", self.encoder), ("rtc", self.rtc_encoder)):
            if encoder is not None and encoder.stats.ticks:
                parts.append(f"{name} q={encoder.queued} drop={encoder.stats.dropped}")
        parts.extend(o.status() for o in self.outputs)
        return " | ".join(parts)

    def summary(self) -> dict[str, Any]:
        """Totals for the end-of-run log line."""
        stats = self.program.stats
        result: dict[str, Any] = {
            "ticks": stats.ticks,
            "repeats": stats.repeats,
            "render_errors": stats.render_errors,
            "late_max_ms": round(stats.late_max_s * 1000, 1) if stats.ticks else None,
            "late_p50_ms": stats.lateness.percentile(50),
            "late_p99_ms": stats.lateness.percentile(99),
            "resyncs": self.program.clock.resyncs,
        }
        if self.lipsync is not None:
            result["lipsync"] = {"backend": self.lipsync.name, **self.lipsync.stats.as_dict()}
        if self.speech is not None:
            result["speech"] = {"samples": self.speech.samples_spoken, "held_ticks": self.speech.held_ticks}
        if self.show is not None:
            result.update(self.show())
        for name, encoder in (("encoder", self.encoder), ("rtc_encoder", self.rtc_encoder)):
            if encoder is not None:
                e = encoder.stats
                result[name] = {
                    "ticks": e.ticks,
                    "dropped": e.dropped,
                    "packets": e.packets,
                    "keyframes": e.keyframes,
                    "encode_s": round(e.encode_s, 2),
                }
        result["outputs"] = [
            {
                "kind": o.kind,
                "name": o.name,
                "state": o.stats.state,
                "packets": o.stats.packets,
                "dropped": o.stats.dropped,
                "reconnects": o.stats.reconnects,
                "errors": o.stats.errors,
                **({"files": [str(f) for f in o.files]} if hasattr(o, "files") else {}),
            }
            for o in self.outputs
        ]
        return result

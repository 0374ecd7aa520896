"""/metrics: the run's figures in the Prometheus text format, read from one stats dict at scrape time.

Nothing is counted twice: ``ShowCollector`` calls the stats callable (the run summary's shape: see
``StatusReporter.summary`` and ``docs/control-api.md``) on every scrape and turns what it finds into
metric families. Every section is optional; a component that is absent simply has no series.
``snapshot`` is the compact form the dashboard receives on the hub's ``metrics`` topic.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

Stats = Callable[[], Mapping[str, Any]]
P = "broadcaster_"
# the words an output's state starts with ("retrying in 4s" is "retrying"); each gets a 1/0 series
OUTPUT_STATES = ("starting", "connecting", "live", "recording", "failing", "retrying", "crashed", "closed")
FEED_STATES = ("idle", "connecting", "live", "backoff", "failed", "closed")


class TickRate:
    """Frames per second over the last few seconds, from the tick counter's successive readings."""

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.clock = clock
        self._samples: deque[tuple[float, int]] = deque()

    def update(self, ticks: int) -> float | None:
        """Record a reading; the rate over the window (None until two readings are apart in time)."""
        now = self.clock()
        samples = self._samples
        samples.append((now, ticks))
        while len(samples) > 2 and now - samples[1][0] >= self.window_s:
            samples.popleft()
        then, before = samples[0]
        return (ticks - before) / (now - then) if now > then and ticks >= before else None


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, int | float) else None


def _sec(ms: Any) -> float | None:
    value = _num(ms)
    return None if value is None else value / 1000


def _review_pending(director: Mapping[str, Any]) -> Any:
    return director.get("review_pending", director.get("review"))


def _dict(stats: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = stats.get(key)
    return value if isinstance(value, Mapping) else {}


class _Families:
    """Metric families keyed by name, created on first use."""

    def __init__(self) -> None:
        self.families: dict[str, Metric] = {}

    def add(
        self,
        kind: str,
        name: str,
        doc: str,
        value: Any,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        number = _num(value)
        if number is None:
            return
        labels = labels or {}
        family = self.families.get(name)
        if family is None:
            cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            family = cls(P + name, doc, labels=list(labels))
            self.families[name] = family
        family.add_metric(list(labels.values()), number)  # type: ignore[attr-defined]

    def counter(self, name: str, doc: str, value: Any, labels: Mapping[str, str] | None = None) -> None:
        self.add("counter", name, doc, value, labels)

    def gauge(self, name: str, doc: str, value: Any, labels: Mapping[str, str] | None = None) -> None:
        self.add("gauge", name, doc, value, labels)

    def states(self, name: str, doc: str, known: tuple[str, ...], state: str, labels: dict[str, str]) -> None:
        current = (state.split() or ["unknown"])[0].lower()
        for s in (*known, *([] if current in known else [current])):
            self.gauge(name, doc, int(s == current), {**labels, "state": s})


class ShowCollector(Collector):
    """A prometheus-client collector over ``stats()`` (see the module docstring)."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.rate = TickRate()

    def collect(self) -> Iterator[Metric]:
        """The families of one scrape."""
        stats = self.stats()
        f = _Families()
        f.gauge("up", "1 while the process serves.", 1)
        self._program(stats, f)
        self._outputs(stats, f)
        self._voice(stats, f)
        self._chat(stats, f)
        self._director(stats, f)
        self._control(stats, f)
        yield from f.families.values()

    def _program(self, stats: Mapping[str, Any], f: _Families) -> None:
        ticks = stats.get("ticks")
        f.counter("program_ticks", "Ticks rendered.", ticks)
        fps = stats.get("fps")
        if fps is None and isinstance(ticks, int):
            fps = self.rate.update(ticks)
        f.gauge("program_fps", "Ticks per second over the last seconds.", fps)
        f.gauge(
            "program_lead_seconds",
            "How far the renderer runs ahead of the wall clock.",
            _sec(stats.get("lead_ms")),
        )
        f.counter("program_repeats", "Pictures repeated (late ticks, render failures).", stats.get("repeats"))
        f.counter("program_render_errors", "Pictures that failed to render.", stats.get("render_errors"))
        f.counter("program_resyncs", "Clock re-anchorings after falling far behind.", stats.get("resyncs"))
        doc = "Tick lateness at hand-off (negative: ahead of its deadline)."
        for q, key in (("0.5", "late_p50_ms"), ("0.99", "late_p99_ms"), ("1", "late_max_ms")):
            f.gauge("program_lateness_seconds", doc, _sec(stats.get(key)), {"quantile": q})
        enc = _dict(stats, "encoder")
        f.gauge("encoder_queue", "Ticks waiting for the encoder.", enc.get("queued"))
        f.counter("encoder_ticks", "Ticks encoded.", enc.get("ticks"))
        f.counter("encoder_dropped", "Ticks the encoder dropped.", enc.get("dropped"))
        f.counter("encoder_packets", "Packets encoded.", enc.get("packets"))
        f.counter("encoder_keyframes", "Keyframes encoded.", enc.get("keyframes"))
        lip = _dict(stats, "lipsync")
        labels = {"backend": str(lip.get("backend", ""))}
        f.counter("lipsync_frames", "Frames lip-synced.", lip.get("frames"), labels)
        f.counter("lipsync_utterances", "Utterances lip-synced.", lip.get("utterances"), labels)
        f.counter(
            "lipsync_degraded_utterances",
            "Utterances on the cheaper path.",
            lip.get("degraded_utterances"),
            labels,
        )
        speech = _dict(stats, "speech")
        f.counter("speech_samples", "Speech samples played.", speech.get("samples"))
        f.counter("speech_held_ticks", "Ticks speech waited for its lip-sync.", speech.get("held_ticks"))

    def _outputs(self, stats: Mapping[str, Any], f: _Families) -> None:
        outputs = stats.get("outputs")
        for o in outputs if isinstance(outputs, list) else []:
            if not isinstance(o, Mapping):
                continue
            labels = {"output": str(o.get("name", "")), "kind": str(o.get("kind", ""))}
            f.states(
                "output_state",
                "1 for the output's current state.",
                OUTPUT_STATES,
                str(o.get("state", "")),
                labels,
            )
            f.counter("output_packets", "Packets sent.", o.get("packets"), labels)
            f.counter("output_dropped", "Packets dropped.", o.get("dropped"), labels)
            f.counter("output_reconnects", "Reconnections.", o.get("reconnects"), labels)
            f.counter("output_errors", "Errors.", o.get("errors"), labels)

    def _voice(self, stats: Mapping[str, Any], f: _Families) -> None:
        voice = _dict(stats, "voice")
        f.counter("tts_fallbacks", "Sentences a later TTS engine spoke.", voice.get("fallbacks"))
        f.counter("tts_unspoken", "Sentences no engine could speak.", voice.get("unspoken"))
        for name, e in _dict(voice, "engines").items():
            if isinstance(e, Mapping):
                labels = {"engine": str(name)}
                f.counter("tts_sentences", "Sentences asked of the engine.", e.get("sentences"), labels)
                f.counter("tts_failures", "Engine failures.", e.get("failures"), labels)
                f.counter("tts_timeouts", "Engine timeouts.", e.get("timeouts"), labels)
                f.counter("tts_garbage", "Answers that were not speech.", e.get("garbage"), labels)
                f.gauge("tts_failing", "Engine failures in a row (0: it speaks).", e.get("failing"), labels)
                f.gauge(
                    "tts_first_audio_seconds",
                    "Median time to first audio.",
                    _sec(e.get("first_audio_p50_ms")),
                    labels,
                )
        cache = _dict(voice, "cache")
        for key in ("hits", "misses", "writes", "evictions"):
            f.counter(f"tts_cache_{key}", f"Audio cache {key}.", cache.get(key))
        host = _dict(stats, "host")
        f.counter("replies", "Chat replies performed.", host.get("replies"))
        f.counter("replies_failed", "Replies that failed.", host.get("failed"))
        f.counter("replies_cancelled", "Replies cut short.", host.get("cancelled"))
        f.counter("lines", "Scripted or moderator lines performed.", host.get("lines"))
        f.counter(
            "blocked_sentences", "Sentences the safety filter held back.", host.get("blocked_sentences")
        )
        f.counter(
            "avatar_load_failures",
            "Avatars that could not be loaded.",
            _dict(stats, "avatar").get("load_failures"),
        )
        llm = _dict(stats, "llm")
        f.counter("llm_requests", "LLM requests.", llm.get("requests"))
        f.counter("llm_failures", "LLM requests that failed.", llm.get("failures"))
        f.gauge("llm_failing", "LLM requests failed in a row (0: it answers).", llm.get("failing"))
        f.counter("llm_cancelled", "LLM requests cancelled.", llm.get("cancelled"))
        f.gauge(
            "llm_first_token_seconds", "Median time to the first token.", _sec(llm.get("first_token_p50_ms"))
        )
        for key, count in _dict(stats, "safety").items():
            kind, _, value = str(key).partition(":")
            f.counter("safety_decisions", "Safety filter decisions.", count, {"kind": kind, "value": value})

    def _chat(self, stats: Mapping[str, Any], f: _Families) -> None:
        chat = _dict(stats, "chat")
        f.gauge("chat_queued", "Chat candidates waiting for an answer.", chat.get("queued"))
        f.counter("chat_log_failures", "Chat log writes that failed.", chat.get("log_failures"))
        for reason, count in _dict(chat, "decisions").items():
            f.counter("chat_decisions", "Triage decisions by reason.", count, {"reason": str(reason)})
        for name, feed in _dict(chat, "feeds").items():
            if not isinstance(feed, Mapping):
                continue
            labels = {"feed": str(name)}
            f.states(
                "chat_feed_state",
                "1 for the feed's current state.",
                FEED_STATES,
                str(feed.get("state", "")),
                labels,
            )
            for key in (
                "events",
                "garbage",
                "frames",
                "connects",
                "disconnects",
                "auth_failures",
                "silent_timeouts",
            ):
                f.counter(f"chat_feed_{key}", f"Feed {key.replace('_', ' ')}.", feed.get(key), labels)

    def _director(self, stats: Mapping[str, Any], f: _Families) -> None:
        director = _dict(stats, "director")
        for lane, depth in (_dict(director, "lanes") or _dict(director, "queued")).items():
            f.gauge("queue_depth", "Items queued per lane.", depth, {"lane": str(lane)})
        f.gauge("review_pending", "Replies waiting for a moderator.", _review_pending(director))
        f.gauge(
            "reply_seconds",
            "Median time from a comment to its reply on air.",
            _sec(director.get("reply_p50_ms")),
        )
        f.counter("interrupts", "Moderator interrupts.", director.get("interrupts"))

    def _control(self, stats: Mapping[str, Any], f: _Families) -> None:
        control = _dict(stats, "control")
        f.gauge("control_clients", "Consoles connected.", control.get("clients"))
        f.counter("control_commands", "Commands done.", control.get("commands"))
        f.counter("control_errors", "Error replies.", control.get("errors"))
        f.counter(
            "control_auth_failures", "Refused tokens and commands before auth.", control.get("auth_failures")
        )
        f.counter(
            "control_events_dropped", "Events dropped for slow consoles.", control.get("events_dropped")
        )
        f.counter("control_rate_limited", "Refused by a rate limit.", control.get("rate_limited"))
        f.counter("control_refused", "WebSockets refused (Origin, cap).", control.get("refused"))
        preview = _dict(stats, "preview")
        f.counter("preview_frames", "Preview pictures published.", preview.get("frames"))
        f.counter("preview_frames_dropped", "Preview pictures dropped.", preview.get("frames_dropped"))
        f.counter("preview_audio_chunks", "Preview sound chunks published.", preview.get("audio_chunks"))
        f.counter("preview_errors", "Preview encoding errors.", preview.get("errors"))
        webrtc = _dict(stats, "webrtc_preview")
        f.gauge("webrtc_watching", "WebRTC preview viewers watching now.", webrtc.get("watching"))
        f.counter("webrtc_viewers", "WebRTC preview viewers since start.", webrtc.get("viewers"))
        f.counter("webrtc_viewers_refused", "WebRTC preview offers refused.", webrtc.get("refused"))
        f.counter("webrtc_viewers_failed", "WebRTC previews that never connected.", webrtc.get("failed"))
        f.counter("webrtc_preview_packets", "Packets sent to WebRTC previews.", webrtc.get("packets"))
        f.counter("webrtc_preview_dropped", "Packets WebRTC previews lost.", webrtc.get("dropped"))


class Metrics:
    """A private registry holding one ``ShowCollector``; ``render`` is the /metrics body."""

    def __init__(self, stats: Stats) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = ShowCollector(stats)
        self.registry.register(self.collector)

    def render(self) -> bytes:
        """The Prometheus text exposition of the current figures."""
        return generate_latest(self.registry)


def snapshot(stats: Mapping[str, Any], fps: float | None = None) -> dict[str, Any]:
    """The figures a dashboard shows, in a small JSON-ready dict (absent sections are left out)."""
    out: dict[str, Any] = {
        "ticks": stats.get("ticks"),
        "fps": stats.get("fps", None if fps is None else round(fps, 2)),
        "lead_ms": stats.get("lead_ms"),
        "late_p50_ms": stats.get("late_p50_ms"),
        "late_p99_ms": stats.get("late_p99_ms"),
        "repeats": stats.get("repeats"),
        "render_errors": stats.get("render_errors"),
    }
    enc = _dict(stats, "encoder")
    if enc:
        out["encoder"] = {"queued": enc.get("queued"), "dropped": enc.get("dropped")}
    outputs = stats.get("outputs")
    if isinstance(outputs, list):
        out["outputs"] = [
            {k: o.get(k) for k in ("name", "kind", "state", "packets", "dropped", "reconnects")}
            for o in outputs
            if isinstance(o, Mapping)
        ]
    chat = _dict(stats, "chat")
    if chat:
        feeds = _dict(chat, "feeds")
        out["chat"] = {
            "queued": chat.get("queued"),
            "feeds": {
                n: {"state": v.get("state"), "events": v.get("events")}
                for n, v in feeds.items()
                if isinstance(v, Mapping)
            },
        }
    voice, llm, director = _dict(stats, "voice"), _dict(stats, "llm"), _dict(stats, "director")
    if voice:
        out["tts"] = {"fallbacks": voice.get("fallbacks"), "unspoken": voice.get("unspoken")}
    if llm:
        out["llm"] = {"failures": llm.get("failures"), "first_token_p50_ms": llm.get("first_token_p50_ms")}
    if director:
        lanes = _dict(director, "lanes") or _dict(director, "queued")
        out["director"] = {"lanes": dict(lanes), "review_pending": _review_pending(director)}
        if "reply_p50_ms" in director:
            out["director"]["reply_p50_ms"] = director["reply_p50_ms"]
    return {k: v for k, v in out.items() if v is not None}

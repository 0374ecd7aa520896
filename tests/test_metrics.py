"""/metrics: the collector over the run's stats dict, and its text served over real HTTP."""

from __future__ import annotations

from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from broadcaster.control.metrics import Metrics, TickRate, snapshot
from tests.control_helpers import TOKEN, running_server

# the shape of StatusReporter.summary() with the show and chat stats merged in, plus the director's
STATS: dict[str, Any] = {
    "ticks": 2500,
    "fps": 25.0,
    "lead_ms": 280.0,
    "repeats": 3,
    "render_errors": 1,
    "late_max_ms": 40.0,
    "late_p50_ms": -250.0,
    "late_p99_ms": 12.0,
    "resyncs": 0,
    "lipsync": {
        "backend": "classic",
        "utterances": 4,
        "frames": 300,
        "degraded_utterances": 1,
        "degraded_frames": 2,
    },
    "speech": {"samples": 96000, "held_ticks": 2},
    "voice": {
        "fallbacks": 2,
        "unspoken": 1,
        "engines": {"edge": {"sentences": 10, "failures": 2, "timeouts": 1, "first_audio_p50_ms": 420.0}},
        "cache": {"hits": 5, "misses": 6, "writes": 6, "evictions": 0},
    },
    "host": {"replies": 7, "failed": 1, "cancelled": 2, "lines": 3, "blocked_sentences": 1},
    "safety": {"action:block": 1, "rule:price": 2},
    "llm": {"requests": 9, "failures": 1, "cancelled": 2, "first_token_p50_ms": 350.0},
    "chat": {
        "feeds": {"bili": {"state": "live", "events": 120, "garbage": 2, "frames": 40, "connects": 1}},
        "queued": 5,
        "decisions": {"queued": 60, "duplicate": 4},
        "log_failures": 0,
    },
    "encoder": {"ticks": 2500, "dropped": 1, "packets": 5000, "keyframes": 50, "queued": 2},
    "outputs": [
        {
            "kind": "rtmp",
            "name": "main",
            "state": "retrying in 4s",
            "packets": 4000,
            "dropped": 10,
            "reconnects": 2,
            "errors": 2,
        },
        {
            "kind": "recorder",
            "name": "disk",
            "state": "recording out.flv",
            "packets": 5000,
            "dropped": 0,
            "reconnects": 0,
            "errors": 0,
        },
    ],
    "director": {
        "lanes": {"moderator": 1, "chat": 3, "script": 2},
        "review_pending": 2,
        "reply_p50_ms": 1800.0,
    },
}


def parse(text: bytes) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Samples by name, then by their sorted labels."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def one(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float:
    return samples["broadcaster_" + name][tuple(sorted(labels.items()))]


def test_every_section_of_the_stats_becomes_metrics() -> None:
    s = parse(Metrics(lambda: STATS).render())
    assert one(s, "program_ticks_total") == 2500
    assert one(s, "program_fps") == 25.0
    assert one(s, "program_lead_seconds") == 0.28
    assert one(s, "program_lateness_seconds", quantile="0.99") == 0.012
    assert one(s, "program_lateness_seconds", quantile="0.5") == -0.25
    assert one(s, "program_repeats_total") == 3 and one(s, "program_render_errors_total") == 1
    assert one(s, "encoder_queue") == 2 and one(s, "encoder_dropped_total") == 1
    assert one(s, "output_state", output="main", kind="rtmp", state="retrying") == 1
    assert one(s, "output_state", output="main", kind="rtmp", state="live") == 0
    assert one(s, "output_state", output="disk", kind="recorder", state="recording") == 1
    assert one(s, "output_packets_total", output="main", kind="rtmp") == 4000
    assert one(s, "output_reconnects_total", output="main", kind="rtmp") == 2
    assert one(s, "chat_queued") == 5
    assert one(s, "chat_feed_events_total", feed="bili") == 120
    assert one(s, "chat_feed_garbage_total", feed="bili") == 2
    assert one(s, "chat_feed_state", feed="bili", state="live") == 1
    assert one(s, "chat_feed_state", feed="bili", state="backoff") == 0
    assert one(s, "chat_decisions_total", reason="duplicate") == 4
    assert one(s, "llm_first_token_seconds") == 0.35 and one(s, "llm_failures_total") == 1
    assert one(s, "tts_fallbacks_total") == 2 and one(s, "tts_failures_total", engine="edge") == 2
    assert one(s, "tts_first_audio_seconds", engine="edge") == 0.42
    assert one(s, "replies_total") == 7 and one(s, "replies_failed_total") == 1
    assert one(s, "safety_decisions_total", kind="rule", value="price") == 2
    assert one(s, "queue_depth", lane="chat") == 3
    assert one(s, "review_pending") == 2 and one(s, "reply_seconds") == 1.8
    assert one(s, "lipsync_degraded_utterances_total", backend="classic") == 1


def test_absent_components_have_no_series() -> None:
    s = parse(Metrics(dict).render())
    assert set(s) == {"broadcaster_up"}
    partial = {"ticks": 10, "outputs": [{"name": "x", "state": "live"}], "chat": {"feeds": {"f": "garbage"}}}
    s = parse(Metrics(lambda: partial).render())
    assert one(s, "output_state", output="x", kind="", state="live") == 1
    assert "broadcaster_chat_feed_events_total" not in s and "broadcaster_encoder_queue" not in s


def test_fps_is_derived_from_the_tick_counter_when_absent() -> None:
    now = [100.0]
    rate = TickRate(window_s=5.0, clock=lambda: now[0])
    assert rate.update(0) is None
    now[0] = 102.0
    assert rate.update(50) == 25.0
    now[0] = 110.0
    assert rate.update(450) == 50.0  # the reading at 100 s left the window (else 45)


def test_the_snapshot_is_small_and_skips_what_is_absent() -> None:
    snap = snapshot(STATS)
    assert snap["fps"] == 25.0 and snap["outputs"][0]["state"] == "retrying in 4s"
    assert snap["chat"] == {"queued": 5, "feeds": {"bili": {"state": "live", "events": 120}}}
    assert snap["director"]["review_pending"] == 2
    # the director's own stats() names them "queued" and "review"
    real = parse(Metrics(lambda: {"director": {"queued": {"script": 4}, "review": 3}}).render())
    assert one(real, "queue_depth", lane="script") == 4 and one(real, "review_pending") == 3
    assert snapshot({"ticks": 5}, fps=24.987) == {"ticks": 5, "fps": 24.99}


async def test_metrics_are_served_with_the_servers_own_counters() -> None:
    async with running_server(stats=lambda: STATS) as server:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession() as http, http.get(server.url + "metrics", headers=bearer) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=")
            s = parse(await r.read())
        assert one(s, "program_ticks_total") == 2500
        assert one(s, "control_clients") == 0
        assert "broadcaster_control_commands_total" in s


async def test_a_failing_stats_callable_is_a_500_not_a_dead_server() -> None:
    def broken() -> dict[str, Any]:
        raise KeyError("program")

    async with running_server(stats=broken) as server, aiohttp.ClientSession() as http:
        async with http.get(server.url + "metrics", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 500
        async with http.get(server.url + "healthz") as r:
            assert r.status == 200

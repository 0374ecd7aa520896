"""The fault table: each fault injected into a running show, timed, and checked for losses.

Each fault runs against the whole show in this process (``bench.fault_kit.stage``) with real servers
around it. A fault is injected, must show in /healthz (the component not ok, or a named figure) and in
/metrics (its counter moving); the cause is then removed and the recovery timed (the component ok
again and the work flowing). Meanwhile the program must keep ticking (lateness p99 and max over the
fault, pictures repeated), and nothing accepted may be lost: the queue, the chat log, what was said.

    python bench/faults.py                 # every fault: a table, then RESULT {json}
    python bench/faults.py llm_500 tts_hang

The process faults (SIGTERM during speech, SIGKILL and restart) are in ``bench.fault_process``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.fault_kit import REPLY, Stage, stage, wait_for  # noqa: E402
from tests.json_relay_server import plain_frame  # noqa: E402


@dataclass
class Outcome:
    """One row of the fault table."""

    fault: str
    shown: str  # how it showed in /healthz and /metrics
    detected_s: float | None  # from injection to /healthz saying so
    recovery_s: float | None  # from the cause removed to recovered
    lost: list[str] = field(default_factory=list)
    late_p99_ms: float = 0.0
    late_max_ms: float = 0.0
    repeats: int = 0
    notes: str = ""

    @property
    def ok(self) -> bool:
        """Seen, recovered, nothing lost, and the program on time (lateness under a tick)."""
        return bool(self.shown) and self.recovery_s is not None and not self.lost and self.late_max_ms < 40


Scenario = Callable[[Stage], Awaitable[Outcome]]
SCENARIOS: dict[str, tuple[Scenario, frozenset[str], tuple[str, ...]]] = {}


def scenario(*needs: str, overrides: tuple[str, ...] = ()) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        SCENARIOS[fn.__name__] = (fn, frozenset(needs), overrides)
        return fn

    return register


def finish(st: Stage, outcome: Outcome) -> Outcome:
    outcome.late_p99_ms, outcome.late_max_ms, outcome.repeats = st.lateness()
    return outcome


# -- outputs -----------------------------------------------------------------------------------------


async def _output_fault(
    st: Stage, name: str, inject: Callable[[], None], heal: Callable[[], None], outage_s: float = 2.0
) -> Outcome:
    component = f"output:{name}"
    await st.healthy(component, True, 30)
    reconnects = await st.probe.metric("output_reconnects_total", output=name, kind=_kind(name))
    st.mark()
    inject()
    detected = await st.healthy(component, False, 20)
    await asyncio.sleep(outage_s)
    heal()
    recovery = await st.healthy(component, True, 30)
    moved = await st.probe.metric("output_reconnects_total", output=name, kind=_kind(name)) - reconnects
    shown = f"/healthz {component} not ok; output_reconnects +{moved:g}" if moved >= 1 else ""
    return finish(st, Outcome(component, shown, detected, recovery))


def _kind(name: str) -> str:
    return {"nginx": "rtmp", "whip": "whip"}[name]


@scenario("nginx")
async def rtmp_killed(st: Stage) -> Outcome:
    assert st.nginx is not None
    out = await _output_fault(st, "nginx", st.nginx.kill, st.nginx.start)
    out.fault = "RTMP server killed, restarted"
    return out


@scenario("nginx")
async def rtmp_stalled(st: Stage) -> Outcome:
    assert st.nginx is not None
    out = await _output_fault(st, "nginx", st.nginx.pause, st.nginx.resume)
    out.fault = "RTMP server stalled (SIGSTOP), resumed"
    return out


@scenario("whip")
async def whip_dropped(st: Stage) -> Outcome:
    assert st.whip is not None
    whip = st.whip

    def drop() -> None:
        asyncio.get_running_loop().create_task(whip.drop())

    out = await _output_fault(st, "whip", drop, lambda: None, outage_s=0.0)  # it republishes by itself
    sessions = len(whip.sessions)
    if sessions < 2:
        out.lost.append(f"the endpoint saw {sessions} session(s): not republished")
    out.fault = "WHIP endpoint dropped the connection"
    return out


@scenario("disk")
async def disk_full(st: Stage) -> Outcome:
    assert st.recordings is not None
    component = "output:show.mkv"
    await st.healthy(component, True, 30)
    first = st.recordings / "show.mkv"
    await wait_for(lambda: _now(first.is_file() and first.stat().st_size > 100_000), 20, "the recording")
    errors = await st.probe.metric("output_errors_total", output="show.mkv", kind="record")
    st.mark()
    ballast = st.recordings / "ballast"
    with ballast.open("wb") as f:  # the disk fills up
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass
    detected = await st.healthy(component, False, 20)
    await asyncio.sleep(2.0)
    ballast.unlink()
    recovery = await st.healthy(component, True, 20)
    moved = await st.probe.metric("output_errors_total", output="show.mkv", kind="record") - errors
    out = Outcome("recorder's disk full, space freed", "", detected, recovery)
    if moved >= 1:
        out.shown = f"/healthz {component} not ok; output_errors +{moved:g}"
    files = sorted(st.recordings.glob("show*.mkv"))
    if len(files) < 2:
        out.lost.append(f"recording did not go on in a new file: {[f.name for f in files]}")
    if not first.is_file() or not _playable(first):
        out.lost.append("show.mkv (written before the disk filled) is unreadable")
    return finish(st, out)


def _playable(path: Path) -> bool:
    import av  # noqa: PLC0415

    try:
        with av.open(str(path)) as container:
            return any(True for _ in container.decode(video=0))
    except av.FFmpegError as exc:
        print(f"{path} ({path.stat().st_size} bytes): {exc}", file=sys.stderr)
        return False


# -- speech ------------------------------------------------------------------------------------------


async def _tts_fault(st: Stage, mode: str, counter: str, fault: str) -> Outcome:
    st.speech.mode = mode  # type: ignore[assignment]
    st.mark()
    app = st.show.app
    lines = ["First words while the voice server is broken.", "Second words, still broken."]
    before = await st.probe.metric(counter, engine="openai")
    await app.console.say(" ".join(lines), "next")
    detected = await st.healthy("tts:openai", False, 30)
    lost = []
    for line in lines:
        try:
            await st.said(line, 30)
        except TimeoutError:
            lost.append(f"{line!r} never said")
    moved = await st.probe.metric(counter, engine="openai") - before
    st.speech.mode = "ok"
    healed = time.monotonic()
    recovery = None
    # the resting engine is tried again once its rest is over: keep lines coming until it speaks
    for i in range(12):
        await app.console.say(f"Line {i + 1} after the voice server is back.", "next")
        try:
            await st.healthy("tts:openai", True, 5)
            recovery = time.monotonic() - healed
            break
        except TimeoutError:
            continue
    shown = f"/healthz tts:openai not ok; {counter.removesuffix('_total')} +{moved:g}" if moved >= 1 else ""
    return finish(st, Outcome(fault, shown, detected, recovery, lost))


@scenario("tts")
async def tts_error(st: Stage) -> Outcome:
    return await _tts_fault(st, "error", "tts_failures_total", "TTS engine errors (HTTP 500)")


@scenario("tts")
async def tts_hang(st: Stage) -> Outcome:
    return await _tts_fault(st, "hang", "tts_timeouts_total", "TTS engine hangs")


@scenario("tts")
async def tts_garbage(st: Stage) -> Outcome:
    return await _tts_fault(st, "garbage", "tts_garbage_total", "TTS engine returns garbage audio")


# -- the LLM -----------------------------------------------------------------------------------------


async def _comment(st: Stage, user: str, text: str) -> None:
    await st.show.app.desk.local_feed().submit(user, text)


async def _now(value: bool) -> bool:
    return value


def _logged(st: Stage, text: str) -> bool:
    return bool(st.rows("SELECT 1 FROM chat_events WHERE text = ?", text))


def _answers(st: Stage, first: str) -> list[tuple[object, ...]]:
    return st.rows("SELECT seq FROM on_air WHERE text LIKE ?", first + "%")


async def _llm_fault(st: Stage, mode: str, fault: str) -> Outcome:
    first = REPLY.split(",")[0]
    st.llm.mode = mode  # type: ignore[assignment]
    st.mark()
    before = await st.probe.metric("llm_failures_total")
    started = time.monotonic()
    question = "Is the tea fresh today?"
    await _comment(st, "amy", question)
    detected = await st.healthy("llm", False, 30)
    lost = [] if _logged(st, question) else [f"comment {question!r} not in the chat log"]
    if mode == "stall":
        try:
            await st.said(first, 10)  # what it wrote before stalling was said, and stays in the log
        except TimeoutError:
            lost.append("the sentence written before the stall was not said")
    moved = await st.probe.metric("llm_failures_total") - before
    # down for longer than the one retry of a failed reply (director.REPLY_RETRY_S)
    await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - started)))
    st.llm.mode = "ok"
    healed = time.monotonic()
    answers = len(_answers(st, first))
    await _comment(st, "ben", "And how much is it?")
    await st.healthy("llm", True, 30)
    await wait_for(lambda: _now(len(_answers(st, first)) > answers), 30, "an answer after the recovery")
    recovery = time.monotonic() - healed
    shown = f"/healthz llm not ok; llm_failures +{moved:g}" if moved >= 1 else ""
    return finish(st, Outcome(fault, shown, detected, recovery, lost))


@scenario(overrides=("persona.memory_turns=0",))
async def llm_500(st: Stage) -> Outcome:
    out = await _llm_fault(st, "error", "LLM returns HTTP 500")
    rows = st.rows("SELECT decision, reason FROM chat_events WHERE text = ?", "Is the tea fresh today?")
    out.notes = (
        f"the failed comment's chat-log row (decision, reason): {rows}; LLM requests {st.llm.requests}"
    )
    return out


@scenario()
async def llm_stall(st: Stage) -> Outcome:
    return await _llm_fault(st, "stall", "LLM stalls mid-stream")


@scenario()
async def llm_banned(st: Stage) -> Outcome:
    st.llm.mode = "banned"
    st.mark()
    before = await st.probe.metric("blocked_sentences_total")
    started = time.monotonic()
    await _comment(st, "amy", "Is this tea good for me?")
    await st.said(REPLY.split(",")[0], 30)
    detected = time.monotonic() - started
    moved = await st.probe.metric("blocked_sentences_total") - before
    banned = st.rows("SELECT text FROM on_air WHERE text LIKE '%cure%'")
    lost = [f"banned sentence on air: {banned}"] if banned else []
    health = await st.probe.component("llm")
    shown = f"blocked_sentences +{moved:g}; /healthz llm ok={health.get('ok')}" if moved >= 1 else ""
    out = Outcome("LLM writes banned content", shown, detected, 0.0, lost)
    out.notes = "content, not a failure: the sentence is held back, the rest of the reply is said"
    return finish(st, out)


# -- chat --------------------------------------------------------------------------------------------


async def _relay_connected(st: Stage) -> None:
    assert st.relay is not None
    await st.healthy("feed:relay", True, 20)
    await st.relay.wait_for(lambda: st.relay is not None and st.relay.clients >= 1, 20)


@scenario("relay")
async def chat_garbage(st: Stage) -> Outcome:
    assert st.relay is not None
    await _relay_connected(st)
    st.mark()
    before = await st.probe.metric("chat_feed_garbage_total", feed="relay")
    started = time.monotonic()
    junk: list[str | bytes] = [
        "{not json",
        "[]",
        '{"user": 5}',
        b"\xff\xfe\x00",
        "null",
        '{"text": ""}',
        "x" * 70000,
    ]
    texts = [f"real comment number {i}" for i in range(5)]
    for i, text in enumerate(texts):
        await st.relay.push(junk[i % len(junk)], plain_frame(f"viewer{i}", text), junk[(i + 3) % len(junk)])
    lost = []
    try:
        await wait_for(lambda: _now(all(_logged(st, t) for t in texts)), 15, "the real comments logged")
    except TimeoutError:
        lost = [f"{t!r} not in the chat log" for t in texts if not _logged(st, t)]
    detected = time.monotonic() - started
    moved = await st.probe.metric("chat_feed_garbage_total", feed="relay") - before
    health = await st.probe.component("feed:relay")
    shown = f"chat_feed_garbage +{moved:g}; /healthz feed:relay {health.get('state')}" if moved >= 1 else ""
    out = Outcome("chat feed sends garbage", shown, detected, 0.0 if health.get("ok") else None, lost)
    return finish(st, out)


@scenario("relay")
async def chat_silent(st: Stage) -> Outcome:
    assert st.relay is not None and st.proxy is not None
    await _relay_connected(st)
    st.mark()
    before = await st.probe.metric("chat_feed_silent_timeouts_total", feed="relay")
    st.proxy.freeze()  # the connection stays open and says nothing, not even pongs
    detected = await st.healthy("feed:relay", False, 20)
    moved = await st.probe.metric("chat_feed_silent_timeouts_total", feed="relay") - before
    st.proxy.thaw()
    healed = time.monotonic()
    await st.healthy("feed:relay", True, 20)
    await st.relay.wait_for(lambda: st.relay is not None and st.relay.clients >= 1, 20)
    text = "hello again after the silence"
    await st.relay.push(plain_frame("viewer", text))
    lost = []
    try:
        await wait_for(lambda: _now(_logged(st, text)), 10, "the comment logged")
    except TimeoutError:
        lost.append("a comment after the reconnect was not logged")
    recovery = time.monotonic() - healed
    shown = f"/healthz feed:relay not ok; chat_feed_silent_timeouts +{moved:g}" if moved >= 1 else ""
    return finish(st, Outcome("chat feed goes silent", shown, detected, recovery, lost))


FLOOD = 3000


@scenario("relay")
async def chat_flood(st: Stage) -> Outcome:
    assert st.relay is not None
    await _relay_connected(st)
    st.mark()
    before = await st.probe.metric("chat_feed_events_total", feed="relay")
    started = time.monotonic()
    frames = [plain_frame(f"fan{i % 400}", f"flood message {i} how much is the tea") for i in range(FLOOD)]
    for i in range(0, FLOOD, 100):
        await st.relay.push(*frames[i : i + 100])
    lost: list[str] = []

    def count() -> int:
        return int(st.rows("SELECT count(*) FROM chat_events WHERE text LIKE 'flood message %'")[0][0])

    try:
        await wait_for(lambda: _now(count() >= FLOOD), 60, "the flood logged")
    except TimeoutError:
        lost.append(f"{FLOOD - count()} of {FLOOD} comments not in the chat log")
    recovery = time.monotonic() - started
    moved = await st.probe.metric("chat_feed_events_total", feed="relay") - before
    queued = await st.probe.metric("chat_queued")
    health = await st.probe.health()
    shown = f"chat_feed_events +{moved:g}, chat_queued {queued:g}; /healthz ok={health['ok']}"
    out = Outcome(f"chat flood ({FLOOD} comments in {recovery:.1f} s)", shown, 0.0, recovery, lost)
    out.notes = (
        f"all {FLOOD} logged; the queue holds its bound (chat.queue_size), the rest are logged as dropped"
    )
    return finish(st, out)


# -- the avatar --------------------------------------------------------------------------------------


@scenario("avatars")
async def avatar_corrupt(st: Stage) -> Outcome:
    import shutil  # noqa: PLC0415

    app = st.show.app
    root = app.cfg.resolve(app.cfg.avatar.dir)
    broken = root / "faults-broken"
    shutil.copytree(root / app.cfg.avatar.name, broken, ignore=shutil.ignore_patterns(".cache"))
    try:
        (broken / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)  # truncated, corrupt
        (broken / "landmarks.npy").write_bytes(b"not numpy")
        st.mark()
        started = time.monotonic()
        error = ""
        try:
            await app.console.switch_avatar("faults-broken")
        except Exception as exc:  # ControlError: the moderator is told why
            error = str(exc)
        detected = time.monotonic() - started
        failures = await st.probe.metric("avatar_load_failures_total")
        component = await st.probe.component("avatar")
        lost = [] if component.get("on_air") == app.cfg.avatar.name else ["the avatar on air changed"]
        if not error:
            lost.append("the switch to a corrupted avatar was not refused")
        shown = f"reply: {error[:80]}...; avatar_load_failures {failures:g}; /healthz avatar last_error set"
        if failures < 1 or not component.get("last_error"):
            shown = ""
        shutil.rmtree(broken)
        shutil.copytree(root / app.cfg.avatar.name, broken, ignore=shutil.ignore_patterns(".cache"))
        healed = time.monotonic()
        await app.console.switch_avatar("faults-broken")
        try:  # the render thread puts it on air at its next tick
            await wait_for(lambda: _now(app.stages.avatar() == "faults-broken"), 10, "the healed avatar")
            recovery: float | None = time.monotonic() - healed
        except TimeoutError:
            recovery = None
        return finish(st, Outcome("avatar file corrupted on a live switch", shown, detected, recovery, lost))
    finally:
        shutil.rmtree(broken, ignore_errors=True)


# -- running -----------------------------------------------------------------------------------------


async def run_one(name: str, workdir: Path) -> Outcome:
    fn, needs, overrides = SCENARIOS[name]
    async with stage(workdir, needs, overrides) as st:
        return await fn(st)


def table(outcomes: list[Outcome]) -> str:
    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [
        "| fault | shown | detected s | recovery s | lost | late p99/max ms | repeats | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        lost = "; ".join(o.lost) or "nothing"
        lines.append(
            f"| {o.fault} | {o.shown or 'NOT SHOWN'} | {num(o.detected_s)} | {num(o.recovery_s)} | {lost} "
            f"| {o.late_p99_ms:.0f} / {o.late_max_ms:.0f} | {o.repeats} | {o.notes} |"
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("faults", nargs="*", help=f"some of: {', '.join(SCENARIOS)}")
    args = parser.parse_args()
    names = args.faults or list(SCENARIOS)
    outcomes = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"fault-{name}-") as tmp:
            print(f"{name}...", file=sys.stderr, flush=True)
            outcomes.append(await run_one(name, Path(tmp)))
    print(table(outcomes))
    result = {o.fault: {**asdict(o), "ok": o.ok} for o in outcomes}
    print("RESULT " + json.dumps({"faults": result, "all_ok": all(o.ok for o in outcomes)}))


if __name__ == "__main__":
    asyncio.run(main())

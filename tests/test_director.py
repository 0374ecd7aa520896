"""The director's running order, heard on the speech track: lanes, boundaries, cuts, restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.fault_kit import FaultyLlm
from bench.voice_show import until
from broadcaster.control.hub import ControlError
from broadcaster.listen.passthrough import LiveVoice
from danmaku.chatlog import ChatLog
from tests.director_rig import Rig, rig, talk
from tests.http_servers import serve
from tests.openai_double import ScriptedLlm

A = [
    "Alpha one is a long sentence about tea.",
    "Alpha two keeps talking about the leaves.",
    "Alpha three explains the water and the cup.",
    "Alpha four closes with a warm goodbye.",
]
B = ["Bravo one starts another talk today.", "Bravo two ends that other talk now."]
REPLY = [
    "Reply one thanks the viewer warmly.",
    "Reply two answers the question fully.",
    "Reply three wraps it up.",
]
LINE = "Moderator line for the whole room."
SCRIPTS = {"alpha": talk("alpha", A), "bravo": talk("bravo", B)}


def tokens(sentences: list[str]) -> list[str]:
    return [word + " " for s in sentences for word in s.split()]


async def start_on_air(r: Rig, kind: str) -> list[str]:
    """Put a four-sentence item on air and wait for its first sentence; returns its sentences."""
    if kind == "script":
        await r.console.script_start("alpha")
        sentences = A
    elif kind == "reply":
        await r.comment("amy", "what tea is this?")
        sentences = REPLY
    else:
        await r.console.say(" ".join(A), "next")
        sentences = A
    await r.heard(lambda h: sentences[0] in h)
    return sentences


async def arrive(r: Rig, kind: str) -> list[str]:
    if kind in ("next", "now"):
        await r.console.say(LINE, kind)  # type: ignore[arg-type]
        return [LINE]
    if kind == "chat":
        await r.comment("bob", "is it fresh?")
        return REPLY
    await r.console.script_start("bravo")
    return B


# (on air, what arrives while its first sentence plays, where it airs)
TABLE = [
    ("script", "next", "boundary"),
    ("script", "chat", "boundary"),
    ("script", "now", "cut"),
    ("script", "script", "after"),
    ("reply", "next", "boundary"),
    ("reply", "script", "after"),
    ("reply", "now", "cut"),
    ("moderator", "next", "after"),
    ("moderator", "chat", "after"),
    ("moderator", "script", "after"),
    ("moderator", "now", "cut"),
]


@pytest.mark.parametrize(("on_air", "arrives", "where"), TABLE)
async def test_lanes_and_preemption(tmp_path: Path, on_air: str, arrives: str, where: str) -> None:
    llm = ScriptedLlm(tokens(REPLY), first_token_s=0.05, token_s=0.01)
    url = await llm.start()
    try:
        # a cut must land while the first sentence plays: slower there, so a loaded machine still does
        async with rig(tmp_path, SCRIPTS, llm_url=url, chat=True, speed=1.0 if where == "cut" else 3.0) as r:
            current = await start_on_air(r, on_air)
            incoming = await arrive(r, arrives)
            if where == "cut":
                heard = await r.heard(lambda h: incoming[-1] in h)
                assert heard[: heard.index(incoming[0])] == current[:1], heard
                assert current[0] in r.player.cut, "the sentence on air was cut"
                if on_air == "script":  # a script resumes from the sentence that was cut
                    heard = await r.heard(lambda h: current[-1] in h)
                    assert heard == [current[0], *incoming, *current], heard
                else:
                    await asyncio.sleep(1.0)
                    assert r.player.heard == [current[0], *incoming], "a cut reply or line does not come back"
                return
            heard = await r.heard(lambda h: all(s in h for s in current + incoming))
            if where == "boundary":  # right after the sentence on air, then the rest resumes
                assert heard == [current[0], *incoming, *current[1:]], heard
            else:
                assert heard == [*current, *incoming], heard
    finally:
        await llm.close()


async def test_a_skip_moves_a_script_to_its_next_segment(tmp_path: Path) -> None:
    scripts = {"alpha": talk("alpha", A[:2], A[2:])}
    async with rig(tmp_path, scripts) as r:
        await r.console.script_start("alpha")
        await r.heard(lambda h: A[0] in h)
        assert (await r.console.skip())["cut"]
        heard = await r.heard(lambda h: A[3] in h)
        assert heard == [A[0], A[2], A[3]], heard
        await asyncio.sleep(0.3)  # the place moves on once the last sentence is on air
        place = r.director.agenda.place("alpha")
        assert (place.round, place.idx, place.sentence) == (0, 2, 0)


async def test_a_restart_resumes_the_queue_and_the_script_place(tmp_path: Path) -> None:
    store = tmp_path / "show.sqlite3"
    async with rig(tmp_path, SCRIPTS, store_path=store) as r:
        await r.console.script_start("alpha")
        await r.console.script_start("bravo")
        await r.heard(lambda h: A[1] in h)
        await asyncio.sleep(0.1)  # the place is written as a sentence goes on air, in the background
        assert r.director.agenda.place("alpha").sentence == 1
        queued = [i["args"]["script"] for i in r.console.queue_list()]
        assert queued == ["bravo"]
        # the process stops here, in the middle of a sentence, with a run queued behind it
    async with rig(tmp_path / "again", SCRIPTS, store_path=store) as r:
        heard = await r.heard(lambda h: B[-1] in h)
        assert heard == [*A[1:], *B], "the script resumed at the sentence on air, then the queue went on"
        await asyncio.sleep(0.1)
        assert r.console.queue_list() == []


async def test_review_mode_holds_replies_for_a_moderator(tmp_path: Path) -> None:
    llm = ScriptedLlm(tokens(REPLY[:2]))
    url = await llm.start()
    try:
        async with rig(tmp_path, SCRIPTS, llm_url=url, chat=True) as r:
            sub = r.hub.subscribe(["review", "on_air"])
            await r.console.review_mode(True)
            await r.comment("amy", "how much is it?")
            topic, data = await asyncio.wait_for(sub.get(), 20)
            while topic != "review":
                topic, data = await asyncio.wait_for(sub.get(), 20)
            assert data["action"] == "waiting"  # type: ignore[index]
            item = data["item"]  # type: ignore[index]
            assert item["text"] == "".join(REPLY[:2]).strip() or REPLY[0] in item["text"]
            await asyncio.sleep(0.5)
            assert r.player.heard == [], "nothing airs before approval"
            assert r.console.state()["review"][0]["id"] == item["id"]
            await r.console.review_approve(item["id"], "Edited answer for the viewer.")
            heard = await r.heard(lambda h: "Edited answer for the viewer." in h)
            assert heard == ["Edited answer for the viewer."]
            with pytest.raises(ControlError):
                await r.console.review_reject(item["id"])
    finally:
        await llm.close()


async def test_bad_commands_change_nothing(tmp_path: Path) -> None:
    async with rig(tmp_path, SCRIPTS, start=False) as r:
        for call in (
            r.console.say("   ", "now"),
            r.console.queue_remove(999),
            r.console.queue_move(999, 0),
            r.console.script_start("nope"),
            r.console.script_jump("alpha", "s9"),
            r.console.switch_persona("nobody"),
            r.console.switch_avatar("nobody"),
            r.console.review_approve(1),
        ):
            with pytest.raises(ControlError):
                await call
        assert r.console.queue_list() == []


async def test_fillers_keep_the_room_alive(tmp_path: Path) -> None:
    lines = ["Thanks for joining the room today.", "Ask me anything about the tea."]
    overrides = ["show.fillers.enabled=true", "show.fillers.after_s=2", "show.fillers.scripts=false"]
    overrides.append(f"show.fillers.lines={lines!r}".replace("'", '"'))
    async with rig(tmp_path, {}, *overrides, speed=8.0) as r:
        heard = await r.heard(lambda h: len(h) >= 3)
        assert heard[:3] == [*lines, lines[0]]


async def test_an_interrupt_cuts_the_last_sentence_of_an_item(tmp_path: Path) -> None:
    async with rig(tmp_path, SCRIPTS) as r:
        await r.console.say(" ".join(A[:2]), "next")
        await r.heard(lambda h: A[1] in h)
        assert not r.director.stack or r.director.stack[0].item is not None
        assert (await r.console.interrupt())["cut"]
        await asyncio.sleep(0.3)
        assert A[1] in r.player.cut, "the sentence still playing was cut"
        assert r.show.speaker.track.pending_samples == 0


async def test_a_skip_during_a_pause_does_not_skip_an_unheard_segment(tmp_path: Path) -> None:
    scripts = {"alpha": talk("alpha", A[:1], A[1:2], A[2:3], pause=3.0)}
    async with rig(tmp_path, scripts, speed=2.0) as r:
        await r.console.script_start("alpha")
        await r.heard(lambda h: A[0] in h)
        await asyncio.sleep(1.0)  # the sentence ends; its pause begins
        await r.console.skip()
        heard = await r.heard(lambda h: A[1] in h or A[2] in h)
        assert heard[-1] == A[1], heard


async def test_a_reply_waiting_for_review_survives_a_restart_without_a_second_answer(tmp_path: Path) -> None:
    llm = ScriptedLlm(tokens(REPLY[:1]))
    url = await llm.start()
    store = tmp_path / "show.sqlite3"
    try:
        async with rig(tmp_path / "one", SCRIPTS, llm_url=url, chat=True, store_path=store) as r:
            await r.console.review_mode(True)
            await r.comment("amy", "how much is it?")
            for _ in range(200):
                if r.console.state()["review"]:
                    break
                await asyncio.sleep(0.05)
            assert len(r.console.state()["review"]) == 1
        async with rig(tmp_path / "two", SCRIPTS, llm_url=url, chat=True, store_path=store) as r:
            await asyncio.sleep(1.5)
            state = r.console.state()
            assert state["review_mode"] is True, "review mode stays on after a restart"
            assert len(state["review"]) == 1
            assert r.player.heard == [] and len(llm.requests) == 1, "the comment is not answered again"
            await r.console.review_approve(state["review"][0]["id"])
            await r.heard(lambda h: REPLY[0] in h)
    finally:
        await llm.close()


async def test_stopping_a_script_never_cuts_the_reply_nested_in_it(tmp_path: Path) -> None:
    llm = ScriptedLlm(tokens(REPLY), first_token_s=0.05, token_s=0.01)
    url = await llm.start()
    try:
        async with rig(tmp_path, SCRIPTS, llm_url=url, chat=True, speed=3.0) as r:
            await r.console.script_start("alpha")
            await r.heard(lambda h: A[0] in h)
            await r.comment("bob", "is it fresh?")
            await r.heard(lambda h: REPLY[0] in h)
            assert (await r.console.script_stop())["stopped"]
            heard = await r.heard(lambda h: REPLY[-1] in h)
            await asyncio.sleep(1.0)
            assert r.player.heard == heard and heard[-len(REPLY) :] == REPLY, heard
            assert not r.player.cut, "nothing was cut"
            assert r.console.queue_list() == []
    finally:
        await llm.close()


async def test_an_item_that_fails_is_closed_and_the_show_goes_on(tmp_path: Path) -> None:
    async with rig(tmp_path, SCRIPTS) as r:
        say = r.show.host.say

        async def broken(text: str, *args: object, **kwargs: object) -> object:
            if text == "This line breaks.":
                raise RuntimeError("a bug in a line")
            return await say(text, *args, **kwargs)  # type: ignore[arg-type]

        r.show.host.say = broken  # type: ignore[method-assign]
        bad = await r.console.say("This line breaks.", "next")
        await r.console.say(LINE, "next")
        await r.heard(lambda h: LINE in h)
        assert bad["id"] not in r.director.agenda.items, "the failed item is closed, not stuck on air"
        state = r.store.read_now(
            lambda c: c.execute("SELECT state FROM show_items WHERE id = ?", (bad["id"],))
        )
        assert state.fetchone()[0] == "failed"


async def test_while_the_host_speaks_nothing_new_starts_and_a_barge_in_cuts(tmp_path: Path) -> None:
    scripts = {"alpha": talk("alpha", A[:2], A[2:])}
    async with rig(tmp_path, scripts) as r:
        r.director.listening(True)  # the host is talking into the console's microphone
        await r.console.script_start("alpha")
        await asyncio.sleep(0.5)
        assert r.player.heard == [] and not r.director.stack, "a script started over the host"
        r.director.listening(False)
        await r.heard(lambda h: A[0] in h)
        assert r.director.speaking()
        r.director.listening(True)
        assert r.director.barge_in()  # the host speaks over the script: it is cut...
        await asyncio.sleep(0.5)
        assert not r.director.speaking() and r.director.barge_ins == 1
        heard = list(r.player.heard)
        r.director.listening(False)  # ...and resumes (resume_after_s = 0) once the host is done
        await r.heard(lambda h: len(h) > len(heard))


async def test_the_moderators_live_voice_cuts_the_script_which_resumes_after_it(tmp_path: Path) -> None:
    scripts = {"alpha": talk("alpha", A[:2], A[2:])}
    async with rig(tmp_path, scripts) as r:
        await r.console.script_start("alpha")
        await r.heard(lambda h: A[0] in h)
        voice = LiveVoice("voice-1")
        r.director.air_voice(voice)  # pass-through: the moderator started speaking
        await asyncio.sleep(0.3)
        assert [a.voice for a in r.director.stack] == [voice], "the live voice holds the air"
        before = list(r.player.heard)
        await asyncio.sleep(0.5)
        assert r.player.heard == before, "something else aired over the live voice"
        r.director.voice_said(voice, "a word from the moderator")
        voice.closed.set()  # the stretch is over (and its pieces, none here, have played)
        heard = await r.heard(lambda h: len(h) > len(before))
        assert heard[len(before)] in A, heard  # the script resumes
        said = await r.store.read(lambda c: c.execute("select lane, text from on_air").fetchall())
        assert ("moderator", "a word from the moderator") in [tuple(row) for row in said]


async def test_a_reply_whose_model_failed_before_a_word_is_tried_once_more(tmp_path: Path) -> None:
    """A blip of the model server (one 500) costs the viewer a retry, not their answer; a longer outage
    fails the reply once the retry failed too, and the chat log says why."""
    llm = FaultyLlm(mode="error")
    async with serve(llm.handle) as base:
        url = base + "/v1"
        async with rig(tmp_path, SCRIPTS, "persona.memory_turns=0", llm_url=url, chat=True) as r:
            await r.comment("amy", "what tea is this?")
            await until(lambda: llm.requests >= 1, 10, "the first try")
            llm.mode = "ok"  # back before the retry (director.REPLY_RETRY_S later)
            heard = await r.heard(lambda h: any(s.startswith("Thanks for asking") for s in h))
            assert llm.requests == 2, "answered by the one retry"
            assert heard[0].startswith("Thanks for asking")
        llm.mode, llm.requests = "error", 0
        async with rig(tmp_path / "down", SCRIPTS, llm_url=url, chat=True) as r:
            await r.comment("bob", "is it fresh?")
            assert r.desk is not None
            await until(lambda: llm.requests >= 2, 15, "the retry")
            log = ChatLog(r.store)
            for _ in range(100):  # the decision is written once the retry failed too
                recent = await log.recent(10)
                rows = [(x.decision, x.reason) for x in recent if x.event.text == "is it fresh?"]
                if rows != [("queued", "question")]:
                    break
                await asyncio.sleep(0.1)
            assert rows == [("dropped", "reply_failed")]
            assert llm.requests == 2 and r.player.heard == []

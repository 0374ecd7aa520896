"""Every control command over a real WebSocket, carried out by the real console on the real director."""

from __future__ import annotations

from pathlib import Path

from websockets.asyncio.client import connect

from tests.control_helpers import Console, running_server, ws_url
from tests.director_rig import rig, talk
from tests.openai_double import ScriptedLlm

A = ["Alpha one is a long sentence about tea.", "Alpha two keeps talking about the leaves."]
SCRIPTS = {"alpha": talk("alpha", A[:1], A[1:])}


async def test_every_command_reaches_the_show(tmp_path: Path) -> None:
    llm = ScriptedLlm(["A ", "reviewed ", "answer."])
    url = await llm.start()
    try:
        async with (
            rig(tmp_path, SCRIPTS, llm_url=url, chat=True, speed=2.0) as r,
            running_server(r.console, r.hub) as server,
            connect(ws_url(server, "?token=test-token-0123456789abcdef")) as ws,
        ):
            c = Console(ws)
            assert (await c.call("subscribe", topics=["on_air", "queue", "review", "state"]))["ok"]

            # the script lane, and lines on top of it
            started = await c.call("script.start", script="alpha")
            assert started["ok"] and started["result"]["args"]["script"] == "alpha"
            await c.event(lambda t, d: t == "on_air" and d["text"] == A[0])
            nxt = await c.call("say", text="First moderator line.", mode="next")
            later = await c.call("say", text="Second moderator line.", mode="next")
            listed = await c.call("queue.list")
            ids = [i["id"] for i in listed["result"]["items"]]
            assert ids[:2] == [nxt["result"]["id"], later["result"]["id"]]
            moved = await c.call("queue.move", item=later["result"]["id"], position=0)
            assert [i["id"] for i in moved["result"]["items"]][:2] == ids[:2][::-1]
            assert (await c.call("queue.remove", item=nxt["result"]["id"]))["ok"]
            await c.event(lambda t, d: t == "on_air" and d["text"] == "Second moderator line.")
            assert "First moderator line." not in r.player.heard

            jumped = await c.call("script.jump", script="alpha", segment="s2")
            assert jumped["ok"], jumped
            await c.call("script.start", script="alpha")
            assert (await c.call("script.stop"))["ok"]
            queued = (await c.call("queue.list"))["result"]["items"]
            assert [i for i in queued if i["kind"] == "script"] == []

            now = await c.call("say", text="Breaking news from the studio.", mode="now")
            assert now["ok"]
            await c.event(lambda t, d: t == "on_air" and d["text"] == "Breaking news from the studio.")
            assert (await c.call("interrupt"))["ok"]
            assert (await c.call("skip"))["ok"]

            # switches
            assert (await c.call("chat.pause"))["result"] == {"chat_answering": False}
            await c.event(lambda t, d: t == "state" and d["chat_answering"] is False)
            assert (await c.call("chat.resume"))["result"] == {"chat_answering": True}
            assert (await c.call("persona.switch", name="default"))["ok"]
            missing = await c.call("persona.switch", name="nobody")
            assert missing["error"]["code"] == "not_found"
            avatar = await c.call("avatar.switch", name="nobody")  # no compositor in this rig
            assert avatar["error"]["code"] == "not_found"

            # review mode: a comment's reply waits, is edited and approved, then airs
            assert (await c.call("review.on"))["result"] == {"review": True}
            await r.comment("amy", "does it ship today?")
            _, waiting = await c.event(lambda t, d: t == "review" and d["action"] == "waiting")
            item = waiting["item"]["id"]
            state = (await c.call("state"))["result"]
            assert state["review_mode"] is True and [i["id"] for i in state["review"]] == [item]
            assert (await c.call("review.approve", item=item, text="Yes, it ships today."))["ok"]
            await c.event(lambda t, d: t == "on_air" and d["text"] == "Yes, it ships today.")
            again = await c.call("review.reject", item=item)
            assert again["error"]["code"] == "not_found", "an approved reply is no longer in review"
            assert (await c.call("review.off"))["result"] == {"review": False}

            # bad requests change nothing
            before = (await c.call("queue.list"))["result"]
            for bad in (
                {"cmd": "say", "text": "x", "mode": "later"},
                {"cmd": "queue.remove", "item": "1"},
                {"cmd": "script.start", "script": "nope"},
                {"cmd": "script.jump", "script": "alpha", "segment": "s9"},
                {"cmd": "dance"},
            ):
                answer = await c.call(**bad)
                assert not answer["ok"], (bad, answer)
            assert (await c.call("queue.list"))["result"] == before
    finally:
        await llm.close()

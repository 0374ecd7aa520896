from __future__ import annotations

from pathlib import Path
from typing import Any

from broadcaster.config import Config
from broadcaster.show.show import Show
from broadcaster.voice.speaker import Speech
from broadcaster.voice.speech_track import SpeechTrack
from danmaku.events import ChatEvent, Gift, User
from danmaku.triage.candidate import Candidate


def gift_event(n: int, name: str) -> ChatEvent:
    return ChatEvent(f"g{n}", "bilibili", "gift", 0, User(str(n), name), gift=Gift("小花花", 2, 2.0))


async def test_thanks_and_welcomes_are_read_from_their_templates_with_clean_names(tmp_path: Path) -> None:
    cfg = Config.model_validate({"voice": {"cache": {"dir": str(tmp_path / "tts")}}})
    show = Show(cfg, SpeechTrack())
    lines: list[str] = []
    say = show.host.say

    async def spoken(text: str, *args: Any, **kwargs: Any) -> Speech | None:
        lines.append(text)
        return await say(text, *args, **kwargs)

    show.host.say = spoken  # type: ignore[method-assign]
    try:
        name = "加微信abc12345的小王"
        thanks = Candidate("thanks", 300, [(1, gift_event(1, name)), (2, gift_event(1, name))])
        assert (await show.answer(thanks, cfg.chat))[0] is None
        welcome = Candidate("welcome", -100, [(3, gift_event(2, "a"))], names=["阿明", "Amy"])
        assert (await show.answer(welcome, cfg.chat))[0] is None
        assert show.host.stats.lines == 2
        assert lines[0].startswith("谢谢") and lines[0].endswith("小王送的4个小花花！"), lines
        assert "微信" not in lines[0] and "abc12345" not in lines[0], "the name is cleaned before it is read"
        assert lines[1] == "欢迎阿明、Amy来到直播间！"
    finally:
        await show.close()

from __future__ import annotations

import itertools

import pytest

from danmaku.config import BlockConfig, ChatConfig, LimitsConfig
from danmaku.events import ChatEvent, Gift, Kind, User
from danmaku.triage.candidate import Candidate
from danmaku.triage.text import TextRules, block_rules, is_chatter, repeat_key
from danmaku.triage.triage import Triage

T0 = 1_700_000_000_000
_ids = itertools.count()


def event(
    text: str = "",
    *,
    user: str = "u1",
    kind: Kind = "chat",
    at: int = 0,
    roles: tuple[str, ...] = (),
    gift: Gift | None = None,
    id: str | None = None,
    ts: int | None = None,
    removes: str | None = None,
) -> ChatEvent:
    now = T0 + at
    return ChatEvent(
        id or f"e{next(_ids)}",
        "bilibili",
        kind,
        now if ts is None else ts,
        User(user, f"name-{user}", roles),
        text,
        gift,
        received_at=now,
        removes=removes,
    )


def triage(**chat: object) -> Triage:
    cfg = ChatConfig.model_validate(chat)
    rules = TextRules(block_rules(cfg.block), cfg.block.links, ["小播", "龙井", "power bank"])
    return Triage(cfg, rules)


def judge(t: Triage, e: ChatEvent) -> tuple[str, str]:
    v = t.judge(0, e)
    return v.decision, v.reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("这个龙井多少钱？", ("queued", "question")),
        ("how much is the power bank", ("queued", "question")),
        ("小播今天穿得好看", ("queued", "question")),  # names the host
        ("今天天气真好", ("queued", "first_time")),
        ("666666", ("dropped", "chatter")),
        ("哈哈哈哈哈", ("dropped", "chatter")),
        ("[doge][doge]", ("dropped", "chatter")),
        ("看这里 www.cheap-tea.com 便宜", ("dropped", "link")),
        ("https://t.cn/abc", ("dropped", "link")),
        ("加我 v x 12345678", ("dropped", "blocked:contact.wechat")),
        ("加 威 信 领红包", ("dropped", "blocked:contact.wechat")),
        ("你是个傻 瓜", ("dropped", "blocked:chat.block.words")),
        ("你是个傻瓜", ("dropped", "blocked:chat.block.words")),
        ("好" * 201, ("dropped", "too_long")),
    ],
)
def test_a_first_message_is_judged_by_its_text(text: str, expected: tuple[str, str]) -> None:
    t = triage(block={"words": ["傻瓜"]})
    assert judge(t, event(text)) == expected


def test_priority_order_paid_question_first_time_other() -> None:
    t = triage(limits={"user_max": 10})
    sc = t.judge(1, event("主播好", kind="superchat", gift=Gift("superchat", 1, 30.0), user="a"))
    q = t.judge(2, event("多少钱", user="b"))
    first = t.judge(3, event("今天天气真好", user="c"))
    again = t.judge(4, event("晚上吃什么好呢呀", user="c", at=1000))  # a question from c
    other = t.judge(5, event("今天下雨了哦", user="c", at=2000))
    assert [v.priority for v in (sc, q, first, again, other)] == [300, 200, 100, 200, 0]
    assert [c.kind for c in t.ready] == ["answer"] * 5
    assert t.ready[0].value == 30.0


def test_duplicates_blocked_users_and_stale() -> None:
    t = triage(block={"users": ["bad", "bilibili:worse", "name:name-nasty"]})
    assert judge(t, event("多少钱", id="same")) == ("queued", "question")
    assert judge(t, event("多少钱", id="same", user="u2")) == ("dropped", "duplicate")
    for user in ("bad", "worse", "nasty"):
        assert judge(t, event("多少钱", user=user)) == ("dropped", "blocked_user")
    assert judge(t, event("多少钱", user="late", ts=T0 - 61_000)) == ("dropped", "stale")


def test_flood_mutes_a_viewer_then_lets_them_back() -> None:
    t = triage(limits={"flood_max": 3, "flood_window_s": 10, "flood_mute_s": 30, "user_max": 100})
    verdicts = [judge(t, event(f"问题{i}是什么", at=i * 100)) for i in range(5)]
    assert [v[1] for v in verdicts] == ["question", "question", "question", "flood", "flood"]
    assert judge(t, event("还在禁言吗", at=20_000)) == ("dropped", "flood")
    assert judge(t, event("现在可以说话吗", at=31_000))[0] == "queued"


def test_repeats_waves_and_the_per_user_limit() -> None:
    t = triage(limits={"user_max": 2, "user_window_s": 60, "copy_users": 3})
    assert judge(t, event("主播唱首歌吧", at=0))[0] == "queued"
    assert judge(t, event("主播唱首歌吧！！", at=1000)) == ("dropped", "repeat")
    assert judge(t, event("第二个问题呢", at=2000))[0] == "queued"
    assert judge(t, event("第三个问题呢", at=3000)) == ("dropped", "rate_user")
    assert judge(t, event("第四个问题呢", at=61_000))[0] == "queued"
    # the same text from several viewers: the third makes it a wave
    assert judge(t, event("扣1抽奖送手机", user="x1", at=62_000))[0] == "queued"
    assert judge(t, event("扣1抽奖送手机", user="x2", at=62_000))[0] == "queued"
    assert judge(t, event("扣1抽奖送手机", user="x3", at=62_000)) == ("dropped", "spam_wave")
    # moderators are not rate limited
    for i in range(4):
        assert (
            judge(t, event(f"管理员第{i}条消息", user="mod", roles=("admin",), at=63_000 + i))[0] == "queued"
        )


def test_the_global_rate_refills_over_time() -> None:
    t = triage(limits={"global_per_s": 2})
    got = [judge(t, event(f"第{i}个问题是什么", user=f"g{i}", at=0))[1] for i in range(4)]
    assert got == ["question", "question", "rate_global", "rate_global"]
    assert judge(t, event("又一个问题是什么", user="g9", at=600))[1] == "question"


def test_superchats_skip_spam_rules_but_not_blocklists() -> None:
    t = triage(limits={"global_per_s": 1})
    paid = Gift("superchat", 1, 50.0)
    for i in range(3):
        assert judge(t, event("666", kind="superchat", gift=paid, at=i)) == ("queued", "paid")
    assert judge(t, event("加我微信", kind="superchat", gift=paid)) == ("dropped", "blocked:contact.wechat")


def test_other_kinds_are_logged() -> None:
    t = triage()
    for kind in ("like", "share", "order", "system"):
        assert judge(t, event(kind=kind)) == ("logged", kind)
    assert judge(t, event(kind="system", removes="x")) == ("logged", "moderation")
    assert t.ready == []


def test_answering_off_logs_chat() -> None:
    t = triage(answer=False)
    assert judge(t, event("多少钱")) == ("logged", "answer_off")


def test_gifts_are_thanked_once_per_viewer_window_above_the_minimum() -> None:
    t = triage(thanks={"window_s": 5, "min_value": 1.0})
    for i in range(3):  # a combo: three gifts, 2 s apart
        g = Gift("小心心", 2, 0.4)
        assert judge(t, event(kind="gift", gift=g, user="fan", at=i * 2000)) == ("queued", "thanks")
    assert judge(t, event(kind="gift", gift=Gift("辣条", 1, 0.1), user="cheap")) == ("queued", "thanks")
    t.due(T0 + 6000)  # fan's window is still open (last gift at 4 s); cheap's has closed
    assert t.ready == [] and t.updates == [(0, "below_min_value")]
    t.due(T0 + 9000)
    assert len(t.ready) == 1
    thanks = t.ready[0]
    assert thanks.kind == "thanks" and thanks.priority == 300 and thanks.value == pytest.approx(1.2)
    assert thanks.line("谢谢{name}送的{gifts}！", str) == "谢谢name-fan送的6个小心心！"
    assert thanks.line("Thanks {name} for {gifts}!", str) == "Thanks name-fan for 6 小心心!"


def test_greetings_are_throttled_and_name_the_latest_viewers() -> None:
    t = triage(welcome={"interval_s": 30, "max_names": 2})
    for i, user in enumerate(("a", "b", "c")):
        assert judge(t, event(kind="enter", user=user, at=i)) == ("queued", "greeting")
    assert t.updates == [(0, "greeting_throttled")]  # "a" scrolled out
    t.due(T0 + 10)
    assert [c.names for c in t.ready] == [["name-b", "name-c"]]
    assert t.ready[0].line("欢迎{names}来到直播间！", str) == "欢迎name-b、name-c来到直播间！"
    t.ready.clear()
    judge(t, event(kind="enter", user="d", at=1000))
    t.due(T0 + 20_000)
    assert t.ready == [], "at most one welcome every interval_s"
    t.due(T0 + 31_000)
    assert [c.names for c in t.ready] == [["name-d"]]
    judge(t, event(kind="follow", user="e"))
    t.due(T0 + 31_001)
    assert t.ready[-1].kind == "follow"


def test_memory_stays_bounded_under_a_burst_of_new_viewers() -> None:
    t = triage(users=1000, dedupe_ids=1000, limits={"global_per_s": 100000})
    for i in range(20_000):
        t.judge(i, event(f"问题{i % 50}是什么呢", user=f"v{i}", at=i))
    assert len(t.limits.viewers) == 1000
    assert 500 <= len(t.ids) <= 1000


def test_text_helpers() -> None:
    assert repeat_key("好 的！！[doge]") == "好的"
    assert is_chatter("66666", 2) and is_chatter("[爱心][爱心]", 2) and not is_chatter("hi", 2)
    rules = TextRules(block_rules(BlockConfig(links=False, contact=False)), links=False)
    assert rules.blocked("www.x.com 加微信", "www.x.com 加微信") is None


def test_candidate_line_cleans_names() -> None:
    c = Candidate("welcome", 0, [(1, event(kind="enter"))], names=["vx123456 amy"])
    assert c.line("欢迎{names}！", lambda n: n.split()[-1]) == "欢迎amy！"


def test_limits_config_is_validated() -> None:
    with pytest.raises(ValueError, match="flood_max"):
        LimitsConfig(flood_max=1)


def test_gifts_in_other_currencies_are_ranked_and_thanked_in_the_room_currency() -> None:
    t = triage(currency="CNY", exchange={"USD": 7.0}, thanks={"window_s": 0, "min_value": 5.0})
    t.judge(1, event("hello there", kind="superchat", gift=Gift("bits", 100, 1.0, "USD"), user="a"))
    t.judge(2, event("你好呀朋友", kind="superchat", gift=Gift("醒目留言", 1, 5.0, "CNY"), user="b"))
    assert [c.value for c in t.ready] == [7.0, 5.0]
    t.judge(3, event(kind="gift", gift=Gift("sub", 1, 0.99, "USD"), user="c"))
    t.due(T0 + 1)
    assert t.ready[-1].kind == "thanks" and t.ready[-1].value == pytest.approx(6.93)

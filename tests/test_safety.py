import logging
import time
from pathlib import Path

import pytest

from broadcaster.config import load_config
from broadcaster.show.fact_guard import FactGuard
from broadcaster.show.products import Catalog, Product
from broadcaster.show.safety import DEFAULT_RULES, Decision, Rule, RuleError, SafetyFilter, load_rules

ORDINARY = [
    "最近很多朋友问这款",
    "第一次买的朋友可以先试试小包装",
    "这款茶叶口感很好",
    "价格是99.9元",
    "今天下单还送一个杯子",
    "库存还有200件",
    "大家最好提前下单，晚了就没有了",
    "最后一波福利，抓紧时间",
    "每个账号限购最多两件",
    "新来的朋友欢迎来到直播间",
    "喜欢主播的点点关注，加入粉丝团有专属福利",
    "1号链接就是今天的龙井",
    "今天10点准时开播，明天见",
    "今年是2025年，这是今年的第一场直播",
    "3个人刚刚下单了",
    "支持7天无理由退换，大家放心买",
    "充电宝可以带上飞机，符合民航规定",
    "这个颜色特别显白，很多朋友回购",
    "有问题可以在评论区留言",
    "包装是铁罐的，密封性很好",
    "第一口就能喝到明显的豆香",
    "这款是我们店的招牌产品",
    "唯一的缺点就是数量不多",
    "冲泡的时候水温八十五度左右就好",
    "用微波炉加热一下更好吃",
    "维生素含量比较高",
    "这件衣服是100%纯棉的",
    "全新升级的第二代产品",
    "小黄车里可以看到详细参数",
    "想要的朋友扣1",
    "谢谢小明送的小心心",
    "现在直播间下单，顺丰包邮",
    "主播自己每天都在喝",
    "充电宝重量是180克，放包里不占地方",
    "Welcome to the stream, everyone!",
    "This is our best seller this week.",
    "The charger weighs 180 grams.",
    "Net weight is 250 grams per tin.",
    "Free shipping on every order today.",
    "Thanks for the follow, Tom!",
    "It charges a phone to 50% in about 30 minutes.",
    "This shirt is 100% cotton.",
    "Try your best to grab one before they sell out.",
    "Tap the cart below to see all the details.",
    "Our store has been open since 2015.",
    "The first batch sold out in an hour.",
    "Brew it with water at about 85 degrees.",
    "It is a great gift for your parents.",
    "Add it to your cart and check out whenever you are ready.",
    "We ship within 48 hours, e.g. tomorrow if you order today.",
]

BANNED = [
    ("加我微信详聊", "drop"),
    ("加我威信", "drop"),
    ("薇信号在主页", "drop"),
    ("有需要的加V信", "drop"),
    ("V X：abc123", "drop"),
    ("vx搜一下xyz888", "drop"),
    ("w.x同号", "drop"),
    ("加 微 信", "drop"),
    ("微\u200b信联系", "drop"),
    ("ＷＸ：ｔｅａ８８８", "drop"),
    ("weixin: teashop", "drop"),
    ("Add me on WeChat: teashop88", "drop"),
    ("绿泡泡上找我", "drop"),
    ("扣扣联系我", "drop"),
    ("QQ：12345678", "drop"),
    ("企鹅号发给你们", "drop"),
    ("电话13800138000", "drop"),
    ("手机１３８ ００１３ ８０００", "drop"),
    ("打138-0013-8000", "drop"),
    ("号码是一三八零零一三八零零零", "drop"),
    ("幺三八 零零幺三 八零零零", "drop"),
    ("咨询0571 8888 6666", "drop"),
    ("Text 555-123-4567 for details", "drop"),
    ("关注我们的公众号领券", "drop"),
    ("去taobao.com搜我们家", "drop"),
    ("网址是www点shop点com", "drop"),
    ("visit https://example.shop now", "drop"),
    ("teashop dot com has more", "drop"),
    ("email me at tea@example.com", "drop"),
    ("follow @teashop_88 for more", "drop"),
    ("私聊我给你优惠", "rewrite"),
    ("有需要的私我", "rewrite"),
    ("DM me for a discount", "rewrite"),
    ("这款茶能治疗失眠", "drop"),
    ("喝了可以降血压", "drop"),
    ("长期喝能抗癌", "drop"),
    ("药到病除，效果很好", "drop"),
    ("This tea cures insomnia", "drop"),
    ("It lowers blood pressure naturally", "drop"),
    ("It helps prevent cancer", "drop"),
    ("全网最低价，只有今天", "replace"),
    ("我们是销量第一的品牌", "drop"),
    ("这是全网唯一的正品", "drop"),
    ("国家级非遗工艺", "drop"),
    ("史上最强充电宝", "drop"),
    ("这款是最好的龙井", "replace"),
    ("顶级的口感", "replace"),
    ("绝对正宗", "replace"),
    ("100%有效", "drop"),
    ("This is the best tea ever", "replace"),
    ("the cheapest price on the internet", "replace"),
    ("We are number one in China", "drop"),
    ("Satisfaction guaranteed", "drop"),
    ("#1 seller in the world", "drop"),
    ("百分百好评", "replace"),
]


@pytest.fixture(scope="module")
def shipped() -> SafetyFilter:
    return SafetyFilter(load_rules(DEFAULT_RULES))


def test_the_corpora_are_big_enough() -> None:
    assert len(ORDINARY) >= 40 and len(BANNED) >= 40
    assert sum(s.isascii() for s in ORDINARY) >= 15


@pytest.mark.parametrize("sentence", ORDINARY)
def test_ordinary_selling_sentences_pass(shipped: SafetyFilter, sentence: str) -> None:
    decision = shipped.check(sentence)
    assert (decision.action, decision.text) == ("pass", sentence), decision


@pytest.mark.parametrize(("sentence", "action"), BANNED)
def test_banned_and_evasive_sentences_never_pass_as_written(
    shipped: SafetyFilter, sentence: str, action: str
) -> None:
    decision = shipped.check(sentence)
    assert decision.action == action, decision
    assert decision.original == sentence and decision.rule
    if action == "drop":
        assert decision.text is None
    else:
        assert decision.text and decision.text != sentence


@pytest.mark.parametrize(
    ("sentence", "spoken", "rule"),
    [
        ("这款龙井是最好的", "这款龙井是很好的", "absolute.zuihao"),
        ("这款最好喝！", "这款很好喝！", "absolute.zui"),
        ("最 佳选择就是它", "很好的选择就是它", "absolute.zui"),
        ("今天全网最低价", "今天超值价", "absolute.lowest"),
        ("极品好茶，绝对值得", "精品好茶，真的值得", "absolute.top"),
        ("This is the best tea we have", "This is a great tea we have", "absolute.en"),
        ("Best ever, trust me", "really good, trust me", "absolute.en"),
        ("THE CHEAPEST charger", "great value charger", "absolute.en"),
    ],
)
def test_mild_absolute_terms_are_replaced_in_place(
    shipped: SafetyFilter, sentence: str, spoken: str, rule: str
) -> None:
    assert shipped.check(sentence) == Decision("replace", spoken, rule, sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "加微信",
        "加威信",
        "加薇信",
        "加徽信",
        "加V信",
        "加vx",
        "加 V X",
        "加wx",
        "加 w.x",
        "weixin",
        "WeChat",
        "微\ufeff信",
    ],
)
def test_every_spelling_of_wechat_is_caught(shipped: SafetyFilter, sentence: str) -> None:
    assert shipped.check(f"有事{sentence}找我").rule == "contact.wechat"


@pytest.mark.parametrize("sentence", ["我用的是新xbox", "the new xbox is here", "vxxx", "一起加微量元素"])
def test_latin_words_match_whole_words_only(shipped: SafetyFilter, sentence: str) -> None:
    assert shipped.check(sentence).action == "pass"


def test_a_rewrite_says_the_rules_line(shipped: SafetyFilter) -> None:
    decision = shipped.check("想要的私我")
    assert decision == Decision("rewrite", "有问题直接在评论区问我就好。", "contact.private", "想要的私我")
    assert shipped.check("加我粉丝团").action == "pass"


def test_drop_beats_rewrite_beats_replace(shipped: SafetyFilter) -> None:
    assert shipped.check("最好的茶，私我，加微信").action == "drop"
    assert shipped.check("最好的茶，私我").action == "rewrite"


def test_every_decision_but_a_pass_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    safety = SafetyFilter(load_rules(DEFAULT_RULES))
    with caplog.at_level(logging.INFO, logger="broadcaster.safety"):
        safety.check("你好")
        safety.check("加我微信", source="viewer")
        safety.check("这是最好的", source="script")
    assert [r.name for r in caplog.records] == ["broadcaster.safety"] * 2
    assert "contact.wechat" in caplog.records[0].getMessage()
    assert "viewer" in caplog.records[0].getMessage() and "加我微信" in caplog.records[0].getMessage()
    assert safety.stats == {
        "action:pass": 1,
        "action:drop": 1,
        "rule:contact.wechat": 1,
        "rule:contact.private": 1,
        "action:replace": 1,
        "rule:absolute.zuihao": 1,
    }


def write_rules(tmp_path: Path, text: str, name: str = "rules.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_room_list_adds_rules_and_overrides_shipped_ones_by_id(tmp_path: Path) -> None:
    path = write_rules(
        tmp_path,
        """
[[rules]]
id = "custom.rival"
action = "replace"
words = ["隔壁家"]
replacement = "别家"

[[rules]]
id = "absolute.top"
action = "replace"
words = ["顶级"]
replacement = "顶好"
enabled = false

[[rules]]
id = "custom.viewers_only"
action = "drop"
words = ["剧透"]
sources = ["viewer"]
""",
    )
    safety = SafetyFilter([*load_rules(DEFAULT_RULES), *load_rules(path)])
    assert safety.check("隔壁家的茶").text == "别家的茶"
    assert safety.check("顶级口感").action == "pass"
    assert safety.check("剧透一下", source="viewer").action == "drop"
    assert safety.check("剧透一下", source="llm").action == "pass"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[rules]]\nid = 'x.y'\naction = 'drop'\npatterns = ['(unclosed']\n", "rule 'x.y' (#1): patterns"),
        ("[[rules]]\nid = 'x.y'\naction = 'rewrite'\nwords = ['a']\n",
         "rule 'x.y' (#1): action 'rewrite' needs text"),
        ("[[rules]]\nid = 'x.y'\naction = 'replace'\nwords = ['a']\n", "needs replacement"),
        ("[[rules]]\nid = 'x.y'\naction = 'drop'\n", "needs words, patterns or map"),
        ("[[rules]]\nid = 'x.y'\naction = 'shout'\nwords = ['a']\n", "rule 'x.y' (#1): action"),
        ("[[rules]]\nid = 'x.y'\naction = 'drop'\nwords = ['a']\ncolour = 1\n", "colour: Extra inputs"),
        ("[[rules]]\nid = 'x.y'\naction = 'drop'\nwords = ['!!']\n", "no letters or digits"),
        ("[[rules]]\nid = 'x.y'\naction = 'drop'\nwords = ['a']\nsources = ['tv']\n", "sources.0"),
        ("[[rules]]\nid = 'x'\naction = 'drop'\nwords = ['a']\n"
         "[[rules]]\nid = 'x'\naction = 'drop'\nwords = ['b']\n", "rule 'x' (#2): id used twice"),
        ("[[rules]]\nid = 'Bad Id'\naction = 'drop'\nwords = ['a']\n", "id: String should match"),
        ("words = ['a']\n", "expected only [[rules]]"),
        ("[[rules]\n", "not valid TOML"),
    ],
)  # fmt: skip
def test_a_bad_rule_file_names_the_file_and_the_rule(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(RuleError) as err:
        load_rules(write_rules(tmp_path, text))
    assert "rules.toml" in str(err.value) and expected in str(err.value)


def test_a_replacement_that_completes_a_banned_phrase_is_dropped() -> None:
    rules = [
        Rule(id="a", action="replace", words=["好好"], replacement="微"),
        Rule(id="b", action="drop", words=["微信"]),
    ]
    decision = SafetyFilter(rules).check("好好信")
    assert (decision.action, decision.text) == ("drop", None)
    assert (
        SafetyFilter([Rule(id="a", action="replace", words=["最好"], replacement="")]).check("最好").action
        == "drop"
    )


def test_from_config_uses_the_shipped_lists_the_rooms_lists_and_the_fact_guard(tmp_path: Path) -> None:
    write_rules(tmp_path, "[[rules]]\nid = 'c.x'\naction = 'drop'\nwords = ['秘密']\n", "room.toml")
    config = tmp_path / "config.toml"
    config.write_text("[safety]\nlists = ['room.toml']\n")
    tea = Product(id="tea", name="龙井", price=99.9)
    safety = SafetyFilter.from_config(load_config(config), Catalog([tea]))
    assert safety.check("告诉你一个秘密").rule == "c.x"
    assert safety.check("加微信").rule == "contact.wechat"
    assert safety.check("龙井今天免费").rule == "fact.free"
    config.write_text("[safety]\ndefaults = false\nfact_guard = false\nlists = ['room.toml']\n")
    bare = SafetyFilter.from_config(load_config(config), Catalog([tea]))
    assert bare.guard is None and [r.id for r in bare.rules] == ["c.x"]
    assert bare.check("龙井今天免费").action == "pass"


def test_the_fact_guard_checks_llm_sentences_only() -> None:
    tea = Product(id="tea", name="龙井", price=99.9)
    safety = SafetyFilter([], FactGuard(Catalog([tea])))
    assert safety.check("龙井只要50元").rule == "fact.price"
    assert safety.check("龙井只要50元", source="moderator").action == "pass"
    assert safety.check("龙井只要50元", source="script").action == "pass"


@pytest.mark.parametrize(
    ("name", "spoken"),
    [
        ("小明", "小明"),
        ("Ｔｏｍ", "Tom"),
        ("加V信abc小明", "小明"),
        ("小红vx:tea888", "小红"),
        ("茶友 QQ 12345 阿华", "茶友 阿华"),
        ("13800138000", "朋友"),
        ("user_93847561", "user"),
        ("\u200b\u200b", "朋友"),
        ("", "朋友"),
        ("www.spam.com", "friend"),
        ("@@@", "朋友"),
        ("最好的阿姨", "很好的阿姨"),
        ("A" * 40, "A" * 16),
    ],
)
def test_viewer_names_are_cleaned_before_they_are_read(shipped: SafetyFilter, name: str, spoken: str) -> None:
    assert shipped.clean_name(name) == spoken


def test_a_banned_phrase_split_across_llm_tokens_is_still_caught(shipped: SafetyFilter) -> None:
    splitter_module = pytest.importorskip("broadcaster.voice.splitter")
    reply = "欢迎新来的朋友！有需要的可以加我微信，号码是13800138000。这款龙井口感很好，最好的茶就在这里。"
    splitter = splitter_module.SentenceSplitter()
    sentences: list[str] = []
    for i in range(0, len(reply), 2):  # two-character tokens: "微" and "信" arrive apart
        sentences += splitter.feed(reply[i : i + 2])
    sentences += splitter.flush()
    spoken = [d.text for d in map(shipped.check, sentences) if d.text]
    assert "".join(sentences) == reply.replace(" ", "")
    assert not any("微信" in s or "138" in s for s in spoken)
    assert any("很好的茶" in s for s in spoken)


def test_checking_a_sentence_costs_little(shipped: SafetyFilter) -> None:
    corpus = ORDINARY + [s for s, _ in BANNED]
    start = time.perf_counter()
    for sentence in corpus * 5:
        shipped.check(sentence)
    per_check = (time.perf_counter() - start) / (len(corpus) * 5)
    assert per_check < 0.005  # generous: about 0.1 ms on a laptop

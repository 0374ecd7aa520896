import random

import pytest

from broadcaster.voice.splitter import SentenceSplitter, speakable, split_text

HARD_CASES: list[tuple[str, list[str]]] = [
    # Chinese punctuation; the first chunk ends at a clause, later ones only at sentence ends
    (
        "好的，这款茶叶今天特价99.9元，原价￥1,299.00，现在3.5折！快来抢购吧。",
        ["好的，这款茶叶今天特价99.9元，", "原价￥1,299.00，现在3.5折！", "快来抢购吧。"],
    ),
    ("真的吗？！太好了！！我们马上开始吧。", ["真的吗？！太好了！！", "我们马上开始吧。"]),
    ("价格：99.9元。", ["价格：99.9元。"]),
    ("这个价格是￥1,299.00，相当于3.5折。", ["这个价格是￥1,299.00，", "相当于3.5折。"]),
    ("价格是1,000元，折扣50%！", ["价格是1,000元，", "折扣50%！"]),
    # full-width time and thousands separators; an en dash range is a number, not a clause
    (
        "今天10：30开始，2020–2024年的数据，共1，000条。",
        ["今天10：30开始，", "2020–2024年的数据，共1，000条。"],
    ),
    ("价格是99，买吧。", ["价格是99，", "买吧。"]),
    # prices, times, abbreviations in English
    (
        "Mr. Smith paid $19.99 for it, i.e. a bargain. Dr. Who arrived at 10:30. See No. 5 vs. No. 6.",
        [
            "Mr. Smith paid $19.99 for it,",
            "i.e. a bargain.",
            "Dr. Who arrived at 10:30.",
            "See No. 5 vs. No. 6.",
        ],
    ),
    ("It costs $19.99 vs. $29.99 elsewhere!", ["It costs $19.99 vs. $29.99 elsewhere!"]),
    ("Call me at No. 5 Main St. tomorrow. Thanks!", ["Call me at No. 5 Main St. tomorrow.", "Thanks!"]),
    (
        "We open at 9 a.m. every day. The U.S. office is in NYC.",
        ["We open at 9 a.m. every day.", "The U.S. office is in NYC."],
    ),
    ("I met the U.S. Ambassador today. He smiled.", ["I met the U.S. Ambassador today.", "He smiled."]),
    ("J. K. Rowling wrote it. So did I. Then what?", ["J. K. Rowling wrote it.", "So did I.", "Then what?"]),
    (
        "Well... I think so. Apples, pears, etc. The rest is fine.",
        ["Well...", "I think so.", "Apples, pears, etc.", "The rest is fine."],
    ),
    (
        "我们有苹果、香蕉、橙子 etc. and more. The U.S. market is big.",
        ["我们有苹果、", "香蕉、橙子 etc. and more.", "The U.S. market is big."],
    ),
    # URLs and e-mail addresses
    (
        "Visit https://example.com/a.b?c=1 or www.shop.cn now. Email a.b@c.com for help.",
        ["Visit https://example.com/a.b?c=1 or www.shop.cn now.", "Email a.b@c.com for help."],
    ),
    (
        "时间是10:30，地点在www.shop.cn，联系a.b@c.com。",
        ["时间是10:30，", "地点在www.shop.cn，联系a.b@c.com。"],
    ),
    # mixed scripts
    ("这款iPhone 15 Pro只要5999元！Buy now.", ["这款iPhone 15 Pro只要5999元！", "Buy now."]),
    # quotes and brackets stay with their sentence
    ('「好的！」他说。He said "yes." Then he left.', ["「好的！」他说。", 'He said "yes."', "Then he left."]),
    (
        "他说：“好的！”然后走了。（限时优惠！）欢迎大家来抢购。",
        ["他说：“好的！”", "然后走了。（限时优惠！）", "欢迎大家来抢购。"],
    ),
    ('她说："我来了！"大家都笑了。', ['她说："我来了！"', "大家都笑了。"]),
    ('"Hello there." "Bye now."', ['"Hello there."', '"Bye now."']),
    # ellipses are one mark; short fragments join what follows
    (
        "嗯。OK! 我们开始吧……今天的主题是茶叶...真的很好喝。",
        ["嗯。OK! 我们开始吧……", "今天的主题是茶叶...", "真的很好喝。"],
    ),
    ("这款茶叶非常好喝。OK! 我们开始。", ["这款茶叶非常好喝。", "OK! 我们开始。"]),
    ("OK! Let us go now.", ["OK! Let us go now."]),
    # long runs: cut at the last clause mark, else the last space, else between CJK characters
    (
        "This is a very long English sentence, which keeps going with many clauses, and it never"
        " seems to stop at all because it has no end.",
        [
            "This is a very long English sentence,",
            "which keeps going with many clauses,",
            "and it never seems to stop at all because it has no end.",
        ],
    ),
    (" ".join(["word"] * 40), [" ".join(["word"] * 12)] * 3 + [" ".join(["word"] * 4)]),
    ("一" * 150, ["一" * 60, "一" * 60, "一" * 30]),
    (
        "今天给大家介绍的这款茶叶产自云南西双版纳的古树茶园，茶汤红浓明亮，口感醇厚回甘明显，非常适合日常饮用和送礼，"
        "现在下单还有优惠哦。",
        [
            "今天给大家介绍的这款茶叶产自云南西双版纳的古树茶园，",
            "茶汤红浓明亮，口感醇厚回甘明显，非常适合日常饮用和送礼，现在下单还有优惠哦。",
        ],
    ),
    # one token longer than max_chars is kept whole
    (
        "这款https://example.com/" + "a" * 70 + " 非常好用。",
        ["这款", "https://example.com/" + "a" * 70, "非常好用。"],
    ),
    # markdown, newlines, whitespace, nothing speakable
    (
        "## 产品介绍\n**这款茶叶**来自云南。\n- 口感醇厚\n- 回甘明显\n",
        ["产品介绍", "这款茶叶来自云南。", "口感醇厚 回甘明显"],
    ),
    ("访问[官网](https://example.com/a.b)了解更多`详情`吧。", ["访问官网了解更多详情吧。"]),
    ("第一行\n第二行\n第三行很长很长很长", ["第一行 第二行", "第三行很长很长很长"]),
    ("   \n\n  好的。  \n ", ["好的。"]),
    ("嗯。", ["嗯。"]),
    ("👍👍！！", []),
    ("", []),
]

# texts that stress the cap: no single token longer than the smallest max_chars tried
CAP_TEXTS = [
    HARD_CASES[0][0] * 3,
    HARD_CASES[5][0] + " " + HARD_CASES[21][0],
    "今天给大家介绍的这款茶叶产自云南西双版纳的古树茶园茶汤红浓明亮口感醇厚回甘明显非常适合日常饮用和送礼"
    * 2,
    "这款iPhone 15 Pro只要5999元 今天下单还送AirPods Pro 2代 价格1,299.00元 折扣3.5折 时间10:30 " * 3,
    "嗯。" * 40,
]


@pytest.mark.parametrize(("text", "expected"), HARD_CASES)
def test_hard_cases(text: str, expected: list[str]) -> None:
    assert split_text(text) == expected


def _tokens(text: str, rng: random.Random) -> list[str]:
    tokens, i = [], 0
    while i < len(text):
        n = rng.choice([0, 1, 1, 2, 2, 3, 4, 7])
        tokens.append(text[i : i + n])
        i += n
    return tokens


@pytest.mark.parametrize("params", [(60, 6, 4), (20, 6, 2), (12, 3, 1)])
@pytest.mark.parametrize("text", [case[0] for case in HARD_CASES] + CAP_TEXTS)
def test_streaming_matches_the_whole_text_for_any_tokenisation(
    text: str, params: tuple[int, int, int]
) -> None:
    whole = split_text(text, *params)
    rng = random.Random(text + repr(params))
    tokenisations = [list(text)] + [_tokens(text, rng) for _ in range(40)]
    for tokens in tokenisations:
        splitter = SentenceSplitter(*params)
        chunks = [chunk for token in tokens for chunk in splitter.feed(token)] + splitter.flush()
        assert chunks == whole, tokens


@pytest.mark.parametrize("max_chars", [10, 20, 37, 60])
@pytest.mark.parametrize("text", CAP_TEXTS)
def test_chunks_respect_the_cap_and_lose_nothing(text: str, max_chars: int) -> None:
    chunks = split_text(text, max_chars=max_chars)
    assert all(len(chunk) <= max_chars for chunk in chunks)
    assert "".join(c for c in "".join(chunks) if c.isalnum()) == "".join(c for c in text if c.isalnum())
    words = set(text.replace("。", " ").split())
    for chunk in chunks:  # English words, numbers and prices come out whole
        for word in chunk.split():
            if word.isascii():
                assert any(word.strip(",") in w for w in words), word


def test_a_long_cut_keeps_numbers_whole() -> None:
    text = "我" * 57 + "99.99元" + "我" * 10
    assert split_text(text) == ["我" * 57, "99.99元" + "我" * 10]


def test_a_cut_prefers_chunks_long_enough() -> None:
    # "嗯。" is a sentence end within the cap, but too short to be a chunk: cut between CJK characters
    assert split_text("嗯。" + "我" * 70) == ["嗯。" + "我" * 58, "我" * 12]
    # past the first chunk, a clause mark beats a space, and a space beats a CJK cut
    hi = "欢迎大家来到直播间。"
    text = hi + "我" * 30 + "，" + "我" * 10 + " " + "我" * 30 + "。"
    assert split_text(text) == [hi, "我" * 30 + "，", "我" * 10 + " " + "我" * 30 + "。"]
    assert split_text(hi + "我" * 40 + " " + "我" * 30 + "。") == [hi, "我" * 40, "我" * 30 + "。"]


def test_first_chunk_ends_at_the_first_clause_long_enough() -> None:
    # a full-width comma needs no look-ahead: the chunk is returned by the feed that brings the comma
    splitter = SentenceSplitter(first_min_chars=2)
    outputs = [splitter.feed(char) for char in "好的，这款茶叶今天特价"]
    assert outputs[:3] == [[], [], ["好的，"]]
    assert all(out == [] for out in outputs[3:])
    assert splitter.feed("，买一送一，欢迎下单。价") == ["这款茶叶今天特价，买一送一，欢迎下单。"]
    assert splitter.flush() == ["价"]

    # with the default first_min_chars=4, "好的" is too short: the first chunk waits for the next clause
    splitter = SentenceSplitter()
    assert splitter.feed("好的，这款茶叶今天特价") == []
    assert splitter.feed("，买") == ["好的，这款茶叶今天特价，"]


def test_only_the_first_chunk_ends_at_a_clause() -> None:
    text = "欢迎来到直播间。这款茶叶很好喝，价格也便宜，买一送一。"
    assert split_text(text) == ["欢迎来到直播间。", "这款茶叶很好喝，价格也便宜，买一送一。"]
    assert split_text("欢迎来到直播间，这款茶叶很好喝。") == ["欢迎来到直播间，", "这款茶叶很好喝。"]


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (["价格是99", ".", "9元，", "现"], [[], [], ["价格是99.9元，"], []]),
        (["1,", "000元很便宜。"], [[], []]),
        (["1,", " 2"], [[], ["1,"]]),
        (["10:", "30开始。"], [[], []]),
        (["10：", "30开始。"], [[], []]),
        (["价格99，", "买"], [[], ["价格99，"]]),
        (["https:", "//a.b/c。"], [[], []]),
        (["Mr.", " Smith is here", ". H"], [[], [], ["Mr. Smith is here."]]),
        (["好了吧！", "」好"], [[], ["好了吧！」"]]),
    ],
)
def test_a_mark_at_the_end_of_the_buffer_waits_for_the_next_character(
    parts: list[str], expected: list[list[str]]
) -> None:
    splitter = SentenceSplitter(first_min_chars=1)
    assert [splitter.feed(part) for part in parts] == expected


def test_short_fragments_join_the_next_chunk() -> None:
    assert split_text("嗯。好的。这款茶叶非常好喝。") == ["嗯。好的。这款茶叶非常好喝。"]
    assert split_text("欢迎来到直播间。嗯。OK! 今天讲茶。") == ["欢迎来到直播间。", "嗯。OK! 今天讲茶。"]
    # at the end of a reply a short tail is still spoken; the chunk before it has already gone out
    assert split_text("欢迎来到直播间。谢谢！") == ["欢迎来到直播间。", "谢谢！"]
    assert split_text("好的。", min_chars=6, first_min_chars=2) == ["好的。"]


def test_reset_drops_buffered_text_and_starts_a_new_reply() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("欢迎来到直播间。这款茶叶") == ["欢迎来到直播间。"]
    splitter.reset()
    assert splitter.feed("大家好呀，今天") == ["大家好呀，"]
    assert splitter.flush() == ["今天"]
    assert splitter.feed("大家好呀，今天") == ["大家好呀，"]  # flush readies for the next reply
    assert splitter.flush() == ["今天"]
    assert splitter.flush() == []


def test_speakable_counts_letters_digits_and_cjk() -> None:
    assert speakable("好的！OK, 5%…😀") == 5


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        SentenceSplitter(max_chars=0)

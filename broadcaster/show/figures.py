"""Reading figures: the prices, discounts, stock counts and specs a sentence states, and how firmly.

A folded sentence (from the LLM, or a line of a product file) is read into claims: a kind, a value in one
unit (money; the ratio paid for a discount; a count; a spec converted to its kind's base unit) and a bound.
Numbers are read as written, in digits (1,299.00, 2.5万) or Chinese numerals (九十九, 一百二, 一三八).
Whether a claim is true is the fact guard's question (``fact_guard.py``), not this module's.

What counts as a claim (figures elsewhere, "2025年", "3个人", "10点开播", "1号链接", are none):
- price: a number with ¥ $ 元 块 块钱 美元 dollars (九十九块九, 一百二十元, $19.99, 1,299.00), or a
  bare number after 只要/到手/售价/price is;
- discount: 8折, 8.5折, 打八折, 八五折, 20% off, 半价 (a ratio paid), 减30/立减30元/省30块/$5 off (money off);
- stock: 还剩/仅剩/库存/还有/最后 N 件/个/单..., only N left, N in stock;
- spec: a number with a unit of a spec's kind (g kg 克 斤, ml L 毫升, mAh 毫安, W 瓦, V, A, mm cm m 厘米 米,
  h 小时 分钟 天 个月...), converted, unless after a serving word (每次, 放, 泡, per cup); or a number with a
  unit the caller names ("2 个"). A spec value reads as quantities, ranges ("100-240 V") as their span.

Bound: a figure marked approximate (约, 大约, 左右, 差不多, around, about) is "about"; 不到/under/以内 N is
"under", 超过/over/以上 N "over"; any other is "exact".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from broadcaster.show.products import fold

Kind = Literal["price", "free", "discount", "stock", "spec"]
Bound = Literal["exact", "about", "under", "over"]

_DIGIT = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}
_SMALL = {"十": 10, "百": 100, "千": 1000}
_BIG = {"万": 10_000, "亿": 100_000_000}
CN_DIGITS = "零〇一二两三四五六七八九"
NUMBER = re.compile(
    rf"(?<![\d.])(?:\d{{1,3}}(?:,\d{{3}})+|\d+)(?:\.\d+)?(?:\s*[万千](?![克瓦米伏]))?"
    rf"|(?:[{CN_DIGITS}十百万亿]|千(?![克瓦米伏]))"
    rf"(?:[{CN_DIGITS}十百万亿]|千(?![克瓦米伏])|点(?=[{CN_DIGITS}]))*"
)
CJK = r"\u4e00-\u9fff"
_MONEY_AFTER = re.compile(
    rf"\s*(块钱|块(?![{CJK}])|块(?=[钱就哦啦了呀吧呢包到左上以起多{CN_DIGITS}])|元|美元|美金|刀(?![{CJK}])"
    r"|(?:dollars?|bucks?|yuan|rmb|usd|cny)(?![a-z]))"
)
_MONEY_BEFORE = re.compile(r"(?:[¥$]|\b(?:rmb|usd|cny))\s*$")
_JIAO = re.compile(
    rf"([0-9{CN_DIGITS}])(?:(?:毛|角)([0-9{CN_DIGITS}])?)?(?![0-9.%]|[件个罐盒瓶袋份套台支条箱斤克人次天折块只把张双]|包(?!邮))"
)
_PRICE_WORD = re.compile(
    r"(?:只要|只需|仅需|仅要|才|到手价?|售价|价格是?|现价|原价|定价|卖|"
    r"price\s+is|priced\s+at|costs?|only|just)\s*[:：]?\s*$"
)
_AMOUNT_WORD = re.compile(r"(?:减|立减|直降|降价?了?|省了?|便宜了?|优惠了?|少了?|save|saving)\s*[¥$]?\s*$")
_BARE_END = re.compile(r"\s*(?:$|[^\w%.]|[就哦啦了呀吧呢啊])")
_OFF = re.compile(r"\s*(?:[¥$a-z]+\s+)?off\b")
_ZHE = re.compile(r"\s*折")
_PERCENT = re.compile(r"\s*(?:%|percent\b)")
_PERCENT_CUT = re.compile(r"(?:save|优惠|便宜|省|降|减|打折|折扣)\s*了?\s*$")
_HALF = re.compile(r"半价|half\s+(?:price|off)")
_STOCK_STRONG = re.compile(r"(?:还剩|仅剩|只剩|剩下|就剩|剩|库存(?:还有|只有|仅有|就|是|有)?)\s*$")
_STOCK_WEAK = re.compile(r"(?:还有|只有|仅有|最后)\s*$")
_COUNTER = re.compile(r"\s*(?:[件个单份罐盒台套包瓶袋支条箱组只把]|块(?!钱))")
_PERSON = re.compile(r"人|位|小时|钟|天|月|年|朋友|宝宝|家人|颜色|款式|口味")
_WEAK_END = re.compile(r"$|[^\w]|[了哦啦呀吧呢啊就现库存货在左以可]")
_STOCK_EN = re.compile(r"\s*(?:\w+\s+)?(?:left|remaining|in\s+stock)\b")
_STOCK_EN_BEFORE = re.compile(r"(?:\b(?:only|just|last)|stock(?:\s+(?:of|is|at))?)\s*$")
_APPROX_BEFORE = re.compile(
    r"(?:约合?|大约|大概|差不多|将近|接近|around|about|approximately|roughly|nearly|~)\s*$"
)
_UNDER_BEFORE = re.compile(
    r"(?:不到|不足|少于|低于|不超过|最高|under|less\s+than|below|fewer\s+than|up\s+to)\s*$"
)
_OVER_BEFORE = re.compile(r"(?:超过|多于|高于|至少|起码|over|more\s+than|above|at\s+least)\s*$")
_APPROX_AFTER = re.compile(r"\s*(?:(左右|上下)|(以内|以下)|(以上|多|出头|起|\+))")
_SERVING = re.compile(
    r"(?:每次|一次|每杯|一杯|投茶|冲泡|放|泡|加|喝|每天|一天|per\s+cup|per\s+serving|each\s+time|a\s+day)"
)

_UNIT_TABLE: dict[str, tuple[tuple[float, str], ...]] = {  # kind: (factor to its base unit, units)
    "mass": ((1, "g 克 gram grams"), (1000, "kg 千克 公斤 kilogram kilograms"), (500, "斤"),
             (0.001, "mg 毫克"), (28.3495, "oz ounce ounces"), (453.592, "lb lbs pound pounds")),
    "volume": ((1, "ml 毫升 milliliters millilitres"), (1000, "l 升 liter liters litre litres")),
    "charge": ((1, "mah 毫安时 毫安"),),
    "power": ((1, "w 瓦 watt watts"), (1000, "kw 千瓦")),
    "voltage": ((1, "v 伏 volt volts"),),
    "current": ((1, "a amp amps"),),
    "length": ((0.1, "mm 毫米"), (1, "cm 厘米 公分"), (100, "m 米 meter meters metre metres"),
               (2.54, "inch inches 英寸 寸"), (30.48, "ft feet")),
    "time": ((1, "min mins minute minutes 分钟"), (60, "h hr hrs hour hours 小时 个小时"),
             (1440, "day days 天"), (43200, "个月 month months"), (525600, "year years")),
}  # fmt: skip
_UNITS = {u: (dim, f) for dim, groups in _UNIT_TABLE.items() for f, units in groups for u in units.split()}
_UNIT = re.compile(
    r"\s?("
    + "|".join(re.escape(u) + ("(?![a-z])" if u.isascii() else "") for u in sorted(_UNITS, key=len)[::-1])
    + ")"
)
_COUNTER_EN = re.compile(r"\s*(?:units?|pieces?|packs?|items?|ones?|boxes|cans|bags|jars)\b")
_JOIN = re.compile(r"\s*(?:(-|~|～|至|到)|[×x*/])\s*$")


def _digit(char: str) -> int:
    return int(char) if char.isdigit() else _DIGIT[char]


def _cn_int(text: str) -> int:
    total = section = num = 0
    for char in text:
        if char in _DIGIT:
            num = _DIGIT[char]
        elif char in _SMALL:
            section += (num or 1) * _SMALL[char]
            num = 0
        elif char in _BIG:
            total += (section + num) * _BIG[char]
            section = num = 0
    if num and len(text) >= 2 and text[-2] in "百千万亿":  # 一百二 = 120, 两万三 = 23000
        num *= {**_SMALL, **_BIG}[text[-2]] // 10
    return total + section + num


def number_value(token: str) -> float:
    """A number as written: 1,299.5, 2.5万, 九十九, 一百二, 九点九, 一三八 (digit by digit)."""
    token = token.replace(",", "").replace(" ", "")
    if token[0].isdigit():
        scale = {"万": 10_000, "千": 1000}.get(token[-1], 1)
        return float(token.rstrip("万千")) * scale
    whole, _, frac = token.partition("点")
    if len(whole) > 1 and not any(c in _SMALL or c in _BIG for c in whole):
        value = float("".join(str(_DIGIT[c]) for c in whole))
    else:
        value = float(_cn_int(whole))
    if frac:
        value += float("0." + "".join(str(_DIGIT[c]) for c in frac))
    return value


@dataclass(frozen=True)
class Claim:
    """A figure a sentence states about a product."""

    kind: Kind
    value: float  # money; the ratio paid (0.85) for a discount; a count; a spec in its kind's base unit
    span: str
    bound: Bound = "exact"
    dim: str = ""  # a spec's kind ("mass"), or "=unit" for a spec with its own unit ("=个")
    ratio: bool = False  # a discount as a ratio (8.5折), not money off (减30)


def _bound(before: str, rest: str) -> Bound:
    tail = _APPROX_AFTER.match(rest)
    if _APPROX_BEFORE.search(before) or (tail and tail.group(1)):
        return "about"
    if _UNDER_BEFORE.search(before) or (tail and tail.group(2)):
        return "under"
    if _OVER_BEFORE.search(before) or (tail and tail.group(3)):
        return "over"
    return "exact"


def _money(text: str, m: re.Match[str], before: str) -> tuple[float, int] | None:
    """A money figure at ``m`` (with its 块/元 and 角 digits): its value and where it ends."""
    unit = _MONEY_AFTER.match(text, m.end())
    if not unit and not _MONEY_BEFORE.search(before):
        return None
    value, end = number_value(m.group()), unit.end() if unit else m.end()
    jiao = _JIAO.match(text, end) if unit and unit.group(1) in ("块", "元") else None
    if jiao:
        value += _digit(jiao.group(1)) / 10 + (_digit(jiao.group(2)) / 100 if jiao.group(2) else 0)
        end = jiao.end()
    elif unit and unit.group(1) == "块" and m.group() in ("一", "两"):
        return None  # 一块 is a piece (29元一块); a yuan is 一块钱
    return value, end


def _stock(before: str, after: str) -> int | None:
    """How many characters after the number belong to a stock claim, or None if it is not one."""
    strong = _STOCK_STRONG.search(before)
    if strong or _STOCK_WEAK.search(before):
        counter = _COUNTER.match(after)
        rest = after[counter.end() :] if counter else after
        if not (counter or (strong and "库存" in before)) or _PERSON.match(rest):
            return None
        return (counter.end() if counter else 0) if strong or _WEAK_END.match(rest) else None
    if _STOCK_EN.match(after) or (_STOCK_EN_BEFORE.search(before) and _COUNTER_EN.match(after)):
        return 0
    return None


def claims(text: str, literal_units: tuple[str, ...] = ()) -> list[Claim]:
    """The figures a folded sentence states (see the module docstring for what counts)."""
    out: list[Claim] = []
    skip_to = 0
    for m in NUMBER.finditer(text):
        if m.start() < skip_to:
            continue
        value = number_value(m.group())
        before, after = text[max(0, m.start() - 12) : m.start()], text[m.end() :]
        kind: Kind | None = None
        end, dim, ratio = m.end(), "", False
        if _STOCK_STRONG.search(before) and (counted := _stock(before, after)) is not None:
            kind, end = "stock", end + counted  # 只剩5块 (of soap): a count, not money
        elif money := _money(text, m, before):
            value, end = money
            kind = "discount" if _AMOUNT_WORD.search(before) or _OFF.match(text, end) else "price"
        elif zhe := _ZHE.match(after):
            kind, ratio, end = "discount", True, end + zhe.end()
            value = value / 10 if value <= 10 else value / 100
        elif (pct := _PERCENT.match(after)) and (_OFF.match(after, pct.end()) or _PERCENT_CUT.search(before)):
            kind, ratio, end, value = "discount", True, end + pct.end(), 1 - value / 100
        elif (counted := _stock(before, after)) is not None:
            kind, end = "stock", end + counted
        elif (unit := _UNIT.match(after)) and not (unit.group(1) == "a" and after.startswith(" ")):
            if _SERVING.search(before):
                continue
            dim, factor = _UNITS[unit.group(1)]
            kind, end, value = "spec", end + unit.end(), value * factor
        elif lit := next((u for u in literal_units if after.lstrip().startswith(u)), None):
            kind, dim, end = "spec", "=" + lit, end + after.index(lit) + len(lit)
        elif _BARE_END.match(after) and (_PRICE_WORD.search(before) or _AMOUNT_WORD.search(before)):
            kind = "discount" if _AMOUNT_WORD.search(before) else "price"
        if kind is None:
            continue
        skip_to = end
        out.append(Claim(kind, value, text[m.start() : end], _bound(before, text[end:]), dim, ratio))
    out.extend(Claim("discount", 0.5, h.group(), ratio=True) for h in _HALF.finditer(text))
    return out


def quantities(value: str) -> list[tuple[str, float, float]]:
    """The (kind, low, high) figures of a spec value: "250 g", "100-240 V", "10.5 × 6.2 × 1.6 cm"."""
    text = fold(value)
    out: list[tuple[str, float, float]] = []
    pending: list[float] = []  # unit-less figures waiting for the unit that follows them
    ranged, last_end = False, 0
    for m in NUMBER.finditer(text):
        joined = _JOIN.search(text[last_end : m.start()]) if pending else None
        if not joined:
            pending, ranged = [], False
        ranged = ranged or bool(joined and joined.group(1))
        last_end = m.end()
        unit = _UNIT.match(text, m.end())
        if not unit:
            pending.append(number_value(m.group()))
            continue
        dim, factor = _UNITS[unit.group(1)]
        points = [p * factor for p in (*pending, number_value(m.group()))]
        out.extend((dim, p, p) for p in points)
        if ranged:
            out.append((dim, min(points), max(points)))
        pending, ranged = [], False
    return out

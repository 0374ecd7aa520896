"""The fact guard: a price, discount, stock or spec figure the LLM says must match the product facts.

The LLM is grounded with the product facts, but a chat message can talk it into another price ("say it
is free today") and small models misremember figures. Every figure in an LLM sentence is checked here;
a sentence that contradicts the facts is never spoken: it is rewritten from the facts
("{name}现在到手价{price}元。", or the English line for a sentence without Chinese) or, when the facts
cannot say it right (no stock figure, no product known), dropped.

Which product: the ones the sentence names (``Catalog.find``), else the one on air, else the only one in
the catalog. With several named, a figure fits if it fits any of them. With none known, figures cannot
be checked and pass, except a claim that the product is free, which is dropped.

The figures are read by ``figures.claims`` (what counts as a claim is written there). A claim fits:
- price, or money off (减30, $5 off): the price, the original price, their difference, a number in
  ``discount``, or a money figure in the facts or gifts;
- a discount ratio (8.5折, 20% off, 半价): price / original price or the documented discount;
- stock: only the ``stock`` figure (a product without one has no stock figure that may be said: made-up
  scarcity is dropped);
- spec: the product's spec of that kind. mAh, W, V, A always count; weight, volume, length and time only
  next to a word that says what is measured (重, 净含量, 容量, 长, 保质期, weighs, capacity, or the spec's
  own name). A spec with another unit ("2 个 USB-C") counts next to its own name. Ranges ("100-240 V")
  admit what lies inside.
Two claims are read from the whole sentence here: free (免费/不要钱/白送/0元/送给你/free/costs nothing, not
免费包邮, free shipping, nor a gift that comes with an order: 下单送杯子) contradicts a price above 0, and a
promotion (买一送一/第二件半价) must be written in the product file.

Tolerance: a plain figure must be exact (to the cent; 0.5% for converted specs; 0.1折 for ratios).
A figure marked approximate (约, 大约, 左右, 差不多, around, about) may be 10% off; 不到/under N must be just
above the fact (within 20%), 超过/over N just below it. So "一百块左右" fits 99.9 but "一百块" does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from broadcaster.show.figures import CJK, CN_DIGITS, NUMBER, Claim, Kind, claims, number_value, quantities
from broadcaster.show.products import Catalog, Product, fold

_FREE = re.compile(
    r"免费(?!包邮|配送|送货|邮寄|退换|售后|保修|咨询|试|换|上门|安装|开票)|不要钱|不收钱|不花钱|一分钱(?:都)?不要|白送|白给"
    r"|[0零]元购|(?<![\d.])0\s*元|零元|送给(?:你|大家|你们|各位|宝宝)|直接送|送你们|送大家"
    r"|\bfree\b(?!\s+(?:shipping|delivery|returns?|gifts?|samples?|trial|engraving))|\bfor\s+nothing\b"
    r"|\bcosts?\s+nothing\b|\bon\s+the\s+house\b|\bgiv(?:e|ing)\s+(?:it|them|this)\s+away\b|\bno\s+charge\b"
    r"|(?<![\d.])\$\s*0(?![\d.])|\bzero\s+dollars\b"
)
_WITH_ORDER = re.compile(
    r"下单|购买|买|拍下|拍一|入手|付款|加购|\bbuy\b|with\s+(?:every|each|your|any|an?)\s+(?:order|purchase)"
    r"|when\s+you\s+(?:buy|order)"
)
_PROMO = re.compile(
    rf"买[0-9{CN_DIGITS}]送[0-9{CN_DIGITS}]|第二件(?:半价|[0零]元|免费)|buy\s+one,?\s+get\s+one|\bbogo\b"
)
_HAS_CJK = re.compile(rf"[{CJK}]")

_DIMS = {  # words that say what a weight, volume, length or time measures
    "mass": "重 净含量 净重 克重 分量 份量 规格 一罐 一盒 一袋 一包 每罐 每盒 每袋 每包 整罐 整盒 装 "
    "weigh net pack jar bag box",
    "volume": "容量 容积 装 一瓶 每瓶 capacity holds bottle volume",
    "length": "长 宽 高 尺寸 线长 大小 厚 length long size cable cord wide tall thick",
    "time": "保质期 续航 充满 充电时间 待机 使用时间 保修 质保 "
    "shelf_life lasts battery_life charge_time standby warranty",
}
_DIM_EN = {"mass": "weight", "volume": "volume", "charge": "capacity", "power": "power", "length": "size"}
_ALWAYS = frozenset({"charge", "power", "voltage", "current"})


@dataclass
class _Facts:
    """The figures one product allows, as (low, high) intervals, prepared once."""

    money: list[tuple[float, float]] = field(default_factory=list)
    ratios: list[tuple[float, float]] = field(default_factory=list)
    stock: list[tuple[float, float]] = field(default_factory=list)
    specs: dict[str, list[tuple[float, float, str]]] = field(default_factory=dict)  # kind → (lo, hi, name)
    documented: str = ""  # discount, gifts and facts, folded, without spaces


def _point(value: float) -> tuple[float, float]:
    return (value, value)


def _facts(product: Product) -> _Facts:
    f = _Facts(money=[_point(product.price)])
    if product.original_price is not None:
        f.money += [_point(product.original_price), _point(round(product.original_price - product.price, 2))]
        if product.original_price > 0:
            f.ratios.append(_point(product.price / product.original_price))
    if product.stock is not None:
        f.stock.append(_point(product.stock))
    f.money += [_point(number_value(m.group())) for m in NUMBER.finditer(fold(product.discount))]
    for line in (product.discount, *product.gifts, *product.documented):
        for c in claims(fold(line)):
            if c.kind == "spec":
                f.specs.setdefault(c.dim, []).append((c.value, c.value, ""))
            else:
                target = {"stock": f.stock, "price": f.money}.get(c.kind, f.ratios if c.ratio else f.money)
                target.append(_point(c.value))
    for name, value in product.specs.items():
        found = quantities(value)
        for dim, lo, hi in found:
            f.specs.setdefault(dim, []).append((lo, hi, name))
        own = re.match(rf"\s*(\d+(?:\.\d+)?)\s*([{CJK}]+|[a-z]+)", fold(value))
        if not found and own:
            f.specs.setdefault("=" + own.group(2), []).append(
                (float(own.group(1)), float(own.group(1)), name)
            )
    f.documented = re.sub(r"\s+", "", fold(" ".join((product.discount, *product.gifts, *product.documented))))
    return f


def _near(claim: Claim, allowed: list[tuple[float, float]], tol: float, rel: float = 0.0) -> bool:
    c = claim.value
    for lo, hi in allowed:
        slack = tol + rel * hi
        if claim.bound == "exact" and lo - slack <= c <= hi + slack:
            return True
        if claim.bound == "about" and lo * 0.9 - tol <= c <= hi * 1.1 + tol:
            return True
        if claim.bound == "under" and lo - tol <= c <= hi * 1.2 + tol:
            return True
        if claim.bound == "over" and lo * 0.8 - tol <= c <= hi + tol:
            return True
    return False


@dataclass(frozen=True)
class Contradiction:
    """A sentence that may not be said: what it claimed and what to say instead (None: nothing)."""

    kind: Kind
    claim: str
    product: Product | None
    text: str | None


class FactGuard:
    """Checks the figures in LLM sentences against the catalog's product facts."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._cache: dict[str, tuple[Product, _Facts]] = {}

    def _facts_of(self, product: Product) -> _Facts:
        cached = self._cache.get(product.id)
        if cached is None or cached[0] is not product:
            cached = self._cache[product.id] = (product, _facts(product))
        return cached[1]

    def products_for(self, sentence: str, product: Product | None = None) -> list[Product]:
        """The products a sentence is about: those it names, else the one on air, else the only one."""
        named = self.catalog.find(sentence)
        if named:
            return named
        if product is not None:
            return [product]
        return list(self.catalog) if len(self.catalog) == 1 else []

    def check(self, sentence: str, product: Product | None = None) -> Contradiction | None:
        """None if the sentence may be said; else what it got wrong and the line to say instead."""
        text = fold(sentence)
        products = self.products_for(sentence, product)
        english = not _HAS_CJK.search(text)
        free = _FREE.search(text)
        if free and _WITH_ORDER.search(text):
            free = None
        if not products:
            return Contradiction("free", free.group(), None, None) if free else None
        if free and all(p.price > 0 for p in products):
            return self._contradict("free", free.group(), products[0], english)
        facts = [(p, self._facts_of(p)) for p in products]
        promo = _PROMO.search(text)
        if promo and not any(re.sub(r"\s+", "", promo.group()) in f.documented for _, f in facts):
            return self._contradict("discount", promo.group(), products[0], english)
        literal = tuple(dim[1:] for _, f in facts for dim in f.specs if dim.startswith("="))
        for claim in claims(text, literal):
            verdicts = [(p, _fits(claim, f, text)) for p, f in facts]
            if any(v is None for _, v in verdicts) or any(v for _, v in verdicts):
                continue
            return self._contradict(claim.kind, claim.span, products[0], english, claim.dim)
        return None

    def _contradict(
        self, kind: Kind, claim: str, product: Product, english: bool, dim: str = ""
    ) -> Contradiction:
        return Contradiction(kind, claim, product, self.line(kind, product, english, dim))

    def line(self, kind: Kind, product: Product, english: bool, dim: str = "") -> str | None:
        """What the facts say instead of a wrong claim of this kind; None when they say nothing."""
        name = product.english_name if english else product.name
        if kind == "stock":
            if product.stock is None:
                return None
            if english:
                return f"We have {product.stock} of {name} in stock right now."
            return f"{name}现在还有{product.stock}{product.unit}。"
        if kind == "spec":
            return self._spec_line(product, name, english, dim)
        return _price_line(product, name, english)

    def _spec_line(self, product: Product, name: str, english: bool, dim: str) -> str | None:
        spec = next((n for _, _, n in self._facts_of(product).specs.get(dim, ()) if n), None)
        if spec is None:
            return None
        if not english:
            return f"{name}的{spec}是{product.specs[spec]}。"
        label = _DIM_EN.get(dim, spec) if _HAS_CJK.search(spec) else spec
        return f"The {label} of {name} is {product.specs[spec]}."


def _price_line(product: Product, name: str, english: bool) -> str:
    now = product.money(product.price, english)
    if product.original_price is None:
        return f"{name} is {now} right now." if english else f"{name}现在到手价{now}。"
    was = product.money(product.original_price, english)
    return (
        f"{name} is {now} right now, down from {was}." if english else f"{name}原价{was}，现在到手价{now}。"
    )


def _fits(claim: Claim, f: _Facts, text: str) -> bool | None:
    """Whether a claim fits one product's facts; None when they say nothing it could be checked against."""
    if claim.kind == "price" or (claim.kind == "discount" and not claim.ratio):
        return _near(claim, f.money, 0.005)
    if claim.kind == "discount":
        return _near(claim, f.ratios, 0.01)
    if claim.kind == "stock":
        return _near(claim, f.stock, 0.5)
    specs = f.specs.get(claim.dim)
    if not specs:
        return None
    names = [fold(n) for _, _, n in specs if n]
    measured = _DIMS.get(claim.dim, "").replace("_", " ").split()
    if claim.dim not in _ALWAYS and not any(w in text for w in (*names, *measured)):
        return None
    return _near(claim, [(lo, hi) for lo, hi, _ in specs], 0.0, 0.005)

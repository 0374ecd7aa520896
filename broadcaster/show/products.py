"""Product facts: the only prices, discounts, stock and specifications the host may say on air.

One TOML file per product in ``<show.library>/products/``. The LLM gets them as grounding
(``Catalog.grounding``) and the fact guard checks every figure it says against them. Format::

    id = "longjing-250"            # optional; the file name without .toml by default; a-z 0-9 _ -
    name = "西湖龙井"               # what the host calls it
    name_en = "West Lake Longjing"  # optional: the name in English lines (default: name)
    aliases = ["龙井", "龙井茶", "Longjing"]  # other names viewers and the LLM use
    price = 99.9                    # what a viewer pays now (>= 0)
    original_price = 129            # optional, >= price: the crossed-out price
    currency = "CNY"                # "CNY" (default) or "USD"
    discount = "7.7折"              # optional, as said: "8.5折", "15% off", "立减30元", "满200减30"
    unit = "罐"                     # counter for stock lines ("件" by default)
    stock = 200                     # optional; omitted means not tracked: no stock figure is ever said
    gifts = ["玻璃品茗杯一个"]       # optional: what comes free with an order
    facts = ["明前采摘，一芽一叶。"]  # plain sentences the host may use
    selling_points = ["明前头采", "豆香浓郁"]  # short claims scripts name as {selling_point_1}...
    image = "images/longjing.png"   # optional: the product card's picture, relative to this folder

    [specs]                         # name = value with its unit
    "净含量" = "250 g"
    "保质期" = "18 个月"

    [[faq]]                         # questions viewers ask, with the answer the host gives
    q = "怎么泡？"
    a = "85℃左右的水，每次3克左右。"

A figure written anywhere in the file (specs, facts, selling points, FAQ answers, gifts, discount) counts
as documented: the host may say it (``Product.documented``). Names and aliases are matched case- and
width-insensitively (``Catalog.find``). Errors name the file and the line (``file:line: key: ...``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from broadcaster.show.toml_lines import describe, line_of, read_toml_lines

_ASCII_WORD = re.compile(r"[a-z0-9]")


class ProductError(Exception):
    """A product file that cannot be used; the message names the file and the key."""


def fold(text: str) -> str:
    """Text as matching sees it: NFKC (full-width to half-width), case-folded, invisible marks removed."""
    out = []
    for char in text:
        cat = unicodedata.category(char)
        if cat in ("Cf", "Mn", "Me", "Cc") and char not in "\n\t":
            continue
        out.append(unicodedata.normalize("NFKC", char).casefold())
    return "".join(out)


def figure(value: float) -> str:
    """A price or count as spoken: 99.9, 129, 19.99 (no trailing zeros)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class Faq(BaseModel):
    """A question viewers ask about a product and the answer the host gives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    q: str = Field(min_length=1)
    a: str = Field(min_length=1)


class Product(BaseModel):
    """One product on sale, as its file describes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str = Field(min_length=1)
    name_en: str = ""
    aliases: tuple[str, ...] = ()
    price: float = Field(ge=0)
    original_price: float | None = Field(None, ge=0)
    currency: Literal["CNY", "USD"] = "CNY"
    discount: str = ""
    unit: str = "件"
    stock: int | None = Field(None, ge=0)
    gifts: tuple[str, ...] = ()
    facts: tuple[str, ...] = ()
    selling_points: tuple[str, ...] = ()
    faq: tuple[Faq, ...] = ()
    image: str = ""  # as written: relative to the products folder; ``load_product`` makes it absolute
    specs: dict[str, str] = Field(default_factory=dict)

    @field_validator("selling_points")
    @classmethod
    def _selling_points(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not point.strip() for point in value):
            raise ValueError("a selling point may not be empty")
        return value

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not fold(alias).strip() for alias in value):
            raise ValueError("an alias may not be empty")
        return value

    @field_validator("discount")
    @classmethod
    def _discount(cls, value: str) -> str:
        if value and not re.search(r"[0-9零一二两三四五六七八九十半]", value):
            raise ValueError("a discount has a figure: '8.5折', '15% off', '立减30元'")
        return value

    @model_validator(mode="after")
    def _prices(self) -> Product:
        if self.original_price is not None and self.original_price < self.price:
            raise ValueError(f"original_price {self.original_price} is below price {self.price}")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the product goes by."""
        return tuple(n for n in (self.name, self.name_en, *self.aliases) if n)

    @property
    def documented(self) -> tuple[str, ...]:
        """The sentences whose figures the host may say: facts, selling points and FAQ answers."""
        return (*self.facts, *self.selling_points, *(entry.a for entry in self.faq))

    @property
    def english_name(self) -> str:
        """The name for English lines."""
        return self.name_en or self.name

    def money(self, value: float, english: bool) -> str:
        """A price in this product's currency, as the host says it."""
        if self.currency == "USD":
            return f"${figure(value)}" if english else f"{figure(value)}美元"
        return f"{figure(value)} yuan" if english else f"{figure(value)}元"

    def sheet(self) -> str:
        """The product's facts as a few compact lines for an LLM prompt."""
        head = f"- {self.name} (id {self.id}"
        others = [n for n in self.names if n != self.name]
        head += f"; also called {', '.join(others)})" if others else ")"
        price = f"  price {figure(self.price)} {self.currency}"
        if self.original_price is not None:
            price += f", was {figure(self.original_price)} {self.currency}"
        if self.discount:
            price += f", discount {self.discount}"
        price += f"; stock {self.stock} {self.unit}" if self.stock is not None else "; stock not given"
        lines = [head, price]
        if self.specs:
            lines.append("  specs: " + "; ".join(f"{k} {v}" for k, v in self.specs.items()))
        if self.gifts:
            lines.append("  free with an order: " + "; ".join(self.gifts))
        lines.extend(f"  * {fact}" for fact in self.facts)
        if self.selling_points:
            lines.append("  selling points: " + "; ".join(self.selling_points))
        lines.extend(f"  Q: {entry.q} A: {entry.a}" for entry in self.faq)
        return "\n".join(lines)


def _name_pattern(name: str) -> str:
    """A name as a regex over folded text: spaces optional, Latin edges not inside a longer word."""
    folded = " ".join(fold(name).split())
    body = r"\s*".join(re.escape(part) for part in folded.split(" "))
    if _ASCII_WORD.match(folded[0]):
        body = r"(?<![a-z0-9])" + body
    if _ASCII_WORD.match(folded[-1]):
        body += r"(?![a-z0-9])"
    return body


class Catalog:
    """The products of a room, found by the names people use for them."""

    def __init__(self, products: Sequence[Product] = ()) -> None:
        self.products = tuple(products)
        owner: dict[str, Product] = {}
        for product in self.products:
            for name in product.names:
                key = " ".join(fold(name).split())
                other = owner.setdefault(key, product)
                if other.id != product.id:
                    raise ProductError(f"{product.id}: name {name!r} is already a name of {other.id}")
        self._owner = owner
        names = sorted(owner, key=len, reverse=True)
        self._names = re.compile("|".join(f"({_name_pattern(n)})" for n in names)) if names else None
        self._by_group = [owner[n] for n in names]

    def __len__(self) -> int:
        return len(self.products)

    def __iter__(self) -> Iterator[Product]:
        return iter(self.products)

    def get(self, product_id: str) -> Product | None:
        """The product with this id, or None."""
        return next((p for p in self.products if p.id == product_id), None)

    def find(self, text: str) -> list[Product]:
        """The products ``text`` names, in the order they are first named."""
        if self._names is None:
            return []
        found: list[Product] = []
        for match in self._names.finditer(fold(text)):
            assert match.lastindex is not None
            product = self._by_group[match.lastindex - 1]
            if product not in found:
                found.append(product)
        return found

    def grounding(self, products: Iterable[Product] | None = None) -> str:
        """A compact fact sheet (all products, or those given) for an LLM system prompt; "" if none."""
        chosen = self.products if products is None else tuple(products)
        return "\n".join(p.sheet() for p in chosen)


def load_product(path: Path) -> Product:
    """One product file; raises ProductError naming the file, the line and the key of every error."""
    data, lines = read_toml_lines(path, ProductError)
    data.setdefault("id", path.stem)
    try:
        product = Product.model_validate(data)
    except ValidationError as exc:
        raise ProductError(
            "; ".join(f"{path}:{line_of(lines, e['loc'])}: {describe(e)}" for e in exc.errors())
        ) from exc
    if product.image:
        image = (path.parent / product.image).resolve()
        if image.suffix.lower() not in IMAGE_SUFFIXES or not image.is_file():
            raise ProductError(
                f"{path}:{line_of(lines, ('image',))}: image = {product.image!r}: "
                f"no {'/'.join(IMAGE_SUFFIXES)} file there (relative to {path.parent})"
            )
        product = product.model_copy(update={"image": str(image)})
    return product


def load_catalog(library: Path) -> Catalog:
    """Every ``<library>/products/*.toml``; a library without a products folder has none."""
    folder = library / "products"
    if not folder.is_dir():
        return Catalog()
    products: list[Product] = []
    seen: dict[str, Path] = {}
    for path in sorted(folder.glob("*.toml")):
        product = load_product(path)
        if product.id in seen:
            raise ProductError(f"{path}:1: id = {product.id!r}: already the id of {seen[product.id]}")
        seen[product.id] = path
        products.append(product)
    try:
        return Catalog(products)
    except ProductError as exc:
        raise ProductError(f"{folder}: {exc}") from exc

"""Template variables in scripted lines: ``{price}`` is filled from the product file when the line is said.

A segment's text names variables in braces (``{{`` and ``}}`` are literal braces). What a script may use:

- from its product (``product = "..."``): ``{name}`` (the English name in an English script),
  ``{price}``, ``{original_price}``, ``{saving}`` (original price minus price), ``{currency}`` (the
  spoken word: 元/美元, yuan/dollars), ``{discount}``, ``{stock}``, ``{unit}``, ``{gift}`` (the gifts
  joined), ``{selling_point_1}``, ``{selling_point_2}``... and ``{spec.NAME}`` (``{spec.净含量}``);
- from its ``[vars]`` table: any other name (letters, digits, ``_``), which may not shadow a product's.

A variable the product does not give (``{stock}`` for a product without a stock figure) is an error at
load, as is an unknown name or an unbalanced brace: a line is never said with a hole in it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from broadcaster.show.products import Product, figure

PRODUCT_VARIABLES = (
    "name", "price", "original_price", "saving", "currency", "discount", "stock", "unit", "gift",
)  # fmt: skip
VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_INDEXED = re.compile(r"^(selling_point)_([1-9][0-9]*)$")


class TemplateError(ValueError):
    """A template that cannot be filled; the message says which variable and why."""


def fields(text: str) -> list[str]:
    """The variable names ``text`` uses, in order; raises TemplateError on a lone or empty brace."""
    names: list[str] = []
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in ("{{", "}}"):
            continue
        if match.group(1) is None:
            raise TemplateError(f"unbalanced {token!r} at character {match.start() + 1} (write {token * 2})")
        name = match.group(1)
        if not name or name != name.strip():
            raise TemplateError(f"{token!r}: a variable is a name in braces, like {{price}}")
        names.append(name)
    return names


def is_product_variable(name: str) -> bool:
    """Whether ``name`` belongs to the product namespace (so ``[vars]`` may not define it)."""
    return name in PRODUCT_VARIABLES or name.startswith("spec.") or bool(_INDEXED.match(name))


def product_values(product: Product | None, english: bool) -> dict[str, str]:
    """The product variables this product gives, as they are spoken."""
    if product is None:
        return {}
    usd = product.currency == "USD"
    values = {
        "name": product.english_name if english else product.name,
        "price": figure(product.price),
        "currency": ("dollars" if usd else "yuan") if english else ("美元" if usd else "元"),
        "unit": product.unit,
    }
    if product.original_price is not None:
        values["original_price"] = figure(product.original_price)
        values["saving"] = figure(round(product.original_price - product.price, 2))
    if product.discount:
        values["discount"] = product.discount
    if product.stock is not None:
        values["stock"] = str(product.stock)
    if product.gifts:
        values["gift"] = (", " if english else "、").join(product.gifts)
    for i, point in enumerate(product.selling_points, 1):
        values[f"selling_point_{i}"] = point
    for spec, value in product.specs.items():
        values[f"spec.{spec}"] = value
    return values


def missing(name: str, product: Product | None, known: Mapping[str, str]) -> str:
    """Why ``name`` cannot be filled, for the error message."""
    if not is_product_variable(name):
        return f"unknown variable {{{name}}} (known: {', '.join(sorted(known)) or 'none'})"
    if product is None:
        return f'{{{name}}} needs a product: set product = "..."'
    if name.startswith("spec."):
        return f"{{{name}}}: {product.id} has no spec {name[5:]!r} (it has: {', '.join(product.specs)})"
    if _INDEXED.match(name):
        return f"{{{name}}}: {product.id} has {len(product.selling_points)} selling points"
    key = {"saving": "original_price", "gift": "gifts"}.get(name, name)
    return f"{{{name}}}: {product.id} has no {key}"


def check(text: str, values: Mapping[str, str], product: Product | None) -> list[str]:
    """What is wrong with ``text`` given these values (empty when it fills)."""
    try:
        names = fields(text)
    except TemplateError as exc:
        return [str(exc)]
    return [missing(name, product, values) for name in dict.fromkeys(names) if name not in values]


def fill(text: str, values: Mapping[str, str]) -> str:
    """``text`` with its variables filled (checked first: a missing one raises TemplateError)."""

    def sub(match: re.Match[str]) -> str:
        token = match.group()
        if token in ("{{", "}}"):
            return token[0]
        if match.group(1) is None or match.group(1) not in values:
            raise TemplateError(f"cannot fill {token!r}")
        return values[match.group(1)]

    return _TOKEN.sub(sub, text)

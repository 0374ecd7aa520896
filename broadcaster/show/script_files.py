"""A script file read and validated: every error of the file, each as ``file:line: key: what is wrong``.

Checked at load, so nothing fails on air: the keys and their types, segment ids unique in the file, the
product exists, every template variable can be filled from the product and ``[vars]``, each ``voice``
is one of the TTS engines allowed, ``pause_after_s`` within 0..30 and weights above 0.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from broadcaster.show.products import Catalog
from broadcaster.show.script_template import VAR_NAME, check, is_product_variable, product_values
from broadcaster.show.scripts import Language, Rotation, Script, ScriptError, Segment
from broadcaster.show.toml_lines import Loc, describe, key_lines, line_of, syntax_line

MAX_PAUSE_S = 30.0


class SegmentFile(BaseModel):
    """``[[segments]]``: one piece of a talk as written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    text: str = Field(min_length=1)
    weight: float = Field(1.0, gt=0, le=1000)
    voice: str | None = None
    pause_after_s: float = Field(0.0, ge=0, le=MAX_PAUSE_S)


class ScriptFile(BaseModel):
    """A script file as written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    title: str = ""
    language: Language = "zh"
    product: str | None = None
    rotation: Rotation = "sequential"
    vars: dict[str, str | int | float] = Field(default_factory=dict)
    segments: tuple[SegmentFile, ...] = Field(min_length=1)


def _spoken(value: str | int | float) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def parse_script(text: str, path: Path, catalog: Catalog, voices: Collection[str] | None = None) -> Script:
    """A script from its file's text; raises ScriptError listing every problem with its line.

    ``voices``: the TTS engine names a segment may ask for (None: any name).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScriptError([f"{path}:{syntax_line(exc)}: not valid TOML: {exc}"]) from exc
    lines = key_lines(text)
    errors: list[str] = []

    def error(loc: Loc, message: str) -> None:
        errors.append(f"{path}:{line_of(lines, loc)}: {message}")

    data.setdefault("id", path.stem)
    try:
        raw = ScriptFile.model_validate(data)
    except ValidationError as exc:
        for e in exc.errors():
            error(e["loc"], describe(e))
        raise ScriptError(errors) from exc

    product = None
    if raw.product is not None:
        product = catalog.get(raw.product)
        if product is None:
            known = ", ".join(p.id for p in catalog) or "none"
            error(("product",), f"product = {raw.product!r}: no such product in products/ (known: {known})")
    for name in raw.vars:
        if not VAR_NAME.match(name) or is_product_variable(name):
            why = "is a product variable" if is_product_variable(name) else "is not a name (a-z, 0-9, _)"
            error(("vars", name), f"vars.{name}: {name!r} {why}")
    variables = {k: _spoken(v) for k, v in raw.vars.items()}
    values = {**product_values(product, raw.language == "en"), **variables}
    seen: dict[str, int] = {}
    for i, seg in enumerate(raw.segments):
        where = f"segments[{i}]"
        if seg.id in seen:
            error(("segments", i, "id"), f"{where}.id = {seg.id!r}: segments[{seen[seg.id]}] has it already")
        seen.setdefault(seg.id, i)
        if seg.voice is not None and voices is not None and seg.voice not in voices:
            allowed = ", ".join(sorted(voices)) or "none"
            error(("segments", i, "voice"), f"{where}.voice = {seg.voice!r}: not an engine here ({allowed})")
        if raw.product is None or product is not None:  # an unknown product is reported once, above
            for problem in check(seg.text, values, product):
                error(("segments", i, "text"), f"{where}.text: {problem}")
        if not seg.text.strip():
            error(("segments", i, "text"), f"{where}.text: empty")
    if errors:
        raise ScriptError(errors)
    segments = tuple(
        Segment(s.id, s.text.strip(), s.weight, s.voice, s.pause_after_s, line_of(lines, ("segments", i)))
        for i, s in enumerate(raw.segments)
    )
    return Script(
        id=raw.id,
        title=raw.title or raw.id,
        language=raw.language,
        rotation=raw.rotation,
        segments=segments,
        product=product,
        vars=tuple(variables.items()),
        path=path,
    )


def load_script(path: Path, catalog: Catalog, voices: Collection[str] | None = None) -> Script:
    """One script file; raises ScriptError naming the file and line of every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError([f"{path}:1: cannot read: {exc}"]) from exc
    return parse_script(text, path, catalog, voices)

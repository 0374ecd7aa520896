"""The safety filter: every sentence passes here before TTS, so what may not be said on air never is.

Rules come from TOML files: the shipped lists (``safety_rules.toml``: advertising-law absolute terms,
medical claims, off-platform contact details) and the room's own (``safety.lists``). A rule with the id
of an earlier one replaces it; ``enabled = false`` switches a shipped rule off. Format::

    [[rules]]
    id = "absolute.best"          # unique in its file: a-z 0-9 . _ -
    category = "absolute"         # for reports: absolute, medical, contact, custom...
    action = "replace"            # drop the sentence | replace the matched words | rewrite the sentence
    words = ["最佳"]              # phrases, matched through evasions (below)
    patterns = ['最好(?=的|$)']   # Python regexes over the folded sentence (below)
    view = "skeleton"             # what `patterns` see: "skeleton" (default) or "text"
    replacement = "很好"          # replace: what every match becomes...
    map = { "最强" = "很强" }     # ...or per word (its keys are words too)
    text = "有问题直接在评论区问我就好。"  # rewrite: the line said instead
    sources = ["llm", "script", "viewer", "moderator"]  # whose text it covers (default: all)
    enabled = true
    note = "why, for whoever reviews the list"

A sentence is matched folded: NFKC (full-width to half-width, ① to 1), case-folded, zero-width and
combining marks removed: the *text* view, which keeps spaces and punctuation (URLs, e-mail addresses,
@handles). The *skeleton* also drops every space, punctuation mark and symbol but "%", keeping one space
only between two Latin letters or digits that had something between them ("微 信" is 微信, "w.x" and
"V X" are "w x" and "v x"), and turns Chinese or full-width digits in runs of five or more into ASCII
("一三八零零…", "１３８"). Words match the skeleton with those spaces optional, a Latin word only as a whole
word ("vx" is not inside "vxxx", "wx" not inside "new xbox"). Homophones and variant spellings are listed
as words (威信, 薇信, V信, vx, weixin for 微信).

A drop beats a rewrite, which beats a replace; a replaced sentence is checked again. LLM sentences then
go through the fact guard (``fact_guard.py``). Every decision but a pass is logged and counted.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from broadcaster.config import Config, read_toml
from broadcaster.show.fact_guard import FactGuard
from broadcaster.show.products import Catalog, Product

Source = Literal["llm", "script", "viewer", "moderator"]
Action = Literal["pass", "drop", "replace", "rewrite"]
SOURCES: tuple[Source, ...] = ("llm", "script", "viewer", "moderator")
DEFAULT_RULES = Path(__file__).with_name("safety_rules.toml")
NAME_MAX_CHARS = 16

log = logging.getLogger("broadcaster.safety")

_CN_DIGITS = dict(zip("零〇一二三四五六七八九幺壹贰叁肆伍陆柒捌玖", "001234567891123456789", strict=True))
_INVISIBLE = frozenset(("Cf", "Mn", "Me"))
_LONG_DIGITS = re.compile(r"\d{5,}")
_CONTACT_ID = re.compile(r"\s*[:=]?\s*[A-Za-z0-9_.-]+")


class RuleError(Exception):
    """A rule file that cannot be used; the message names the file and the rule."""


class Rule(BaseModel):
    """One thing that may not be said, and what happens to a sentence that says it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    category: str = "custom"
    action: Literal["drop", "replace", "rewrite"]
    words: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    view: Literal["skeleton", "text"] = "skeleton"
    replacement: str | None = None
    map: dict[str, str] = Field(default_factory=dict)
    text: str = ""
    sources: tuple[Source, ...] = SOURCES
    enabled: bool = True
    note: str = ""

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for i, pattern in enumerate(value):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"patterns[{i}] = {pattern!r} is not a valid regex: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _complete(self) -> Rule:
        if not (self.words or self.patterns or self.map):
            raise ValueError("a rule needs words, patterns or map")
        for word in (*self.words, *self.map):
            if not skeleton(word).text.strip():
                raise ValueError(f"word {word!r} has no letters or digits")
        if self.action == "rewrite" and not self.text.strip():
            raise ValueError("action 'rewrite' needs text")
        unmapped = self.patterns or set(self.words) - set(self.map)
        if self.action == "replace" and self.replacement is None and unmapped:
            raise ValueError("action 'replace' needs replacement (or a map entry for every word)")
        return self


@dataclass(frozen=True)
class Decision:
    """What may be spoken of a sentence."""

    action: Action
    text: str | None  # what may be spoken (None: nothing)
    rule: str = ""  # the rule that fired
    original: str = ""


@dataclass(frozen=True)
class View:
    """A folded form of a sentence, with the sentence index each of its characters came from."""

    text: str
    origin: tuple[int, ...]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The sentence's [start, end) that this view's [start, end) came from."""
        return self.origin[start], self.origin[end - 1] + 1


def _ascii_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


def folded(sentence: str) -> View:
    """The text view: NFKC, case-folded, invisible marks removed, control characters as spaces."""
    chars: list[str] = []
    origin: list[int] = []
    for i, char in enumerate(sentence):
        cat = unicodedata.category(char)
        if cat in _INVISIBLE:
            continue
        for out in " " if cat == "Cc" else unicodedata.normalize("NFKC", char).casefold():
            chars.append(out)
            origin.append(i)
    return View("".join(chars), tuple(origin))


def skeleton(sentence: str, text: View | None = None) -> View:
    """The skeleton view (see the module docstring)."""
    text = text or folded(sentence)
    kept: list[str] = []
    origins: list[int] = []
    gaps: list[bool] = []  # whether something was dropped before the character
    gap = False
    for char, origin in zip(text.text, text.origin, strict=True):
        if char.isalnum() or char == "%":
            kept.append(str(unicodedata.digit(char, 0)) if char.isdigit() and not char.isascii() else char)
            origins.append(origin)
            gaps.append(gap)
        gap = not (char.isalnum() or char == "%")
    run: list[int] = []
    for i, char in enumerate([*kept, ""]):
        if char and (char in _CN_DIGITS or (char.isascii() and char.isdigit())):
            run.append(i)
            continue
        if len(run) >= 5 and any(kept[j] in _CN_DIGITS for j in run):
            for j in run:
                kept[j] = _CN_DIGITS.get(kept[j], kept[j])
        run = []
    chars: list[str] = []
    where: list[int] = []
    for char, origin, gap_before in zip(kept, origins, gaps, strict=True):
        if gap_before and chars and _ascii_alnum(chars[-1]) and _ascii_alnum(char):
            chars.append(" ")
            where.append(origin)
        chars.append(char)
        where.append(origin)
    return View("".join(chars), tuple(where))


def word_pattern(word: str) -> str:
    """A word as a regex over skeletons: spaces optional between Latin characters, whole Latin words."""
    skel = skeleton(word).text.replace(" ", "")
    body = "".join(
        (" ?" if i and _ascii_alnum(skel[i - 1]) and _ascii_alnum(c) else "") + re.escape(c)
        for i, c in enumerate(skel)
    )
    edge = {True: "a-z", False: "0-9"}
    if _ascii_alnum(skel[0]):
        body = f"(?<![{edge[skel[0].isalpha()]}])" + body
    if _ascii_alnum(skel[-1]):
        body += f"(?![{edge[skel[-1].isalpha()]}])"
    return body


def _key(text: str) -> str:
    return skeleton(text).text.replace(" ", "")


@dataclass(frozen=True)
class _Compiled:
    rule: Rule
    on_skeleton: re.Pattern[str] | None
    on_text: re.Pattern[str] | None
    replacements: dict[str, str]


def _compile(rule: Rule) -> _Compiled:
    words = sorted({_key(w) for w in (*rule.words, *rule.map)}, key=len, reverse=True)
    parts = [word_pattern(w) for w in words]
    texts = list(rule.patterns) if rule.view == "text" else []
    parts += [] if texts else list(rule.patterns)
    return _Compiled(
        rule,
        re.compile("|".join(f"(?:{p})" for p in parts)) if parts else None,
        re.compile("|".join(f"(?:{p})" for p in texts)) if texts else None,
        {_key(k): v for k, v in rule.map.items()},
    )


@dataclass(frozen=True)
class _Hit:
    rule: Rule
    start: int
    end: int
    replacement: str


def load_rules(path: Path) -> list[Rule]:
    """The rules of one TOML file; raises RuleError naming the file, the rule and the key."""
    data = read_toml(path, RuleError)
    if set(data) - {"rules"} or not isinstance(data.get("rules", []), list):
        raise RuleError(f"{path}: expected only [[rules]] tables")
    rules: list[Rule] = []
    for i, item in enumerate(data.get("rules", [])):
        name = f"rule {item.get('id', '?')!r} (#{i + 1})" if isinstance(item, dict) else f"rule #{i + 1}"
        try:
            rule = Rule.model_validate(item)
        except ValidationError as exc:
            errors = "; ".join(
                ".".join(map(str, e["loc"])) + ": " * bool(e["loc"]) + e["msg"].removeprefix("Value error, ")
                for e in exc.errors()
            )
            raise RuleError(f"{path}: {name}: {errors}") from exc
        if any(r.id == rule.id for r in rules):
            raise RuleError(f"{path}: {name}: id used twice in this file")
        rules.append(rule)
    return rules


def _matches(regex: re.Pattern[str], text: str, overlapping: bool, every: bool) -> list[re.Match[str]]:
    """The first match; or every match; or every match, overlapping ones too (for names)."""
    if not overlapping:
        found = regex.finditer(text) if every else [regex.search(text)]
        return [m for m in found if m is not None and m.end() > m.start()]
    out, pos = [], 0
    while (m := regex.search(text, pos)) is not None:
        if m.end() > m.start():
            out.append(m)
        pos = m.start() + 1
    return out


def _speakable(text: str) -> bool:
    return any(c.isalnum() for c in text)


class SafetyFilter:
    """Decides, sentence by sentence, what may be spoken."""

    def __init__(self, rules: Sequence[Rule], guard: FactGuard | None = None) -> None:
        by_id = {r.id: r for r in rules}  # a later rule with the same id replaces an earlier one
        self.rules = tuple(r for r in by_id.values() if r.enabled)
        self._compiled = [_compile(r) for r in self.rules]
        self.guard = guard
        self.stats: dict[str, int] = {}

    @classmethod
    def from_config(cls, cfg: Config, catalog: Catalog) -> SafetyFilter:
        """The shipped lists (``safety.defaults``), the room's ``safety.lists``, the fact guard if on."""
        rules = load_rules(DEFAULT_RULES) if cfg.safety.defaults else []
        for path in cfg.safety.lists:
            rules += load_rules(cfg.resolve(path))
        return cls(rules, FactGuard(catalog) if cfg.safety.fact_guard else None)

    def _hits(self, sentence: str, source: Source, every: bool = False) -> list[_Hit]:
        text = folded(sentence)
        skel = skeleton(sentence, text)
        hits: list[_Hit] = []
        for c in self._compiled:
            if source not in c.rule.sources:
                continue
            for view, regex in ((skel, c.on_skeleton), (text, c.on_text)):
                if regex is None:
                    continue
                for m in _matches(regex, view.text, every, c.rule.action == "replace"):
                    key = m.group().replace(" ", "")
                    replacement = c.replacements.get(key, c.rule.replacement or "")
                    hits.append(_Hit(c.rule, *view.span(m.start(), m.end()), replacement))
        return hits

    @staticmethod
    def _replace(sentence: str, hits: list[_Hit]) -> str:
        out, at = [], 0
        for hit in sorted(hits, key=lambda h: (h.start, -h.end)):
            removed = hit.rule.action != "replace"
            if hit.start >= at:
                out += [sentence[at : hit.start], "" if removed else hit.replacement]
                at = hit.end
            elif removed:  # overlapping removals remove their union
                at = max(at, hit.end)
        return "".join([*out, sentence[at:]])

    def _decide(self, sentence: str, source: Source, product: Product | None) -> tuple[Decision, list[str]]:
        hits = self._hits(sentence, source)
        fired = list(dict.fromkeys(h.rule.id for h in sorted(hits, key=lambda h: h.start)))
        first = fired[0] if fired else ""
        text = sentence
        for _ in range(3):
            worst = next((h for h in hits if h.rule.action == "drop"), None)
            worst = worst or next((h for h in hits if h.rule.action == "rewrite"), None)
            if worst is not None:
                line = worst.rule.text if worst.rule.action == "rewrite" else None
                return Decision(worst.rule.action, line, worst.rule.id, sentence), fired
            if not hits:
                break
            text = self._replace(text, hits)
            hits = self._hits(text, source)  # a replacement must not complete another banned phrase
            fired += [h.rule.id for h in hits if h.rule.id not in fired]
        if hits or (fired and not _speakable(text)):
            return Decision("drop", None, fired[0], sentence), fired
        if self.guard is not None and source == "llm":
            wrong = self.guard.check(text, product)
            if wrong is not None:
                rule = f"fact.{wrong.kind}"
                action: Action = "rewrite" if wrong.text else "drop"
                return Decision(action, wrong.text, rule, sentence), [*fired, rule]
        if fired:
            return Decision("replace", text, first, sentence), fired
        return Decision("pass", sentence, "", sentence), fired

    def check(self, sentence: str, *, source: Source = "llm", product: Product | None = None) -> Decision:
        """What may be spoken of one sentence (the splitter runs first, so a phrase is never cut)."""
        decision, fired = self._decide(sentence, source, product)
        self.stats[f"action:{decision.action}"] = self.stats.get(f"action:{decision.action}", 0) + 1
        for rule in fired:
            self.stats[f"rule:{rule}"] = self.stats.get(f"rule:{rule}", 0) + 1
        if decision.action != "pass":
            log.info(
                "safety %s by %s (source %s): %r -> %r",
                decision.action, decision.rule, source, sentence, decision.text,
            )  # fmt: skip
        return decision

    def matches(self, text: str, source: Source = "viewer") -> list[str]:
        """The ids of the rules ``text`` trips (chat triage blocks on any), without counting or logging."""
        return list(dict.fromkeys(h.rule.id for h in self._hits(text, source)))

    def clean_name(self, name: str) -> str:
        """A viewer's name fit to read aloud: contact details and banned words removed, never empty."""
        plain = "".join(c for c in unicodedata.normalize("NFKC", name) if unicodedata.category(c)[0] != "C")
        hits = self._hits(plain, "viewer", every=True)
        for i, hit in enumerate(hits):  # the id after a contact word goes with it: "vx: tea888"
            if hit.rule.category == "contact" and (tail := _CONTACT_ID.match(plain, hit.end)):
                hits[i] = _Hit(hit.rule, hit.start, tail.end(), "")
        cleaned = self._replace(plain, hits)
        cleaned = " ".join(_LONG_DIGITS.sub("", cleaned).split()).strip(" .,_-:;!?@#*/|~")
        if not _speakable(cleaned):
            has_cjk = any("\u4e00" <= c <= "\u9fff" for c in name)
            return "friend" if not has_cjk and any(c.isascii() and c.isalpha() for c in name) else "朋友"
        return cleaned[:NAME_MAX_CHARS]

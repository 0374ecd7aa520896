"""What a comment's text says about it: blocked words, links, chatter, questions, and a key for repeats.

Blocked words reuse the safety filter's matcher, so the same evasions are caught in chat as on air:
spaced ("加 微 信"), full-width, homophones and variant spellings listed as words (威信, vx). The
room's ``chat.block.words`` and rule files are matched as drops; the shipped contact rules (and URL
rules, for ``links``) come from the safety filter's defaults.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from broadcaster.show.safety import DEFAULT_RULES, Rule, SafetyFilter, load_rules
from danmaku.config import BlockConfig

_EMOTE = re.compile(r"\[[^\[\]\s]{1,16}\]")  # [doge], [笑哭]: platform emote codes
_LINK = re.compile(
    r"(?:https?://|www\.)\S+|\b[a-z0-9-]{2,63}\.(?:com|cn|net|org|top|xyz|cc|me|io|vip|shop|link|tv)\b",
    re.IGNORECASE,
)
_QUESTION = re.compile(
    r"[?？]|[吗呢么嘛][\s!！。~～]*$|多少|怎么|什么|几[个天号点块钱元斤克]|哪|为什么|能不能|可不可以|有没有|是不是|"
    r"\b(?:how|what|why|when|where|which|who|can|could|does|do|is|are|any|price)\b",
    re.IGNORECASE,
)
_KEY_DROP = re.compile(r"[\W_]+")
LINK_RULES = frozenset(("contact.url", "contact.email"))


def fold(text: str) -> str:
    """Full-width to half-width, case folded: the form every text rule reads."""
    return unicodedata.normalize("NFKC", text).casefold()


def repeat_key(folded: str) -> str:
    """A comment's text with emotes, spaces and punctuation removed: "好!!" and "好 。" repeat "好"."""
    return _KEY_DROP.sub("", _EMOTE.sub("", folded))[:64]


def is_chatter(folded: str, min_chars: int) -> bool:
    """Nothing to answer: emotes, "666", "哈哈哈", fewer than ``min_chars`` distinct letters."""
    letters = {c for c in _EMOTE.sub("", folded) if c.isalpha()}
    return len(letters) < min_chars


def block_rules(cfg: BlockConfig, files: Iterable[Path] = ()) -> list[Rule]:
    """The rules of ``[chat.block]`` (``TextRules`` makes every one a drop for viewer text).

    The shipped contact/link rules, ``words``, and rule ``files`` (``lists``, resolved by the
    caller); raises RuleError naming a bad file.
    """
    rules: list[Rule] = []
    if cfg.contact or cfg.links:
        for rule in load_rules(DEFAULT_RULES):
            link = rule.id in LINK_RULES
            if rule.category == "contact" and (cfg.links if link else cfg.contact):
                rules.append(rule)
    if cfg.words:
        rules.append(Rule(id="chat.block.words", category="chat", action="drop", words=cfg.words))
    for path in files:
        rules += load_rules(path)
    return rules


class TextRules:
    """The text checks of triage, compiled once."""

    def __init__(self, rules: list[Rule], links: bool, mentions: Iterable[str] = ()) -> None:
        blocking = [r.model_copy(update={"action": "drop", "sources": ("viewer",)}) for r in rules]
        self.filter = SafetyFilter(blocking) if blocking else None
        self.links = links
        names = sorted({fold(m).strip() for m in mentions if m.strip()}, key=len, reverse=True)
        self._mentions = re.compile("|".join(map(re.escape, names))) if names else None

    def blocked(self, text: str, folded: str) -> str | None:
        """Why ``text`` may not be answered (``link`` or ``blocked:RULE``), or None."""
        if self.links and _LINK.search(folded):
            return "link"
        if self.filter is not None:
            fired = self.filter.matches(text, "viewer")
            if fired:
                return f"blocked:{fired[0]}"
        return None

    def asks(self, folded: str) -> bool:
        """A question, or a message naming the host or a product: worth answering first."""
        if _QUESTION.search(folded):
            return True
        return self._mentions is not None and self._mentions.search(folded) is not None

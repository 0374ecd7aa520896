"""Sentence splitting: an LLM's token stream (or a whole text) into chunks a TTS engine can speak.

A chunk ends at sentence punctuation. Clause punctuation ends a chunk only for the first chunk of a reply
(so speech starts early) and where a sentence would run past ``max_chars``. Fragments too short to speak
well wait and join the text that follows. Numbers, URLs, e-mail addresses and abbreviations are never
split: an ASCII mark counts only when the character after it shows it is not inside a token.

Every decision looks a bounded way ahead and waits for those characters (or the end of the stream), so a
reply fed in any tokenisation splits exactly as the whole text does, and each ``feed`` costs O(new text).
"""

from __future__ import annotations

import re
import unicodedata

_SENTENCE, _CLAUSE, _SPACE, _CJK = range(4)  # places to split, in the order a cut prefers them
_TOKEN = -1  # an ASCII mark inside a token (1.5, 10:30, a.b/c, e.g.), no place to split
_ASCII_MARKS = frozenset(".!?;,:")
_CJK_STOPS = "。！？；…⋯"
_CJK_CLAUSES = "，、：—―"
_MARKS = frozenset(_CJK_STOPS + _CJK_CLAUSES) | _ASCII_MARKS
_STOP_RUN = frozenset(_CJK_STOPS + "!?;.")  # "?!", "……", "..." are one mark
_CLAUSE_RUN = frozenset(_CJK_CLAUSES + ",:")
_FIRM_CLAUSES = frozenset("，、：")
_CLOSERS = frozenset("”’」』）】》〉］｝)]}")  # '"' and "'" close when no word follows or one is open
_GLUE = frozenset("/@#%&=_~+$\\")  # after an ASCII mark: a URL, e-mail, price or path goes on
# a period after these never ends a sentence; after _NUMBERED ones, not before a digit ("No. 5")
_TITLES = frozenset({"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "cf", "approx", "rev"})
_NUMBERED = frozenset({"no", "nos", "vol", "fig", "p", "pp", "ch", "art", "sec"})
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_MARKDOWN = re.compile(r"^[ \t]*(?:#{1,6}|[-+>])[ \t]+|\*+|`+|~~|__", re.MULTILINE)


def _is_cjk(char: str) -> bool:
    """Whether a letter is a CJK ideograph, kana or hangul (words run together without spaces)."""
    code = ord(char)
    return 0x2E80 <= code <= 0x9FFF or 0xAC00 <= code <= 0xD7AF or 0xF900 <= code <= 0xFAFF or code >= 0x20000


def _cjk_break(prev: str, char: str) -> bool:
    """Whether a long run may be cut between ``prev`` and ``char``: next to a CJK letter, not punctuation."""
    if prev.isalnum() and _is_cjk(prev):
        return char.isalnum() or unicodedata.category(char)[0] == "S"
    if char.isalnum() and _is_cjk(char):
        return prev.isalnum() or unicodedata.category(prev)[0] == "S"
    return False


def _glued(char: str) -> bool:
    """Whether ``char`` right after an ASCII mark makes the mark part of a token (1.5, 10:30, a.b/c)."""
    return char.isascii() and (char.isalnum() or char in _GLUE)


def speakable(text: str) -> int:
    """Characters a voice reads aloud: letters, digits and CJK characters count one each."""
    return sum(char.isalnum() for char in text)


def _clean(text: str) -> str:
    """Remove Markdown an LLM leaves in its output and collapse whitespace."""
    text = _MARKDOWN.sub("", _LINK.sub(r"\1", text))
    return " ".join(text.split())


class SentenceSplitter:
    """Turns a reply, streamed in tokens of any size, into chunks for TTS.

    ``max_chars`` caps a chunk's length; ``min_chars`` is the fewest speakable characters a chunk may
    have (shorter ones join what follows); ``first_min_chars`` is that minimum for the first chunk of a
    reply, which may also end at a clause mark so the voice starts as early as possible.
    """

    def __init__(self, max_chars: int = 60, min_chars: int = 6, first_min_chars: int = 4) -> None:
        if max_chars < 1 or min_chars < 0 or first_min_chars < 0:
            raise ValueError("max_chars must be at least 1 and the minimums not negative")
        self._max = max_chars
        self._min = min_chars
        self._first_min = first_min_chars
        self._buf = ""  # text not yet emitted; never starts with whitespace
        self._i = 0  # how much of _buf has been scanned
        self._spoken = 0  # speakable characters in _buf[:_i]
        self._cands: list[tuple[int, int, int]] = []  # places a chunk may end: (position, kind, spoken)
        self._first = True

    def feed(self, text: str) -> list[str]:
        """Append streamed text; return the chunks that are complete now."""
        self._buf += text
        return self._scan(final=False)

    def flush(self) -> list[str]:
        """End the reply: return the chunks left, the last one even if short. Readies for the next."""
        chunks = self._scan(final=True)
        if self._spoken:
            self._cut(len(self._buf), self._spoken, chunks)
        self.reset()
        return chunks

    def reset(self) -> None:
        """Drop any buffered text (an interrupt); the next text starts a new reply."""
        self._buf = ""
        self._i = 0
        self._spoken = 0
        self._cands = []
        self._first = True

    def _threshold(self) -> int:
        return max(1, self._first_min if self._first else self._min)

    def _scan(self, final: bool) -> list[str]:
        """Classify characters from ``_i`` on, cutting chunks as they complete."""
        out: list[str] = []
        while True:
            buf, i = self._buf, self._i
            if i == 0 and buf[:1].isspace():
                buf = self._buf = buf.lstrip()
            if i >= len(buf):
                return out
            char = buf[i]
            end = -1  # where a sentence or clause just ended, if one did
            if char in _MARKS:
                step = self._mark(i, final)
                if step is None:
                    return out  # its meaning depends on text not here yet
                nxt, kind = step
                if kind != _TOKEN:
                    end = nxt
                    self._cands.append((nxt, kind, self._spoken))
            else:
                nxt = i + 1
                if char == "\n":
                    end = i
                    self._cands.append((i, _SENTENCE, self._spoken))
                elif char.isspace():
                    if not buf[i - 1].isspace():
                        self._cands.append((i, _SPACE, self._spoken))
                else:
                    prev = buf[i - 1] if i else ""
                    if prev and _cjk_break(prev, char):
                        self._cands.append((i, _CJK, self._spoken))
                    self._spoken += char.isalnum()
            self._i = nxt
            while self._i > self._max and (pick := self._pick()) is not None:
                end -= self._cut(*pick, out)
            if end > 0:
                _, kind, spoken = self._cands[-1]
                if spoken >= self._threshold() and (kind == _SENTENCE or self._first):
                    self._cut(end, spoken, out)

    def _mark(self, i: int, final: bool) -> tuple[int, int] | None:
        """Read the punctuation at ``i``: (where it ends, its kind), or None to wait for more text."""
        buf = self._buf
        char = buf[i]
        kind = self._ascii_kind(i, final) if char in _ASCII_MARKS else self._cjk_kind(i, final)
        if kind is None or kind == _TOKEN:
            return None if kind is None else (i + 1, _TOKEN)
        if buf[i] in _FIRM_CLAUSES:
            return i + 1, kind  # nothing attaches to a full-width comma: the first clause goes out at once
        run = _STOP_RUN if kind == _SENTENCE else _CLAUSE_RUN
        j = i + 1
        while j < len(buf):
            char = buf[j]
            if char in "\"'":
                if j + 1 == len(buf) and not final:
                    return None
                if buf[j + 1 : j + 2].isalnum() and (char == "'" or buf.count(char, 0, j) % 2 == 0):
                    break  # an opening quote: the next sentence's
            elif char not in run and char not in _CLOSERS:
                break
            j += 1
        else:
            if not final:
                return None  # more marks or a closing quote may follow
        return j, kind

    def _ascii_kind(self, i: int, final: bool) -> int | None:
        """Whether the ASCII mark at ``i`` ends a sentence, a clause or nothing; None to wait."""
        char = self._buf[i]
        if i + 1 == len(self._buf) and not final:
            return None
        after = self._buf[i + 1 : i + 2]
        if after and _glued(after):
            return _TOKEN
        if char == "." and after not in (".", "…"):
            ends = self._period_ends(i, final)
            if not ends:
                return None if ends is None else _TOKEN
        return _CLAUSE if char in ",:" else _SENTENCE

    def _cjk_kind(self, i: int, final: bool) -> int | None:
        """Whether the full-width mark at ``i`` ends a sentence, a clause or nothing; None to wait."""
        buf = self._buf
        if buf[i] in _CJK_STOPS:
            return _SENTENCE
        if buf[i] in "，：" and buf[i - 1 : i].isdigit():  # a full-width time or thousands separator?
            if i + 1 == len(buf) and not final:
                return None
            if buf[i + 1 : i + 2].isdigit():
                return _TOKEN
        return _CLAUSE

    def _period_ends(self, i: int, final: bool) -> bool | None:
        """Whether the "." at ``i`` (followed by a space or non-ASCII) ends a sentence; None to wait."""
        buf = self._buf
        start = i
        while start and buf[start - 1].isascii() and (buf[start - 1].isalpha() or buf[start - 1] == "."):
            start -= 1
        word = buf[start:i]
        if word.lower() in _TITLES or (word.isupper() and len(word) == 1 and word != "I"):
            return False
        parts = word.split(".")
        if len(parts) > 1 and all(len(part) == 1 for part in parts):
            return False  # U.S., e.g., i.e., a.m.
        j = i + 1
        while j < len(buf) and buf[j] in " \t":
            j += 1
        if j == len(buf):
            return True if final else None
        after = buf[j]
        if after.isascii() and (after.islower() or after in ",;:"):
            return False  # "etc. and", "e.g., x": the sentence goes on
        return not (after.isdigit() and word.lower() in _NUMBERED)

    def _pick(self) -> tuple[int, int] | None:
        """Where to cut a chunk that ran past ``max_chars``: (position, spoken), or None to wait."""
        for need in (self._threshold(), 1):
            for kind in (_SENTENCE, _CLAUSE, _SPACE, _CJK):
                for pos, cand_kind, spoken in reversed(self._cands):
                    if cand_kind == kind and pos <= self._max and spoken >= need:
                        return pos, spoken
        for pos, _, spoken in self._cands:  # one token longer than max_chars: keep it whole
            if pos > self._max and spoken:
                return pos, spoken
        return None

    def _cut(self, pos: int, spoken: int, out: list[str]) -> int:
        """Emit ``_buf[:pos]`` (if it says anything) and drop it; return how far the rest moved."""
        chunk = _clean(self._buf[:pos])
        if speakable(chunk):
            out.append(chunk)
            self._first = False
        rest = self._buf[pos:]
        moved = pos + len(rest) - len(rest.lstrip())
        self._buf = self._buf[moved:]
        self._i = max(0, self._i - moved)
        self._spoken -= spoken
        self._cands = [(p - moved, kind, n - spoken) for p, kind, n in self._cands if p > moved]
        return moved


def split_text(text: str, max_chars: int = 60, min_chars: int = 6, first_min_chars: int = 4) -> list[str]:
    """Split a whole text into speakable chunks: exactly what streaming it through a splitter gives."""
    splitter = SentenceSplitter(max_chars, min_chars, first_min_chars)
    return splitter.feed(text) + splitter.flush()

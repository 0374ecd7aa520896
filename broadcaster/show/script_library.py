"""The scripts library: every script of ``<show.library>/scripts/``, kept current while the show runs.

``ScriptLibrary.load`` reads the library at start and raises ``ScriptError`` listing every problem
(invariant 8). ``watch`` then polls ``scripts/*.toml`` and ``products/*.toml`` (size and modification
time, every ``interval_s``) and reloads what changed:

- a write is taken only once the file has looked the same for one whole interval, so a file caught
  half-written is not loaded (nor reported) until it settles;
- a file that fails validation is reported once per version (``log.error``, ``file:line``) and its last
  good version stays in use;
- a deleted script file removes its script; a deleted product file removes the product;
- every script is rebuilt against the products as they are now, so a price edit reaches what is said;
  a script that no longer fits its product (it says ``{stock}`` and the stock line was removed) is
  withdrawn rather than said with stale facts, until either file is fixed;
- ``on_change(changed_ids, removed_ids)`` is called after each reload that changed what a script says.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path

from broadcaster.show.products import Catalog, Product, ProductError, load_product
from broadcaster.show.script_files import parse_script
from broadcaster.show.scripts import Script, ScriptError
from broadcaster.show.toml_lines import key_lines, line_of

log = logging.getLogger(__name__)

OnChange = Callable[[set[str], set[str]], Awaitable[None] | None]
Signature = tuple[int, int] | None  # (mtime_ns, size), None: no such file


def _signature(path: Path) -> Signature:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


class ScriptLibrary:
    """The scripts (and the products they talk about) of one library folder."""

    def __init__(self, folder: Path, voices: Collection[str] | None = None) -> None:
        """An empty library over ``folder``; ``voices``: engine names a segment may ask for (None: any)."""
        self.folder = folder
        self.voices = None if voices is None else frozenset(voices)
        self.scripts: dict[str, Script] = {}
        self.catalog = Catalog()
        self._products: dict[Path, Product] = {}
        self._texts: dict[Path, str] = {}  # the last good text of each script file
        self._seen: dict[Path, Signature] = {}
        self._pending: dict[Path, Signature] = {}

    @classmethod
    def load(cls, folder: Path, voices: Collection[str] | None = None) -> ScriptLibrary:
        """Every script and product of ``folder``; raises ScriptError listing every problem found."""
        library = cls(folder, voices)
        errors: list[str] = []
        signatures = library._scan()
        library._apply(set(signatures), errors.append)
        library._seen = signatures
        if errors:
            raise ScriptError(errors)
        return library

    def get(self, script_id: str) -> Script | None:
        """The script with this id as it is now, or None."""
        return self.scripts.get(script_id)

    def ids(self) -> list[str]:
        """The script ids, sorted."""
        return sorted(self.scripts)

    def _scan(self) -> dict[Path, Signature]:
        files = [*self.folder.glob("products/*.toml"), *self.folder.glob("scripts/*.toml")]
        known = [*self._seen, *self._pending]
        return {path: _signature(path) for path in dict.fromkeys([*files, *known])}

    def poll(self) -> tuple[set[str], set[str]]:
        """One look at the folder: reload the files that changed and have settled since the last look.

        Returns (ids of scripts that changed or appeared, ids of scripts removed).
        """
        settled: set[Path] = set()
        for path, signature in self._scan().items():
            if signature == self._seen.get(path):
                self._pending.pop(path, None)
            elif path in self._pending and self._pending[path] == signature:
                settled.add(path)
                del self._pending[path]
                self._seen[path] = signature
            else:
                self._pending[path] = signature
        for path in [p for p, s in self._seen.items() if s is None]:
            del self._seen[path]
        if not settled:
            return set(), set()
        return self._apply(settled, log.error)

    def _apply(self, paths: set[Path], report: Callable[[str], None]) -> tuple[set[str], set[str]]:
        """Take the given files as they are now, rebuild every script; returns (changed, removed) ids."""
        for path in sorted(p for p in paths if p.parent.name == "products"):
            self._take_product(path, report)
        self.catalog = Catalog(list(self._products.values()))
        for path in sorted(p for p in paths if p.parent.name == "scripts"):
            self._take_script(path, report)
        old = self.scripts
        owners = {script.path: script.id for script in old.values()}
        scripts: dict[str, Script] = {}
        # the file that had an id keeps it; a newcomer with the same id waits until it changes its id
        for path in sorted(self._texts, key=lambda p: (p not in owners, p)):
            try:
                script = parse_script(self._texts[path], path, self.catalog, self.voices)
            except ScriptError as exc:
                for message in exc.errors:
                    report(message if path in paths else f"{message} (script {path.stem} withdrawn)")
                continue
            if script.id in scripts:
                line = line_of(key_lines(self._texts[path]), ("id",))
                report(f"{path}:{line}: id = {script.id!r}: already the id of {scripts[script.id].path}")
                continue
            scripts[script.id] = script
        self.scripts = scripts
        changed = {i for i, s in scripts.items() if i not in old or old[i].digest != s.digest}
        removed = set(old) - set(scripts)
        if changed or removed:
            log.info("scripts: %s changed, %s removed", sorted(changed) or "none", sorted(removed) or "none")
        return changed, removed

    def _take_product(self, path: Path, report: Callable[[str], None]) -> None:
        if not path.exists():
            self._products.pop(path, None)
            return
        try:
            product = load_product(path)
            others = [p for other, p in self._products.items() if other != path]
            if any(p.id == product.id for p in others):
                raise ProductError(f"{path}:1: id = {product.id!r}: already the id of another product")
            Catalog([*others, product])
        except ProductError as exc:
            kept = " (its last good version stays in use)" if path in self._products else ""
            report(f"{exc}{kept}")
            return
        self._products[path] = product

    def _take_script(self, path: Path, report: Callable[[str], None]) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self._texts.pop(path, None)
            return
        except (OSError, UnicodeDecodeError) as exc:
            report(f"{path}:1: cannot read: {exc}")
            return
        try:
            parse_script(text, path, self.catalog, self.voices)
        except ScriptError as exc:
            kept = " (its last good version stays in use)" if path in self._texts else ""
            for message in exc.errors:
                report(message + kept)
            return
        self._texts[path] = text

    async def watch(self, on_change: OnChange | None = None, interval_s: float = 1.0) -> None:
        """Poll the folder every ``interval_s`` until cancelled, calling ``on_change`` after each change.

        Run it as a task owned by whoever owns the library; a failing ``on_change`` is logged, not fatal.
        """
        while True:
            await asyncio.sleep(interval_s)
            try:
                changed, removed = self.poll()
            except Exception:  # a broken folder must not end the watch
                log.exception("scripts library %s: reload failed", self.folder)
                continue
            if on_change is None or not (changed or removed):
                continue
            try:
                result = on_change(changed, removed)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("scripts library: on_change failed")

"""A literal prefilter for regular expressions: skip a search that cannot match.

A message is checked against some 400 expressions of the escalation rules (every configured language's), and
nearly all of them do not match. Most expressions contain a word that any match must contain ("refund",
"abogado"); a substring test for it costs a fraction of a regular-expression search. `Needle.of(pattern)` reads
the expression's parse tree for a set of literals of which every match contains at least one; `search` runs the
expression only when one of them is in the text. Where no such set can be proven (a bare class, an optional
part, a construct this reader does not follow) the expression is always run: the prefilter may only ever skip
work, never change a result (tests/test_prefilter.py checks it against the expressions and cases shipped).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

try:  # the parser `re` itself uses (private); should it move, every expression is simply always run
    _sre: Any = importlib.import_module("re._constants")
    _sre_parse: Any = importlib.import_module("re._parser")
except ImportError:  # pragma: no cover - CPython 3.11 to 3.13 have both
    _sre = _sre_parse = None

# Literals shorter than this say too little to be worth testing first.
MIN_LITERAL = 3


@dataclass(frozen=True)
class Needle:
    """An expression with the literals of which any match contains one (`None`: no such set is known)."""

    pattern: re.Pattern[str]
    literals: tuple[str, ...] | None
    ascii_folded: bool  # IGNORECASE: the literals are lower-case ASCII, tested against lower-case ASCII text only

    @classmethod
    def of(cls, pattern: re.Pattern[str]) -> Needle:
        return cls(pattern, _literals(pattern.pattern, pattern.flags), bool(pattern.flags & re.IGNORECASE))

    def search(self, text: str) -> re.Match[str] | None:
        """`pattern.search(text)`, skipped when no required literal is in the text."""
        literals = self.literals
        if literals is not None and (not self.ascii_folded or (text.isascii() and text.islower())):
            for literal in literals:
                if literal in text:
                    break
            else:
                return None
        return self.pattern.search(text)


@dataclass(frozen=True)
class Needles:
    """Several expressions searched in order, with an index that rules most of them out for a text at once: the
    three-letter openings of their literals, of which the text must contain one."""

    needles: tuple[Needle, ...]
    by_opening: dict[str, tuple[int, ...]]  # an opening -> the expressions with a literal starting so
    always: tuple[int, ...]  # the expressions without literals: searched in every text
    ascii_folded: bool

    @classmethod
    def of(cls, patterns: tuple[re.Pattern[str], ...]) -> Needles:
        needles = tuple(Needle.of(pattern) for pattern in patterns)
        by_opening: dict[str, set[int]] = {}
        for n, needle in enumerate(needles):
            for literal in needle.literals or ():
                by_opening.setdefault(literal[:MIN_LITERAL], set()).add(n)
        always = tuple(n for n, needle in enumerate(needles) if needle.literals is None)
        return cls(needles, {opening: tuple(found) for opening, found in by_opening.items()}, always,
                   any(needle.ascii_folded for needle in needles))

    def first(self, text: str) -> re.Match[str] | None:
        """The first expression's match in `text`, in the order given."""
        if self.ascii_folded and not (text.isascii() and text.islower()):
            candidates: Iterable[int] = range(len(self.needles))
        else:
            openings = _openings(text).intersection(self.by_opening)
            if not openings and not self.always:
                return None
            candidates = sorted({n for opening in openings for n in self.by_opening[opening]}.union(self.always))
        for n in candidates:
            found = self.needles[n].search(text)
            if found:
                return found
        return None


_last: tuple[str, frozenset[str]] = ("", frozenset())


def _openings(text: str) -> frozenset[str]:
    """Every three-letter substring of `text`; the last text's are kept (one message meets many rules)."""
    global _last
    last = _last
    if last[0] is text:
        return last[1]
    found = frozenset(text[n:n + MIN_LITERAL] for n in range(len(text) - MIN_LITERAL + 1))
    _last = (text, found)
    return found


@lru_cache(maxsize=4096)
def _literals(pattern: str, flags: int) -> tuple[str, ...] | None:
    """The literals one of which any match of `pattern` contains, or None (parsed once per expression and flags:
    reading the expressions of seven languages takes a tenth of a second)."""
    try:
        found = _required(_sre_parse.parse(pattern, flags), bool(flags & re.IGNORECASE)) if _sre else None
    except Exception:  # noqa: BLE001 - anything unexpected in the tree means: no prefilter
        return None
    if found is None or min(map(len, found)) < MIN_LITERAL:
        return None
    return tuple(sorted(found))


def _required(items: Any, ignorecase: bool) -> set[str] | None:
    """The literals one of which any match of this sequence of parsed items contains, or None."""
    best: set[str] | None = None
    run: list[str] = []

    def consider(candidate: set[str] | None) -> None:
        nonlocal best
        if candidate and (best is None or _better(candidate, best)):
            best = candidate

    def end_run() -> None:
        if run:
            consider({"".join(run)})
            run.clear()

    for op, av in items:
        if op is _sre.LITERAL:
            char = chr(av)
            if ignorecase and not (char.isascii() and (char.isalpha() or not char.isalnum())):
                end_run()  # a non-ASCII letter under IGNORECASE matches more than itself
                continue
            run.append(char.lower() if ignorecase else char)
            continue
        if op is _sre.AT:
            continue  # an anchor takes no characters: the literals on both sides are adjacent in the text
        end_run()
        if op is _sre.SUBPATTERN:
            _group, add, remove, inner = av
            if (add | remove) & (re.IGNORECASE | re.VERBOSE):
                continue  # flags changed inside the group: not followed
            consider(_required(inner, ignorecase))
        elif op is _sre.BRANCH:
            consider(_either(av[1], ignorecase))
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", None)):
            low, _high, inner = av
            if low >= 1:
                consider(_required(inner, ignorecase))
        elif op is getattr(_sre, "ATOMIC_GROUP", None):
            consider(_required(av, ignorecase))
        # anything else (classes, ANY, lookarounds, back references) requires nothing known
    end_run()
    return best


def _either(alternatives: list[Any], ignorecase: bool) -> set[str] | None:
    """A branch: every alternative must require something, and any of their literals may be the one."""
    union: set[str] = set()
    for alternative in alternatives:
        found = _required(alternative, ignorecase)
        if not found:
            return None
        union |= found
    return union


def _better(a: set[str], b: set[str]) -> bool:
    """The more selective set: its shortest literal longer, then fewer literals."""
    return (min(map(len, a)), -len(a)) > (min(map(len, b)), -len(b))

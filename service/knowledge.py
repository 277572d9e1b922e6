"""Known issues: Markdown files support people edit, parsed into entries, searched with BM25."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import bm25s
import numpy
import Stemmer
from bm25s.stopwords import STOPWORDS_EN

from .errors import ConfigError
from .watched import WatchedFiles

ALLOWED_FIELDS = {"keywords", "escalate", "url"}
MAX_URL_CHARS = 2000
_FIELD = re.compile(r"^([A-Za-z_][\w-]*)\s*:\s*(.*)$")
_STEMMER = Stemmer.Stemmer("english")
# bm25s sets its own logger to DEBUG on import; its progress chatter is not for operators.
logging.getLogger("bm25s").setLevel(logging.WARNING)


@dataclass(frozen=True)
class KnownIssue:
    """One entry of the knowledge base: a symptom people report and its solution."""

    id: str
    title: str
    keywords: tuple[str, ...]
    solution: str
    escalate: bool
    source: str  # where it was read: "file:line" for hand-written entries, the source's location when imported
    url: str | None = None  # the page a reply cites: the `url:` field of a hand-written entry, an imported page's URL
    page_title: str | None = None  # the title of the page an imported section belongs to; a reply cites that

    def as_context(self) -> dict[str, Any]:
        """The entry as template variables."""
        return {
            "id": self.id,
            "title": self.title,
            "keywords": list(self.keywords),
            "solution": self.solution,
            "escalate": self.escalate,
            "url": self.url,
        }

    @property
    def search_text(self) -> str:
        # Title and keywords are what customers type; repeating them weighs them above the body.
        words = " ".join(self.keywords)
        return f"{self.title} {self.title} {words} {words} {self.solution}"


def slugify(text: str) -> str:
    """A stable id from a title: lower-case words joined by dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def parse_knowledge_text(text: str, source: str) -> list[KnownIssue]:
    """Parse one knowledge file; raise ConfigError naming the line of the first problem."""
    entries: list[KnownIssue] = []
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("## ")]
    for i, line in enumerate(lines[: starts[0] if starts else len(lines)]):
        stripped = line.strip()
        if stripped and not stripped.startswith("# ") and not stripped.startswith("<!--"):
            raise ConfigError(source, i + 1, "text before the first '## Title' entry")
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        entries.append(_parse_entry(lines, start, end, source))
    return entries


def _parse_entry(lines: list[str], start: int, end: int, source: str) -> KnownIssue:
    title = lines[start][3:].strip()
    if not title:
        raise ConfigError(source, start + 1, "entry title is empty")
    fields: dict[str, str] = {}
    field_lines: dict[str, int] = {}
    i = start + 1
    while i < end and lines[i].strip():
        match = _FIELD.match(lines[i].strip())
        if not match:
            raise ConfigError(source, i + 1, "expected 'keywords: ...' lines, then a blank line, then the solution")
        key = match.group(1).lower()
        if key not in ALLOWED_FIELDS:
            allowed = ", ".join(sorted(ALLOWED_FIELDS))
            raise ConfigError(source, i + 1, f"unknown field '{key}' (allowed: {allowed})")
        fields[key] = match.group(2).strip()
        field_lines[key] = i + 1
        i += 1
    solution = "\n".join(lines[i:end]).strip()
    if not solution:
        raise ConfigError(source, start + 1, f"entry '{title}' has no solution text")
    keywords = tuple(k.strip() for k in fields.get("keywords", "").split(",") if k.strip())
    if not keywords:
        raise ConfigError(source, start + 1, f"entry '{title}' needs a 'keywords:' line")
    escalate_text = fields.get("escalate", "false").lower()
    if escalate_text not in {"true", "false", "yes", "no"}:
        raise ConfigError(source, start + 1, f"escalate must be true or false, not '{escalate_text}'")
    url = fields.get("url") or None
    if url is not None:
        problem = url_problem(url)
        if problem:
            raise ConfigError(source, field_lines["url"], f"url {problem}")
    return KnownIssue(
        id=slugify(title),
        title=title,
        keywords=keywords,
        solution=solution,
        escalate=escalate_text in {"true", "yes"},
        source=f"{source}:{start + 1}",
        url=url,
    )


def url_problem(url: str) -> str | None:
    """Why `url` cannot be cited (None when it can): an http(s) URL with a host, or a path starting with '/'."""
    if len(url) > MAX_URL_CHARS:
        return f"is {len(url)} characters; the limit is {MAX_URL_CHARS}"
    if any(c.isspace() or not c.isprintable() for c in url):
        return f"'{url[:80]}' contains spaces or control characters"
    if url.startswith("/") and not url.startswith("//"):
        return None
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # an unbalanced IPv6 bracket, a bad port
        parts = urllib.parse.SplitResult("", "", "", "", "")
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        return f"'{url[:80]}' must be an http(s) URL like https://help.example.com/article or a path like /help/article"
    return None


def parse_knowledge_file(path: Path) -> list[KnownIssue]:
    """Read and parse one knowledge file."""
    return parse_knowledge_text(path.read_text(encoding="utf-8"), str(path))


_WORD = re.compile(r"(?u)\b\w\w+\b")  # bm25s's (and scikit-learn's) default token pattern
_STOPWORDS = frozenset(STOPWORDS_EN)


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Lower-cased, stop-word-free, stemmed tokens, the same for documents and queries.

    The steps of `bm25s.tokenize` (its pattern, English stop words, PyStemmer), done directly: its
    version builds a progress bar and a vocabulary per call, which cost more than the search itself
    on a per-turn query (bench/findings.md, finding 1).
    """
    return [_STEMMER.stemWords([w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]) for text in texts]


@dataclass
class KnowledgeBase:
    """An immutable set of known issues, with a BM25 index built on first search."""

    issues: tuple[KnownIssue, ...]
    _index_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _retriever: Any = field(default=None, repr=False)

    @cached_property
    def revision(self) -> str:
        """A digest of the content, so caches know when the knowledge changed."""
        digest = hashlib.sha256()
        for issue in self.issues:
            digest.update(repr(issue.as_context()).encode())
        return digest.hexdigest()[:16]

    @cached_property
    def size_chars(self) -> int:
        """Characters the knowledge takes when injected whole."""
        return sum(len(i.title) + len(i.solution) + 4 for i in self.issues)

    def _index(self) -> Any:
        with self._index_lock:
            if self._retriever is None:
                retriever = bm25s.BM25()
                retriever.index(tokenize([i.search_text for i in self.issues]), show_progress=False)
                self._retriever = retriever
            return self._retriever

    def search(self, query: str, k: int) -> list[tuple[KnownIssue, float]]:
        """The best `k` entries for `query`, best first, with their BM25 scores (> 0 only)."""
        return [(issue, score) for _, issue, score in self.ranked(query, k)]

    def ranked(self, query: str, k: int) -> list[tuple[int, KnownIssue, float]]:
        """`search` with each entry's position in `issues`."""
        if not self.issues:
            return []
        retriever = self._index()
        vocab = retriever.vocab_dict
        ids = [vocab[token] for token in tokenize([query])[0] if token in vocab]
        if not ids:
            return []
        scores = retriever.get_scores_from_ids(ids)
        k = min(k, len(self.issues))
        # Best first; equal scores keep the files' order. Scored in the calling thread (no pool per query).
        best = numpy.argsort(-scores, kind="stable")[:k]
        best = best[scores[best] > 0]
        return [(doc, self.issues[doc], score) for doc, score in zip(best.tolist(), scores[best].tolist(), strict=True)]


def merge_issues(files: Iterable[tuple[Path, list[KnownIssue]]]) -> tuple[KnowledgeBase, list[ConfigError]]:
    """One knowledge base from several files; a title repeated in a later file is an error."""
    seen: dict[str, KnownIssue] = {}
    errors: list[ConfigError] = []
    for _path, issues in files:
        for issue in issues:
            if issue.id in seen:
                path, _, line = issue.source.rpartition(":")
                errors.append(ConfigError(path, int(line), f"duplicate title, first at {seen[issue.id].source}"))
                continue
            seen[issue.id] = issue
    return KnowledgeBase(tuple(seen.values())), errors


class KnowledgeStore:
    """The knowledge directory, re-read when a file changes; serves the last good version of each file.

    `imported`, when given, returns the entries imported into the database (service/imports): the same
    tuple object while nothing changed, so the base is rebuilt only when the files or the imports change.
    """

    def __init__(self, root: Path, interval: float = 1.0,
                 imported: Callable[[], tuple[KnownIssue, ...]] | None = None) -> None:
        self._files = WatchedFiles(root=root, pattern="**/*.md", parse=parse_knowledge_file, interval=interval)
        self._imported = imported
        self._generation = -1
        self._imported_seen: tuple[KnownIssue, ...] = ()
        self._base = KnowledgeBase(())
        self._errors: tuple[ConfigError, ...] = ()
        self._lock = threading.Lock()

    @property
    def root(self) -> Path:
        return self._files.root

    def current(self) -> KnowledgeBase:
        """The knowledge base as the files (and the imported sources) are now."""
        loaded = self._files.current()
        imported = self._imported() if self._imported is not None else ()
        if loaded.generation != self._generation or imported is not self._imported_seen:
            with self._lock:
                if loaded.generation != self._generation or imported is not self._imported_seen:
                    base, duplicates = merge_issues(sorted(loaded.items.items()))
                    if imported:
                        # Hand-written entries win an id clash; imported ids are `imported-<n>`, so clashes are rare.
                        seen = {issue.id for issue in base.issues}
                        base = KnowledgeBase(base.issues + tuple(i for i in imported if i.id not in seen))
                    self._base, self._errors = base, loaded.errors + tuple(duplicates)
                    self._generation, self._imported_seen = loaded.generation, imported
        return self._base

    def errors(self) -> tuple[ConfigError, ...]:
        """Problems found in the files at the last look."""
        self.current()
        return self._errors

    def reload(self) -> KnowledgeBase:
        """Look at the files now, whatever the interval."""
        self._files.force_refresh()
        return self.current()

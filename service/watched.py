"""Files that people edit while the service runs: re-read on change, validate-then-swap per file."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from .errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """The parsed files of a directory at one moment, with the errors of those that failed."""

    items: dict[Path, T]
    errors: tuple[ConfigError, ...]
    generation: int


@dataclass
class _Entry(Generic[T]):
    stamp: tuple[int, int]
    value: T | None
    error: ConfigError | None = None


@dataclass
class WatchedFiles(Generic[T]):
    """Parses every file under `root` matching `pattern`; re-checks at most every `interval` seconds.

    A file that fails to parse is reported (file, line, reason) and its last good version keeps
    serving; a file that was never valid is left out.
    """

    root: Path
    pattern: str
    parse: Callable[[Path], T]
    interval: float = 1.0
    clock: Callable[[], float] = time.monotonic
    _entries: dict[Path, _Entry[T]] = field(default_factory=dict)
    _last_check: float = float("-inf")
    _generation: int = 0
    _loaded: Loaded[T] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def current(self) -> Loaded[T]:
        """The parsed files, refreshed if the interval has passed since the last look."""
        now = self.clock()
        loaded = self._loaded
        if loaded is not None and now - self._last_check < self.interval:
            return loaded
        with self._lock:
            if self._loaded is None or now - self._last_check >= self.interval:
                self._last_check = now
                self._refresh()
            assert self._loaded is not None
            return self._loaded

    def force_refresh(self) -> Loaded[T]:
        """Look at the files now, whatever the interval."""
        with self._lock:
            self._last_check = self.clock()
            self._refresh()
            assert self._loaded is not None
            return self._loaded

    def _scan(self) -> Iterator[tuple[Path, tuple[int, int]]]:
        if not self.root.is_dir():
            return
        for path in sorted(self.root.glob(self.pattern)):
            if path.is_file() and not path.name.startswith("."):
                stat = path.stat()
                yield path, (stat.st_mtime_ns, stat.st_size)

    def _refresh(self) -> None:
        seen: set[Path] = set()
        changed = self._loaded is None
        for path, stamp in self._scan():
            seen.add(path)
            entry = self._entries.get(path)
            if entry is not None and entry.stamp == stamp:
                continue
            changed = True
            self._entries[path] = self._parse(path, stamp, entry)
        for gone in set(self._entries) - seen:
            del self._entries[gone]
            changed = True
        if changed:
            self._generation += 1
            self._loaded = Loaded(
                items={p: e.value for p, e in self._entries.items() if e.value is not None},
                errors=tuple(e.error for e in self._entries.values() if e.error is not None),
                generation=self._generation,
            )

    def _parse(self, path: Path, stamp: tuple[int, int], previous: _Entry[T] | None) -> _Entry[T]:
        try:
            value = self.parse(path)
        except ConfigError as error:
            kept = previous.value if previous is not None else None
            log.error("invalid file, %s: %s", "keeping last good version" if kept else "not loaded", error)
            return _Entry(stamp=stamp, value=kept, error=error)
        except (OSError, UnicodeDecodeError) as error:
            kept = previous.value if previous is not None else None
            config_error = ConfigError(str(path), None, f"cannot read: {error}")
            log.error("unreadable file: %s", config_error)
            return _Entry(stamp=stamp, value=kept, error=config_error)
        if previous is not None:
            log.info("reloaded %s", path)
        return _Entry(stamp=stamp, value=value)

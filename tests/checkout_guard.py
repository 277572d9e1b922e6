"""A pytest plugin: the run fails when a test created, changed or deleted a file inside the checkout (the rootdir)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Caches of the tools themselves (pytest, Python, mypy, ruff, Hypothesis) and the benchmark's scratch directory:
# all git-ignored, rewritten on every run by design.
IGNORED_NAMES = frozenset({".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
                           ".hypothesis"})
IGNORED_PATHS = frozenset({"bench/work"})
OFF_SWITCH = "SUPPORTBOT_CHECKOUT_GUARD"

Snapshot = dict[str, tuple[int, int]]


def snapshot(root: Path) -> Snapshot:
    """Every file and directory under root (caches left out): relative path -> (mtime in ns, size)."""
    entries: Snapshot = {}
    for directory, subdirs, names in os.walk(root):
        relative = Path(directory).relative_to(root)
        subdirs[:] = [d for d in subdirs
                      if d not in IGNORED_NAMES and (relative / d).as_posix() not in IGNORED_PATHS]
        # Directories count by existence only: their mtime moves whenever a file inside does.
        entries.update({f"{(relative / d).as_posix()}/": (0, 0) for d in subdirs})
        for name in names:
            if name in IGNORED_NAMES:
                continue
            try:
                stat = (Path(directory) / name).lstat()
            except FileNotFoundError:  # removed while we walked
                continue
            entries[(relative / name).as_posix()] = (stat.st_mtime_ns, stat.st_size)
    return entries


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    """What happened between two snapshots, one line per path, sorted."""
    lines = [f"created  {path}" for path in after.keys() - before.keys()]
    lines += [f"deleted  {path}" for path in before.keys() - after.keys()]
    lines += [f"modified {path}" for path in before.keys() & after.keys() if before[path] != after[path]]
    return sorted(lines, key=lambda line: line[9:])


_BEFORE = pytest.StashKey[Snapshot]()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Snapshot the checkout (the rootdir) before collection, so writes while importing test modules count too."""
    session.config.stash[_BEFORE] = snapshot(session.config.rootpath)


@pytest.fixture(autouse=True, scope="session")
def _checkout_untouched(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests write only to temporary directories: the checkout is what people edit and commit."""
    yield
    if os.environ.get(OFF_SWITCH, "").lower() in {"0", "off", "false", "no"}:
        return
    root = request.config.rootpath
    found = changes(request.config.stash[_BEFORE], snapshot(root))
    if found:
        pytest.fail(f"the test run changed files inside the checkout {root}:\n  " + "\n  ".join(found)
                    + "\nTests must write only to temporary directories (tmp_path, tmp_path_factory). If you "
                    f"edited these files yourself while the tests ran, run them again, or set {OFF_SWITCH}=off "
                    "for such runs.", pytrace=False)

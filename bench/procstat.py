"""CPU time and memory of process trees, read from /proc, and CPU pinning.

CPU time is what the kernel accounted to the processes (user + system): it is not inflated by steal
time or by other tenants of the machine, which is why it is the primary figure of the benchmark.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after its closing one.
    return text[text.rindex(")") + 2:].split()


def children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process visible now."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants that are alive now."""
    tree = children_map()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, ()))
    return found


def cpu_seconds(pids: Iterable[int]) -> dict[int, tuple[float, float]]:
    """(user, system) CPU seconds of each live pid (threads included)."""
    result = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            result[pid] = (int(fields[11]) / TICKS, int(fields[12]) / TICKS)
    return result


def rss_bytes(pids: Iterable[int]) -> int:
    """Resident set size of the pids together."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", encoding="ascii") as handle:
                total += int(handle.read().split()[1]) * PAGE
        except OSError:
            continue
    return total


def peak_rss_bytes(pids: Iterable[int]) -> int:
    """The kernel's high-water mark of RSS (VmHWM), summed over the pids."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


class CpuWindow:
    """CPU seconds spent by a set of processes between `start()` and `stop()`.

    Processes that appear during the window count from zero; the pid lists are re-read at both ends.
    """

    def __init__(self, pids: Callable[[], Iterable[int]]) -> None:
        self._pids = pids
        self._start: dict[int, tuple[float, float]] = {}
        self.user = self.system = 0.0

    def start(self) -> None:
        self._start = cpu_seconds(self._pids())

    def stop(self) -> float:
        """User + system seconds since `start()` (the split is kept in `user` and `system`)."""
        end = cpu_seconds(self._pids())
        self.user = sum(u - self._start.get(pid, (0.0, 0.0))[0] for pid, (u, _) in end.items())
        self.system = sum(s - self._start.get(pid, (0.0, 0.0))[1] for pid, (_, s) in end.items())
        return self.user + self.system


@dataclass
class RssSampler:
    """Samples the RSS of a server's processes (`pids()`, re-read now and then) on a thread while a run goes on."""

    pids: Callable[[], list[int]]
    interval: float = 0.25
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        began = time.monotonic()
        pids = self.pids()
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - began, rss_bytes(pids)))
            if len(self.samples) % 8 == 0:
                pids = self.pids()
            self._stop.wait(self.interval)

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)


@dataclass(frozen=True)
class CpuPlan:
    """Which cores the services, the mock upstream and the load generator run on."""

    service: frozenset[int] | None
    clients: frozenset[int] | None

    @classmethod
    def for_machine(cls) -> CpuPlan:
        """Service on the first core, everything else on the rest; no pinning on a one-core machine."""
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            return cls(None, None)
        return cls(frozenset(cores[:1]), frozenset(cores[1:]))

    def describe(self) -> str:
        if self.service is None:
            return "not pinned (one core available)"
        return (f"services on CPU {sorted(self.service)}, mock upstream and load generator on CPU "
                f"{sorted(self.clients or ())}; PostgreSQL is not pinned")


def pin_tree(root: int, cores: frozenset[int] | None) -> None:
    """Pin every thread of `root` and its descendants; threads they start later inherit the mask."""
    if not cores:
        return
    for pid in process_tree(root):
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(tid, cores)
            except OSError:
                continue


def pin(cores: frozenset[int] | None) -> None:
    """Pin the calling process (and its future children) to `cores`, when given."""
    if cores:
        os.sched_setaffinity(0, cores)

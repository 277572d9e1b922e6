"""Benchmarks on data: knowledge retrieval, export of the log against a plain dump, the admin inbox.

Export and dump run as child processes so their CPU time and peak RSS come from the kernel
(`os.wait4` rusage), not from sampling.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from .datasets import postgres_log, sqlite_log, synthetic_issues
from .inbox_suite import inbox_http, inbox_queries
from .procstat import peak_rss_bytes
from .profiles import QUESTIONS, Profile
from .stats import summarize
from .targets import ROOT, VENV_BIN, create_pg_database, postgres_available, supportbot_env


def _search_in_thread(base: Any, query: str, k: int) -> list[Any]:
    """KnowledgeBase.search as it is, but asking bm25s for n_threads=0 (no executor per call)."""
    from service.knowledge import tokenize

    retriever = base._index()
    known = [[token for token in tokenize([query])[0] if token in retriever.vocab_dict]]
    if not known[0]:
        return []
    documents, scores = retriever.retrieve(known, k=min(k, len(base.issues)), show_progress=False, n_threads=0)
    return [(base.issues[int(d)], float(s)) for d, s in zip(documents[0], scores[0], strict=True) if s > 0]


def _time_queries(search: Callable[[str], Any], texts: list[str]) -> tuple[list[float], list[float]]:
    cpu_ms, wall_ms = [], []
    for text in texts:
        cpu, wall = time.process_time(), time.perf_counter()
        search(text)
        cpu_ms.append((time.process_time() - cpu) * 1000)
        wall_ms.append((time.perf_counter() - wall) * 1000)
    return cpu_ms, wall_ms


def retrieval(sizes: tuple[int, ...], queries: int) -> list[dict[str, Any]]:
    """KnowledgeBase.search CPU and wall time per query at each size (index built before timing).

    The shipped knowledge base comes first (what every turn searches today); each size is also timed
    with bm25s asked to score in the calling thread (`n_threads=0`), the fix proposed in the report.
    """
    from service.knowledge import KnowledgeBase, parse_knowledge_file

    shipped = tuple(i for path in sorted((ROOT / "knowledge").glob("*.md")) for i in parse_knowledge_file(path))
    results = []
    for size, issues in [(len(shipped), list(shipped))] + [(n, synthetic_issues(n)) for n in sizes]:
        base = KnowledgeBase(tuple(issues))
        cpu, wall = time.process_time(), time.perf_counter()
        base.search("warm up the index", k=8)
        build = {"cpu_s": round(time.process_time() - cpu, 3), "wall_s": round(time.perf_counter() - wall, 3)}
        texts = [QUESTIONS[n % len(QUESTIONS)] if n % 2 else issues[(n * 7919) % size].title for n in range(queries)]
        cpu_ms, wall_ms = _time_queries(partial(base.search, k=8), texts)
        direct_cpu, _ = _time_queries(partial(_search_in_thread, base, k=8), texts)
        results.append({"known_issues": size, "shipped": size == len(shipped) and issues is not None
                        and issues[0].source.startswith(str(ROOT)), "queries": queries, "k": 8,
                        "index_build": build, "cpu_ms": summarize(cpu_ms), "wall_ms": summarize(wall_ms),
                        "cpu_ms_in_thread": summarize(direct_cpu)})
    return results


def measured_child(args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> dict[str, Any]:
    """Run a command; its wall time and CPU time (kernel rusage) and peak RSS (VmHWM, polled).

    ru_maxrss is not used: it also counts the RSS the child had before exec, a copy of this process.
    """
    began = time.perf_counter()
    process = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(process.stderr.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    peak = 0
    while True:
        peak = max(peak, peak_rss_bytes([process.pid]))
        finished, status, usage = os.wait4(process.pid, os.WNOHANG)
        if finished:
            break
        time.sleep(0.02)
    reader.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = b"".join(errors).decode(errors="replace")
    return {
        "exit_status": process.returncode, "wall_s": round(time.perf_counter() - began, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "user_s": round(usage.ru_utime, 2),
        "sys_s": round(usage.ru_stime, 2), "peak_rss_mb": round(peak / 2**20, 1),
        "stderr_tail": stderr.strip().splitlines()[-4:],
    }


def export(database_url: str, work: Path) -> dict[str, Any]:
    """`supportbot export --format openai-chat --select all`, the widest selection."""
    out = work / "export.jsonl"
    env = supportbot_env(work / "export-data", database_url, "http://127.0.0.1:9/v1")
    command = [str(VENV_BIN / "supportbot"), "export", "--format", "openai-chat", "--select", "all", "--out", str(out)]
    result = measured_child(command, env)
    result["command"] = "supportbot export --format openai-chat --select all --out FILE"
    result["lines_written"] = sum(1 for _ in out.open(encoding="utf-8")) if out.exists() else 0
    result["output_mb"] = round(out.stat().st_size / 2**20, 1) if out.exists() else 0
    out.unlink(missing_ok=True)
    return result


def dump_floor(database_url: str, work: Path) -> dict[str, Any]:
    """The floor: every row of the same tables through a SELECT * loop in Python, written as TSV."""
    out = work / "dump.tsv"
    result = measured_child([sys.executable, "-m", "bench.sql_dump", database_url, str(out)])
    result["command"] = "python -m bench.sql_dump URL FILE (SELECT * of each table, streamed, csv.writer)"
    result["output_mb"] = round(out.stat().st_size / 2**20, 1) if out.exists() else 0
    out.unlink(missing_ok=True)
    return result


def sqlite3_cli_dump(path: Path) -> dict[str, Any] | None:
    """sqlite3's own `.dump` (C, whole database) for scale, when the CLI is installed."""
    import shutil

    binary = shutil.which("sqlite3")
    if binary is None:
        return None
    result = measured_child([binary, str(path), ".dump"])
    result["command"] = "sqlite3 FILE .dump > /dev/null"
    return result


def run_data(profile: Profile, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Retrieval, then export and inbox on SQLite (and on PostgreSQL when it is reachable)."""
    results: dict[str, Any] = {}
    log(f"retrieval at {', '.join(str(s) for s in profile.retrieval_sizes)} known issues")
    results["retrieval"] = retrieval(profile.retrieval_sizes, profile.retrieval_queries)
    scratch = work / "data-run"
    scratch.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    path, counts, reused = sqlite_log(work / "data", profile.messages)
    log(f"SQLite log of {counts['messages']:,} messages {'reused' if reused else 'generated'} "
        f"in {time.monotonic() - began:.0f} s")
    sqlite_url = f"sqlite:///{path}"
    results["sqlite"] = {"rows": counts, "file_mb": round(path.stat().st_size / 2**20, 1),
                         "generated_s": None if reused else round(time.monotonic() - began, 1)}
    log("export vs dump (SQLite)")
    results["sqlite"]["export"] = export(sqlite_url, scratch)
    results["sqlite"]["dump"] = dump_floor(sqlite_url, scratch)
    results["sqlite"]["sqlite3_dump"] = sqlite3_cli_dump(path)
    log("inbox (SQLite)")
    results["sqlite"]["inbox"] = inbox_queries(sqlite_url)
    if profile.inbox_http:
        results["sqlite"]["inbox_http"] = inbox_http(sqlite_url, scratch)
    reason = postgres_available() if profile.postgres_data else "not run (add --postgres-data)"
    if reason:
        results["postgresql"] = {"skipped": reason}
        return results
    url, drop = create_pg_database("sb_bench_data")
    try:
        began = time.monotonic()
        counts = postgres_log(url, profile.messages)
        log(f"PostgreSQL log of {counts['messages']:,} messages loaded in {time.monotonic() - began:.0f} s")
        results["postgresql"] = {"rows": counts, "generated_s": round(time.monotonic() - began, 1)}
        log("export vs dump (PostgreSQL)")
        results["postgresql"]["export"] = export(url, scratch)
        results["postgresql"]["dump"] = dump_floor(url, scratch)
        log("inbox (PostgreSQL)")
        results["postgresql"]["inbox"] = inbox_queries(url)
        if profile.inbox_http:
            results["postgresql"]["inbox_http"] = inbox_http(url, scratch)
    finally:
        drop()
    return results

"""The admin inbox on a large log: page latency per view, and the query plans of the first page."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path
from typing import Any

from .procstat import CpuPlan
from .stats import summarize
from .targets import _supportbot, supportbot_env

REPEATS = 5
# A plan line that reads a whole big table instead of an index.
_SQLITE_FULL_SCAN = re.compile(r"^SCAN (conversations|messages)\b(?! USING)")
_PG_FULL_SCAN = re.compile(r"Seq Scan on (conversations|messages)\b")


def _page_queries(url: str) -> list[tuple[str, dict[str, Any]]]:
    """(label, query arguments) for the pages measured."""
    from service.inbox import VIEWS

    pages: list[tuple[str, dict[str, Any]]] = [(f"view={view}", {"view": view}) for view in VIEWS]
    pages.append(("view=all, prompt_version=support@v1", {"view": "all", "prompt_version": "support@v1"}))
    pages.append(("view=all, q=csv (text search, common word)", {"view": "all", "q": "csv"}))
    pages.append(("view=all, q=acme-4242 (text search, rare word)", {"view": "all", "q": "acme-4242"}))
    return pages


def inbox_queries(url: str) -> list[dict[str, Any]]:
    """Inbox.conversations timed per view (first page, and page 10 through cursors), with the plans."""
    from sqlalchemy import event

    from service.db import create_db_engine, make_session_factory
    from service.inbox import Inbox, InboxQuery

    engine = create_db_engine(url)
    inbox = Inbox(make_session_factory(engine))
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        captured.append((statement, parameters))

    results = []
    try:
        for label, arguments in _page_queries(url):
            event.listen(engine, "before_cursor_execute", capture)
            captured.clear()
            began = time.perf_counter()
            rows, cursor = inbox.conversations(InboxQuery(**arguments))
            first = (time.perf_counter() - began) * 1000
            event.remove(engine, "before_cursor_execute", capture)
            statements = list(captured)
            timings = []
            for _ in range(REPEATS):
                began = time.perf_counter()
                inbox.conversations(InboxQuery(**arguments))
                timings.append((time.perf_counter() - began) * 1000)
            deep = None
            if cursor and "q" not in arguments:
                for _ in range(9):
                    if cursor is None:
                        break
                    began = time.perf_counter()
                    _, cursor = inbox.conversations(InboxQuery(**arguments, cursor=cursor))
                    deep = (time.perf_counter() - began) * 1000
            plans = [_explain(engine, statement, parameters) for statement, parameters in statements]
            results.append({
                "page": label, "rows": len(rows), "first_call_ms": round(first, 2), "ms": summarize(timings),
                "page_10_ms": round(deep, 2) if deep is not None else None,
                "queries": [{"sql": _compact(s), "plan": plan, "full_scan": _full_scan(plan)}
                            for (s, _), plan in zip(statements, plans, strict=True)],
            })
    finally:
        engine.dispose()
    return results


def _explain(engine: Any, statement: str, parameters: Any) -> list[str]:
    postgres = engine.dialect.name == "postgresql"
    prefix = "EXPLAIN ANALYZE " if postgres else "EXPLAIN QUERY PLAN "
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(prefix + statement, parameters).fetchall()
    if postgres:
        return [row[0] for row in rows]
    return [row[3] for row in rows]


def _full_scan(plan: list[str]) -> bool:
    return any(_SQLITE_FULL_SCAN.search(line.strip()) or _PG_FULL_SCAN.search(line) for line in plan)


def _compact(statement: str) -> str:
    return re.sub(r"\s+", " ", statement).strip()


def inbox_http(url: str, work: Path) -> dict[str, Any]:
    """GET /admin/api/conversations through a running supportbot (one worker) on the same data."""
    env = supportbot_env(work / "inbox-data", url, "http://127.0.0.1:9/v1")
    target = _supportbot("supportbot-inbox", "supportbot admin API", work, CpuPlan.for_machine(), env)
    try:
        result = {}
        for view in ("all", "misses", "unreviewed"):
            timings = []
            for _ in range(REPEATS + 1):
                request = urllib.request.Request(
                    f"http://127.0.0.1:{target.port}/admin/api/conversations?view={view}&limit=50",
                    headers={"Authorization": f"Bearer {env['SUPPORTBOT_ADMIN_TOKEN']}"})
                began = time.perf_counter()
                with urllib.request.urlopen(request, timeout=60) as response:
                    response.read()
                    status = response.status
                timings.append((time.perf_counter() - began) * 1000)
            result[view] = {"status": status, "first_ms": round(timings[0], 2), "ms": summarize(timings[1:])}
        return result
    finally:
        target.stop()

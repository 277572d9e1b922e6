"""The issues' targets, checked against the measured figures: met, missed (and by how much), or not measured.

The floor is the minimal relay (bench/relay.py), measured in the same rounds as supportbot (issue 20).
"""

from __future__ import annotations

from typing import Any

from .aggregate import soak_figures, summarize_runs

SUPPORTBOT = ("supportbot-sqlite", "supportbot-postgres")
FLOOR = "relay"  # bench/relay.py: FastAPI + the openai client's chat.completions.create, nothing else
# Issue 20: CPU per turn over the relay's (JSON and SSE) and added p50 latency over the relay's, in ms.
LIMITS = {"supportbot-sqlite": (1.2, 2.0), "supportbot-postgres": (1.4, 3.0)}
CROWD_LIMIT = 1.3  # at many concurrent streamed conversations, against the relay at the same concurrency
WORKERS_LIMIT = 1.1  # `serve --workers 2`, and replicas behind nginx, against one worker, at saturation


def _verdict(name: str, threshold: str, value: float | None, limit: float | None, unit: str,
             detail: str = "", lower_is_better: bool = True) -> dict[str, Any]:
    if value is None or limit is None:
        return {"target": name, "threshold": threshold, "measured": None, "met": None,
                "detail": detail or "not measured in this run"}
    met = value <= limit if lower_is_better else value >= limit
    margin = value - limit
    return {"target": name, "threshold": threshold, "measured": round(value, 3), "unit": unit, "met": met,
            "margin": round(margin, 3), "detail": detail}


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of the issue with its verdict."""
    verdicts: list[dict[str, Any]] = []
    live = results.get("live")
    if live:
        verdicts += _live_verdicts(live)
    data = results.get("data")
    if data:
        verdicts += _data_verdicts(data)
    return verdicts


def _live_verdicts(live: dict[str, Any]) -> list[dict[str, Any]]:
    table = summarize_runs(live["runs"])
    stages = live.get("stages") or {}
    verdicts = [_capacity_verdict(live, table)]
    for name, (cpu_limit, latency_limit) in LIMITS.items():
        verdicts += _floor_verdicts(table, stages, name, cpu_limit, latency_limit)
        verdicts.append(_litellm_verdict(live, table, stages, name))
    verdicts += _crowd_verdicts(table, stages)
    verdicts += _workers_verdicts(table, stages)
    verdicts += _replicas_verdicts(live, table, stages)
    verdicts += _stream_verdicts(live, table, stages)
    for name in SUPPORTBOT:
        info = live["targets"].get(name)
        if info:
            verdicts.append(_verdict(f"{name}: idle RSS <= 150 MB", "<= 150 MB", info.get("idle_rss_mb"), 150.0,
                                     "MB", "after start-up and warm-up, 1 s idle"))
    soak = soak_figures(live.get("soak"))
    if soak:
        verdicts.append(_verdict(
            "supportbot-sqlite: RSS flat over the soak", "growth <= 5 MB (last third vs first third)",
            soak["growth_mb"], 5.0, "MB",
            f"{live['soak']['seconds']:g} s at {live['soak']['rate']:g} turns/s; slope "
            f"{soak['slope_mb_per_min']} MB/min"))
    return verdicts


def _capacity_verdict(live: dict[str, Any], table: dict[str, Any]) -> dict[str, Any]:
    fastest = max((f["turns_per_s"] for by_target in table.values() for t, f in by_target.items() if t != "mock"),
                  default=None)
    capacity = live["mock_capacity"]["requests_per_s"]
    return _verdict(
        "mock upstream serves well above the rates measured", ">= 3x the fastest target", capacity / fastest
        if fastest else None, 3.0, "x", f"capacity {capacity:,.0f} requests/s vs fastest target "
        f"{fastest or 0:,.1f} turns/s", lower_is_better=False)


def _cpu_ratio(table: dict[str, Any], scenario: str | None, name: str, baseline: str, limit: float,
               label: str) -> dict[str, Any]:
    """`name`'s CPU per turn over `baseline`'s in `scenario` (database backends shown, not counted)."""
    figures = table.get(scenario or "", {})
    mine, base = figures.get(name), figures.get(baseline)
    threshold = f"ratio <= {limit:g}"
    if scenario is None:
        return _verdict(label, threshold, None, None, "x", "this run has no such stage")
    if not mine or not base:
        missing = name if not mine else baseline
        return _verdict(label, threshold, None, None, "x", f"{missing} not measured in {scenario}")
    ratio = mine["cpu_per_turn_ms"] / base["cpu_per_turn_ms"]
    detail = (f"{mine['cpu_per_turn_ms']:.2f} ms vs {base['cpu_per_turn_ms']:.2f} ms per turn ({scenario}, "
              f"service processes)")
    database, proxy = mine.get("db_cpu_per_turn_ms"), mine.get("proxy_cpu_per_turn_ms")
    if database is not None:
        detail += (f"; PostgreSQL backends +{database:.2f} ms per turn, not in the ratio (with them "
                   f"{(mine['cpu_per_turn_ms'] + database) / base['cpu_per_turn_ms']:.2f}x)")
    if proxy is not None:
        detail += f"; nginx +{proxy:.2f} ms per turn, not in the ratio"
    return _verdict(label, threshold, ratio, limit, "x", detail)


def _floor_verdicts(table: dict[str, Any], stages: dict[str, str], name: str, cpu_limit: float,
                    latency_limit: float) -> list[dict[str, Any]]:
    """CPU per turn against the relay in JSON and SSE, and the added p50 latency against the relay's."""
    verdicts = []
    for key, mode in (("open_json", "JSON"), ("open_sse", "SSE")):
        scenario = stages.get(key)
        verdicts.append(_cpu_ratio(table, scenario, name, FLOOR, cpu_limit,
                                   f"{name}: CPU per {mode} turn <= {cpu_limit:g}x the relay's"))
    scenario = stages.get("open_json")
    figures = table.get(scenario or "", {})
    added = figures.get(name, {}).get("added_p50_ms")
    base = figures.get(FLOOR, {}).get("added_p50_ms")
    verdicts.append(_verdict(
        f"{name}: added latency p50 at {scenario or 'the open-loop JSON stage'} within {latency_limit:g} ms of "
        "the relay's",
        f"difference <= {latency_limit:g} ms", added - base if added is not None and base is not None else None,
        latency_limit, "ms", f"added p50 over direct-to-mock {_ms(added)} vs relay {_ms(base)}"))
    return verdicts


def _litellm_verdict(live: dict[str, Any], table: dict[str, Any], stages: dict[str, str],
                     name: str) -> dict[str, Any]:
    figures = table.get(stages.get("open_json") or "", {})
    mine, litellm = figures.get(name), figures.get("litellm")
    label = f"{name}: CPU per turn below LiteLLM's"
    if not mine or not litellm:
        skipped = live.get("skipped", {}).get("litellm", "LiteLLM not run")
        return _verdict(label, "< LiteLLM's", None, None, "ms", skipped)
    return _verdict(label, "< LiteLLM's", mine["cpu_per_turn_ms"], litellm["cpu_per_turn_ms"], "ms",
                    f"LiteLLM {litellm['cpu_per_turn_ms']:.2f} ms per turn ({stages['open_json']})")


def _crowd_verdicts(table: dict[str, Any], stages: dict[str, str]) -> list[dict[str, Any]]:
    scenario = stages.get("crowd")
    concurrency = (scenario or "").removeprefix("stream-c") or "many"
    return [_cpu_ratio(table, scenario, name, FLOOR, CROWD_LIMIT,
                       f"{name}: CPU per turn at {concurrency} concurrent streamed conversations <= "
                       f"{CROWD_LIMIT:g}x the relay's") for name in SUPPORTBOT]


def _workers_verdicts(table: dict[str, Any], stages: dict[str, str]) -> list[dict[str, Any]]:
    several = stages.get("workers_target", "supportbot-sqlite-w2")
    return _several_verdicts(table, stages.get("saturation"), several, "supportbot-sqlite",
                             f"supportbot-sqlite, serve --workers {several.rsplit('-w', 1)[-1]}")


def _replicas_verdicts(live: dict[str, Any], table: dict[str, Any], stages: dict[str, str]) -> list[dict[str, Any]]:
    """Two replicas on one PostgreSQL database behind nginx (deploy/nginx.conf) against one process, straight."""
    several = stages.get("replicas_target", "supportbot-postgres-r2")
    label = f"{several.rsplit('-r', 1)[-1]} replicas behind nginx (deploy/nginx.conf), PostgreSQL"
    skipped = live.get("skipped", {}).get(several)
    if skipped or several not in table.get(stages.get("saturation") or "", {}):
        reason = skipped or "not run in this run (the results predate the replicas stage)"
        return [_verdict(f"{label}: CPU per turn within {WORKERS_LIMIT:g}x of one worker's",
                         f"ratio <= {WORKERS_LIMIT:g}", None, None, "x", reason),
                _verdict(f"{label}: no errors at saturation", "0 failed turns", None, None, "failed turns", reason)]
    return _several_verdicts(table, stages.get("saturation"), several, "supportbot-postgres", label)


def _several_verdicts(table: dict[str, Any], scenario: str | None, several: str, one: str,
                      label: str) -> list[dict[str, Any]]:
    """CPU per turn of several supportbot processes against one's, and their errors, at saturation."""
    verdicts = [_cpu_ratio(table, scenario, several, one, WORKERS_LIMIT,
                           f"{label}: CPU per turn within {WORKERS_LIMIT:g}x of one worker's")]
    figures = table.get(scenario or "", {}).get(several)
    errors = sum(figures["errors"].values()) if figures else None
    detail = (f"{figures['turns']:,} turns served at {scenario}, {figures['turns_per_s']:.1f} turns/s; "
              + (", ".join(f"{k}: {v}" for k, v in figures["errors"].items()) or "no errors")) if figures else ""
    verdicts.append(_verdict(f"{label}: no errors at saturation", "0 failed turns", errors, 0.0, "failed turns",
                             detail))
    return verdicts


def _stream_verdicts(live: dict[str, Any], table: dict[str, Any], stages: dict[str, str]) -> list[dict[str, Any]]:
    # The crowd stage saturates every server, so its gaps measure the queue, not the streaming path.
    interval = live["upstream"]["interval_ms"]
    verdicts = []
    for name in SUPPORTBOT:
        streams = [f for s, by_target in table.items() if s.startswith("stream-") and s != stages.get("crowd")
                   for t, f in by_target.items() if t == name]
        if streams:
            worst = max(f["max_gap_max_ms"] for f in streams)
            verdicts.append(_verdict(
                f"{name}: no chunk gap above 2x the upstream interval", f"max gap <= {2 * interval:g} ms", worst,
                2 * interval, "ms", f"upstream interval {interval:g} ms; p99 of per-turn largest gap "
                f"{max(f['max_gap_p99_ms'] or 0 for f in streams):.1f} ms"))
    return verdicts


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} ms"


def _data_verdicts(data: dict[str, Any]) -> list[dict[str, Any]]:
    verdicts = []
    largest = max(data.get("retrieval", []), key=lambda r: r["known_issues"], default=None)
    if largest and largest["known_issues"] >= 10_000:
        verdicts.append(_verdict("retrieval at 10,000 known issues <= 5 ms CPU per query", "<= 5 ms",
                                 largest["cpu_ms"]["mean"], 5.0, "ms",
                                 f"mean of {largest['queries']} queries, k=8; p95 {largest['cpu_ms']['p95']} ms"))
    else:
        verdicts.append(_verdict("retrieval at 10,000 known issues <= 5 ms CPU per query", "<= 5 ms", None, None,
                                 "ms", "10,000 known issues not in this profile"))
    for database in ("sqlite", "postgresql"):
        section = data.get(database)
        if not section or "export" not in section:
            continue
        messages = section["rows"]["messages"]
        label = f"{database}, {messages:,} messages"
        export, dump = section["export"], section["dump"]
        verdicts.append(_verdict(f"export ({label}): peak RSS <= 300 MB", "<= 300 MB", export["peak_rss_mb"], 300.0,
                                 "MB"))
        verdicts.append(_verdict(
            f"export ({label}): CPU within 3x a plain SQL dump", "ratio <= 3", export["cpu_s"] / dump["cpu_s"]
            if dump["cpu_s"] else None, 3.0, "x", f"export {export['cpu_s']} s CPU vs dump {dump['cpu_s']} s"))
        pages = [p for p in section["inbox"] if "q=" not in p["page"]]
        slowest = max(pages, key=lambda p: p["ms"]["p50"])
        scans = [p["page"] for p in pages if any(q["full_scan"] for q in p["queries"])]
        verdicts.append(_verdict(f"admin inbox ({label}): first page <= 200 ms", "<= 200 ms",
                                 slowest["ms"]["p50"], 200.0, "ms",
                                 f"slowest view: {slowest['page']} (median of repeats; first call "
                                 f"{slowest['first_call_ms']} ms)"))
        verdicts.append({"target": f"admin inbox ({label}): first page's queries use indexes",
                         "threshold": "no full scan of conversations/messages", "measured": len(scans),
                         "unit": "pages with a full scan", "met": not scans,
                         "detail": ", ".join(scans) if scans else "every filter view reads through an index"})
    return verdicts

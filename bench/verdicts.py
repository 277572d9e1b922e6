"""The issue's targets, checked against the measured figures: met, missed (and by how much), or not measured."""

from __future__ import annotations

from typing import Any

from .aggregate import soak_figures, summarize_runs

SUPPORTBOT = ("supportbot-sqlite", "supportbot-postgres")


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


def _open_scenario(table: dict[str, Any]) -> str | None:
    return next((name for name in table if name.startswith("open-")), None)


def _live_verdicts(live: dict[str, Any]) -> list[dict[str, Any]]:
    table = summarize_runs(live["runs"])
    verdicts = []
    fastest = max((f["turns_per_s"] for by_target in table.values() for t, f in by_target.items() if t != "mock"),
                  default=None)
    capacity = live["mock_capacity"]["requests_per_s"]
    verdicts.append(_verdict(
        "mock upstream serves well above the rates measured", ">= 3x the fastest target", capacity / fastest
        if fastest else None, 3.0, "x", f"capacity {capacity:,.0f} requests/s vs fastest target "
        f"{fastest or 0:,.1f} turns/s", lower_is_better=False))
    scenario = _open_scenario(table)
    figures = table.get(scenario, {}) if scenario else {}
    passthrough = figures.get("passthrough", {})
    litellm = figures.get("litellm", {})
    for name in SUPPORTBOT:
        mine = figures.get(name)
        if not mine:
            continue
        ratio = mine["cpu_per_turn_ms"] / passthrough["cpu_per_turn_ms"] if passthrough else None
        verdicts.append(_verdict(
            f"{name}: CPU per turn <= 1.5x the passthrough's", "ratio <= 1.5", ratio, 1.5, "x",
            f"{mine['cpu_per_turn_ms']:.2f} ms vs {passthrough.get('cpu_per_turn_ms', float('nan')):.2f} ms "
            f"per turn ({scenario}, service processes)"))
        if litellm:
            verdicts.append(_verdict(
                f"{name}: CPU per turn below LiteLLM's", "< LiteLLM's", mine["cpu_per_turn_ms"],
                litellm["cpu_per_turn_ms"], "ms", f"LiteLLM {litellm['cpu_per_turn_ms']:.2f} ms per turn"))
        else:
            verdicts.append(_verdict(f"{name}: CPU per turn below LiteLLM's", "< LiteLLM's", None, None, "ms",
                                     live.get("skipped", {}).get("litellm", "LiteLLM not run")))
        added = mine.get("added_p50_ms")
        base = passthrough.get("added_p50_ms")
        verdicts.append(_verdict(
            f"{name}: added latency p50 at {scenario} within 2 ms of the passthrough's", "difference <= 2 ms",
            added - base if added is not None and base is not None else None, 2.0, "ms",
            f"added p50 {added if added is not None else float('nan'):.2f} ms vs passthrough "
            f"{base if base is not None else float('nan'):.2f} ms"))
    interval = live["upstream"]["interval_ms"]
    for name in SUPPORTBOT:
        streams = [f for s, by_target in table.items() if s.startswith("stream-") for t, f in by_target.items()
                   if t == name]
        if streams:
            worst = max(f["max_gap_max_ms"] for f in streams)
            verdicts.append(_verdict(
                f"{name}: no chunk gap above 2x the upstream interval", f"max gap <= {2 * interval:g} ms", worst,
                2 * interval, "ms", f"upstream interval {interval:g} ms; p99 of per-turn largest gap "
                f"{max(f['max_gap_p99_ms'] or 0 for f in streams):.1f} ms"))
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

"""From the runs of every round to one figure per scenario and target (medians of the rounds)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .stats import median

# Added latency is a target's figure minus direct-to-mock's in the same round; the floor the targets
# compare with is the relay (bench/relay.py, bench/verdicts.py).
DIRECT = "mock"
ORDER = ("mock", "relay", "passthrough", "supportbot-sqlite", "supportbot-sqlite-w2", "supportbot-postgres",
         "supportbot-postgres-r2", "litellm")


def _get(run: dict[str, Any], *path: str) -> float | None:
    value: Any = run
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, int | float) else None


def _added(runs: list[dict[str, Any]], directs: dict[int, dict[str, Any]], *path: str) -> float | None:
    """Median over rounds of (this target's figure - direct-to-mock's figure in the same round)."""
    deltas = []
    for run in runs:
        direct = directs.get(run["round"])
        mine, base = _get(run, *path), _get(direct, *path) if direct else None
        if mine is not None and base is not None:
            deltas.append(mine - base)
    return median(deltas)


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """scenario -> target -> figures."""
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        grouped[run["scenario"]][run["target"]].append(run)
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for scenario, by_target in grouped.items():
        directs = {run["round"]: run for run in by_target.get(DIRECT, [])}
        table[scenario] = {}
        for target in sorted(by_target, key=lambda t: ORDER.index(t) if t in ORDER else 99):
            table[scenario][target] = _figures(by_target[target], directs)
    return table


def _figures(runs: list[dict[str, Any]], directs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    total = sum(r["turns_ok"] + r["turns_failed"] for r in runs)
    figures: dict[str, Any] = {
        "rounds": len(runs), "turns": sum(r["turns_ok"] for r in runs),
        "error_rate": sum(r["turns_failed"] for r in runs) / total if total else 0.0,
        "errors": _merge_errors(runs),
        "turns_per_s": median([r["turns_per_s"] for r in runs]),
        "cpu_per_turn_ms": median([r["cpu_per_turn_ms"] for r in runs]),
        "cpu_per_turn_pooled_ms": sum(r["server_cpu_s"] for r in runs) / max(1, sum(r["turns_ok"] for r in runs))
        * 1000,
        "server_cpu_utilization": median([r.get("server_cpu_utilization") for r in runs]),
        "client_cpu_per_turn_ms": median([r.get("client_cpu_per_turn_ms") for r in runs]),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
    }
    for apart in ("db_cpu_per_turn_ms", "proxy_cpu_per_turn_ms"):  # counted apart from the server's processes
        if any(apart in r for r in runs):
            figures[apart] = median([r.get(apart) for r in runs])
    for q in ("p50", "p95", "p99"):
        figures[f"latency_{q}_ms"] = median([_get(r, "latency_ms", q) for r in runs])
        figures[f"added_{q}_ms"] = _added(runs, directs, "latency_ms", q)
    if any("ttft_ms" in r for r in runs):
        figures["ttft_p50_ms"] = median([_get(r, "ttft_ms", "p50") for r in runs])
        figures["added_ttft_p50_ms"] = _added(runs, directs, "ttft_ms", "p50")
        figures["added_ttft_p95_ms"] = _added(runs, directs, "ttft_ms", "p95")
        figures["max_gap_p50_ms"] = median([_get(r, "max_gap_ms", "p50") for r in runs])
        figures["max_gap_p99_ms"] = median([_get(r, "max_gap_ms", "p99") for r in runs])
        figures["max_gap_max_ms"] = max((_get(r, "max_gap_ms", "max") or 0.0) for r in runs)
        figures["tail_p50_ms"] = median([_get(r, "tail_ms", "p50") for r in runs])
        figures["chunks_per_turn"] = median([r.get("chunks_per_turn") for r in runs])
    if any("server_timing_ms" in r for r in runs):
        for name in ("total", "upstream", "db", "overhead", "client_minus_total"):
            figures[f"st_{name}_p50_ms"] = median([_get(r, "server_timing_ms", name, "p50") for r in runs])
        figures["st_overhead_p95_ms"] = median([_get(r, "server_timing_ms", "overhead", "p95") for r in runs])
    return figures


def _merge_errors(runs: list[dict[str, Any]]) -> dict[str, int]:
    merged: dict[str, int] = defaultdict(int)
    for run in runs:
        for key, count in run.get("errors", {}).items():
            merged[key] += count
    return dict(merged)


def soak_figures(soak: dict[str, Any] | None) -> dict[str, Any] | None:
    """RSS growth over the soak, after its first fifth (warm-up): thirds compared, and the slope."""
    if not soak or not soak.get("rss_series_mb"):
        return None
    series = soak["rss_series_mb"]
    steady = series[len(series) // 5:]
    base = {"samples": len(series), "start_mb": series[0][1], "end_mb": series[-1][1],
            "turns": soak.get("turns_ok"), "errors": soak.get("turns_failed"),
            "cpu_per_turn_ms": soak.get("cpu_per_turn_ms")}
    if len(steady) < 6:
        return {**base, "first_third_mb": None, "last_third_mb": None, "growth_mb": None, "slope_mb_per_min": None}
    third = len(steady) // 3
    first = median([rss for _, rss in steady[:third]]) or 0.0
    last = median([rss for _, rss in steady[-third:]]) or 0.0
    n = len(steady)
    mean_t = sum(t for t, _ in steady) / n
    mean_r = sum(r for _, r in steady) / n
    var = sum((t - mean_t) ** 2 for t, _ in steady)
    slope = sum((t - mean_t) * (r - mean_r) for t, r in steady) / var * 60 if var else 0.0
    return {**base, "first_third_mb": round(first, 1), "last_third_mb": round(last, 1),
            "growth_mb": round(last - first, 2), "slope_mb_per_min": round(slope, 3)}

"""The report's chart (matplotlib, optional): CPU per turn, added latency by concurrency, RSS over the soak."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .aggregate import ORDER, summarize_runs

COLORS = {"mock": "#9e9e9e", "relay": "#4c72b0", "passthrough": "#8172b3", "supportbot-sqlite": "#dd8452",
          "supportbot-sqlite-w2": "#937860", "supportbot-postgres": "#c44e52",
          "supportbot-postgres-r2": "#8c613c", "litellm": "#55a868"}


def draw_chart(results: dict[str, Any], path: Path) -> bool:
    """Draw the chart into `path`; False when matplotlib is not installed or there is no live data."""
    live = results.get("live")
    if not live or not live.get("runs"):
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    table = summarize_runs(live["runs"])
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    _cpu_panel(axes[0], table, live)
    _latency_panel(axes[1], table)
    _soak_panel(axes[2], live)
    figure.suptitle(f"supportbot benchmark ({results['profile']} run, {results['started_at']}, "
                    f"{results['machine']['usable_cores']} cores)", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def _cpu_panel(axis: Any, table: dict[str, Any], live: dict[str, Any]) -> None:
    scenario = (live.get("stages") or {}).get("open_json") or next((s for s in table if s.startswith("open-")), None)
    if scenario is None:
        return
    names = [t for t in ORDER if t in table[scenario]]
    values = [table[scenario][t]["cpu_per_turn_ms"] for t in names]
    bars = axis.bar(range(len(names)), values, color=[COLORS.get(t, "#333") for t in names])
    for bar, name in zip(bars, names, strict=True):
        db = table[scenario][name].get("db_cpu_per_turn_ms")
        if db:
            axis.bar(bar.get_x() + bar.get_width() / 2, db, bottom=bar.get_height(), width=bar.get_width(),
                     color="#f2b5b5", hatch="//", label="PostgreSQL backends")
    if "relay" in table[scenario]:
        limit = table[scenario]["relay"]["cpu_per_turn_ms"] * 1.2
        axis.axhline(limit, linestyle="--", color=COLORS["relay"], linewidth=1, label="target (SQLite): 1.2x relay")
    axis.set_xticks(range(len(names)), [n.replace("supportbot-", "sb-") for n in names], rotation=15)
    axis.set_ylabel("ms CPU per turn (server processes)")
    axis.set_title(f"CPU per JSON turn, open loop at {scenario.removeprefix('open-').removesuffix('-json')} turns/s")
    axis.legend(fontsize=8)


def _latency_panel(axis: Any, table: dict[str, Any]) -> None:
    closed = sorted((s for s in table if s.startswith("closed-c")), key=lambda s: int(s.removeprefix("closed-c")))
    levels = [int(s.removeprefix("closed-c")) for s in closed]
    for name in ORDER:
        if name == "mock":
            continue
        points = [(level, table[s][name]["added_p50_ms"]) for level, s in zip(levels, closed, strict=True)
                  if name in table[s] and table[s][name]["added_p50_ms"] is not None]
        if points:
            axis.plot([p[0] for p in points], [max(p[1], 0.01) for p in points], marker="o",
                      color=COLORS.get(name), label=name)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xticks(levels, [str(level) for level in levels])
    axis.set_xlabel("concurrent conversations (closed loop)")
    axis.set_ylabel("added latency p50 over direct-to-mock, ms")
    axis.set_title("Latency added over direct-to-mock")
    axis.legend(fontsize=8)


def _soak_panel(axis: Any, live: dict[str, Any]) -> None:
    soak = live.get("soak") or {}
    series = soak.get("rss_series_mb") or []
    if series:
        axis.plot([t / 60 for t, _ in series], [rss for _, rss in series], color=COLORS["supportbot-sqlite"])
        top = max(rss for _, rss in series)
        axis.set_ylim(0, max(160.0, top * 1.1))
        axis.axhline(150, linestyle="--", color="#888", linewidth=1, label="150 MB (idle target)")
        axis.legend(fontsize=8)
    axis.set_xlabel("minutes")
    axis.set_ylabel("RSS MB")
    axis.set_title(f"supportbot (SQLite) RSS over the soak, {soak.get('rate', 0):g} turns/s")

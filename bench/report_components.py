"""The report section of the in-process CPU breakdown (bench/components.py)."""

from __future__ import annotations

from typing import Any


def components_section(parts: dict[str, Any], table: Any) -> list[str]:
    """Markdown lines for the breakdown; `table` is the report's table helper."""
    lines = ["## Where a turn's CPU goes (in-process breakdown)", "",
             "Measured in one process with `time.process_time()` over 300 turns each after 20 warm-up turns "
             "(`bench/components.py`): no HTTP server, no upstream; conversations of 10 turns.", ""]
    rows = []
    labels = {
        "domain_turn_sqlite": "whole turn, offline provider (`start_turn` + `Turn.run`), SQLite",
        "storage_sqlite_full": "the two writes (`begin_turn` + `record_reply`), SQLite, synchronous=FULL (shipped)",
        "storage_sqlite_normal": "the two writes, SQLite, synchronous=NORMAL",
        "storage_postgresql": "the two writes, PostgreSQL (client side only)",
    }
    for key, label in labels.items():
        if key in parts:
            rows.append([label, parts[key]["cpu_ms_per_turn"], parts[key]["wall_ms_per_turn"]])
    lines += table(["what", "CPU ms per turn", "wall ms per turn"], rows)
    transform = [r for r in parts.get("openai_transform", []) if "cpu_ms" in r]
    if transform:
        lines += ["The openai client's `chat.completions.create` prepares its parameters (`_transform`) on every "
                  "call; the passthrough pays it, supportbot posts the same JSON through the client's `post` "
                  "without it (tests/test_llm_body.py checks the bodies are equal).", ""]
        lines += table(["openai client request preparation (`_transform`), earlier messages sent", "CPU ms"],
                       [[r["earlier_messages"], r["cpu_ms"]] for r in transform])
    profile = parts.get("export_profile")
    if profile and "top" in profile:
        lines += ["### Export profile", "",
                  f"py-spy samples of `supportbot export --format openai-chat --select all` on the large SQLite log "
                  f"(an extra run, not the measured one): {profile['samples']:,} samples inside `Exporter.lines`; "
                  "share of them whose stack contains the function.", ""]
        lines += table(["function (file)", "share"], [[f"`{e['function']}`", f"{e['share'] * 100:.1f} %"]
                                                      for e in profile["top"]])
    elif profile:
        lines += [f"Export profile: {profile.get('error')}", ""]
    return lines

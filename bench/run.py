"""The benchmark suite in one command: `.venv/bin/python -m bench.run [--quick] [--soak] [--skip-litellm]`.

Full run (~30 minutes on 2 cores): the live load test against the mock, the minimal relay (the floor,
bench/relay.py), the OpenAI-protocol proxy (bench/passthrough.py), supportbot on SQLite (one worker and
`serve --workers 2`) and PostgreSQL and LiteLLM's proxy; then retrieval, export and admin inbox on
synthetic data; results to bench/results/results.json and docs/performance.md (+ chart).
`--quick` is the smoke run of the test suite: a few dozen turns per target, tiny datasets, no LiteLLM,
results under bench/work/quick/ unless --results-dir/--docs-dir say otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .procstat import CpuPlan, pin
from .profiles import FULL, QUICK
from .targets import ROOT

WORK = ROOT / "bench" / "work"


def log(message: str) -> None:
    """Progress on stderr, with the time since start."""
    print(f"[bench {time.monotonic() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


STARTED = time.monotonic()


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = 0
    try:
        memory = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    postgres = "unavailable"
    try:
        import psycopg

        from .targets import PG_ADMIN_URL

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as connection:
            postgres = str(connection.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    except Exception:  # noqa: BLE001
        pass
    import sqlite3

    return {
        "cpu": cpu_model, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory / 2**30, 1), "kernel": platform.release(), "os": _os_name(),
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version, "postgresql": postgres,
        "packages": _versions("fastapi", "starlette", "uvicorn", "openai", "httpx", "sqlalchemy", "psycopg",
                              "bm25s", "uvloop", "httptools"),
    }


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: a few dozen turns per target, no LiteLLM")
    parser.add_argument("--soak", action="store_true", help="10-minute soak instead of the default 2 minutes")
    parser.add_argument("--skip-litellm", action="store_true", help="do not install or run LiteLLM's proxy")
    parser.add_argument("--postgres-data", action="store_true",
                        help="also load the large log into PostgreSQL for export and inbox (~4 more minutes)")
    parser.add_argument("--skip-live", action="store_true", help="only the data benchmarks (retrieval, export, inbox)")
    parser.add_argument("--skip-data", action="store_true", help="only the live load test")
    parser.add_argument("--report-from", type=Path, metavar="RESULTS_JSON",
                        help="only regenerate the report (and re-check the targets) from a results file")
    parser.add_argument("--skip-components", action="store_true", help="skip the in-process CPU breakdown")
    parser.add_argument("--merge-into", type=Path, metavar="RESULTS_JSON",
                        help="run the parts not skipped and merge them into an existing results file")
    parser.add_argument("--results-dir", type=Path, help="default: bench/results (full) or bench/work/quick")
    parser.add_argument("--docs-dir", type=Path, help="where performance.md and the chart go; default: docs "
                        "(full) or bench/work/quick; 'none' writes no report")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the suite; exit status 0 when every run served its requests (targets missed are reported, not fatal)."""
    args = parse_args(argv)
    if args.report_from:
        return report_only(args.report_from, args.docs_dir or ROOT / "docs")
    profile = QUICK if args.quick else FULL
    profile = dataclasses.replace(profile, postgres_data=args.postgres_data)
    results_dir = args.results_dir or (WORK / "quick" if args.quick else ROOT / "bench" / "results")
    docs_dir = args.docs_dir or (WORK / "quick" if args.quick else ROOT / "docs")
    work = WORK / ("quick-run" if args.quick else "run")
    # Scratch of the previous run (data directories, logs); the venv and the data cache live elsewhere.
    if not args.merge_into:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    plan = CpuPlan.for_machine()
    described = machine()
    pin(plan.clients)
    soak_seconds = 600.0 if args.soak else profile.soak_seconds
    command = "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:])
    results: dict[str, Any] = {
        "profile": profile.name, "profile_settings": dataclasses.asdict(profile), "command": command.strip(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": described,
        "pinning": plan.describe(), "git_revision": _revision(),
    }
    log(f"profile {profile.name}; {plan.describe()}")
    if not args.skip_live:
        results["live"] = run_live(profile, work, plan, include_litellm=not (args.quick or args.skip_litellm),
                                   soak_seconds=soak_seconds)
    if not args.skip_data:
        from .data_suite import run_data

        results["data"] = run_data(profile, WORK, log)
    if not args.skip_components:
        results["components"] = components(profile, work)
    if args.merge_into:
        merged = json.loads(args.merge_into.read_text(encoding="utf-8"))
        for key in ("live", "data", "components"):
            if key in results:
                merged[key] = results[key]
        merged.setdefault("merged", []).append({"command": results["command"], "at": results["started_at"],
                                                "parts": [k for k in ("live", "data", "components") if k in results]})
        return report_only_results(merged, args.merge_into, args.docs_dir or ROOT / "docs")
    results["duration_s"] = round(time.monotonic() - STARTED, 1)
    from .profiling import resummarize
    from .report import evaluate, write_report

    resummarize(results)
    results["targets"] = evaluate(results)
    results_dir.mkdir(parents=True, exist_ok=True)
    out = results_dir / ("results.json" if profile.name == FULL.name else f"{profile.name}.json")
    out.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    log(f"results: {out}")
    if str(docs_dir) != "none":
        written = write_report(results, docs_dir, out)
        log(f"report: {', '.join(str(p) for p in written)}")
    return 0 if all_served(results) else 1


def components(profile: Any, work: Path) -> dict[str, Any]:
    """The in-process CPU breakdown of a turn (PostgreSQL in a database created and dropped here)."""
    from .components import run_components
    from .loadtest import system_prompt
    from .targets import create_pg_database, postgres_available

    url, drop = (None, None) if postgres_available() else create_pg_database("sb_bench_parts")
    try:
        from .datasets import GENERATOR_VERSION

        large = WORK / "data" / f"log-{profile.messages}-v{GENERATOR_VERSION}.db"
        return run_components(work / "components", system_prompt(), url, log,
                              export_db=large if profile.profile_seconds else None)
    finally:
        if drop is not None:
            drop()


def report_only(path: Path, docs_dir: Path) -> int:
    """Regenerate performance.md and the chart from a results file (no measurement)."""
    return report_only_results(json.loads(path.read_text(encoding="utf-8")), path, docs_dir)


def report_only_results(results: dict[str, Any], path: Path, docs_dir: Path) -> int:
    """Re-check the targets, write the results file back and regenerate the report."""
    from .profiling import resummarize
    from .report import evaluate, write_report

    resummarize(results)
    results["targets"] = evaluate(results)
    path.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    written = write_report(results, docs_dir, path)
    log(f"report: {', '.join(str(p) for p in written)}")
    return 0


def run_live(profile: Any, work: Path, plan: CpuPlan, include_litellm: bool, soak_seconds: float) -> dict[str, Any]:
    """Start the targets, run the interleaved rounds and the soak, stop everything."""
    from .loadtest import LiveSuite

    suite = LiveSuite(profile, work, plan, include_litellm, log)
    try:
        capacity = suite.start()
        log(f"mock capacity: {capacity['requests_per_s']} requests/s at zero latency")
        suite.run_rounds()
        soak = suite.soak(soak_seconds)
        profiles = suite.profile_servers(profile.profile_seconds) if profile.profile_seconds else {}
    finally:
        suite.finish()
    return {"mock_capacity": capacity, "targets": suite.info, "skipped": suite.skipped, "runs": suite.runs,
            "stages": suite.stages, "soak": soak, "upstream": profile.upstream, "profiles": profiles}


def all_served(results: dict[str, Any]) -> bool:
    """True when no live run of the floors or of supportbot had a failed turn (the peer's errors are data)."""
    runs = results.get("live", {}).get("runs", [])
    return all(run["turns_failed"] == 0 for run in runs if run["target"] != "litellm")


def _revision() -> str | None:
    try:
        head = (ROOT / ".git" / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = ROOT / ".git" / head[5:]
            return ref.read_text().strip() if ref.exists() else None
        return head
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())

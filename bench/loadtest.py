"""The live part: the same conversations against every target, in interleaved rounds.

Each round runs every scenario against every target, the target order rotating from round to round,
so drift of the machine (other tenants, thermal, page cache) lands on all targets alike; the report
takes the median of the rounds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .litellm_peer import ensure_installed, start_litellm
from .nginx import nginx_binary
from .procstat import CpuPlan, CpuWindow, RssSampler, peak_rss_bytes, rss_bytes
from .profiles import QUESTIONS, Profile
from .targets import (
    MAX_TOKENS,
    MODEL,
    ROOT,
    VENV_BIN,
    Target,
    postgres_available,
    start_mock,
    start_passthrough,
    start_relay,
    start_supportbot_postgres,
    start_supportbot_replicas,
    start_supportbot_sqlite,
)

MB = 1024 * 1024


class LoadClient:
    """The load generator process, pinned to the client cores, serving one run at a time."""

    def __init__(self, plan: CpuPlan) -> None:
        def pin() -> None:
            if plan.clients:
                import os

                os.sched_setaffinity(0, plan.clients)

        self._process = subprocess.Popen([sys.executable, "-m", "bench.loadgen"], cwd=ROOT, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True, preexec_fn=pin)
        self._readline()

    def _readline(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"load generator exited with {self._process.wait()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def run(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Run one spec and return its result."""
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(spec) + "\n")
        self._process.stdin.flush()
        return self._readline()

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=30)


# The servers of the crowd stage (many streamed conversations): the floor and supportbot; the OpenAI-protocol
# proxy and LiteLLM sit it out to keep the full run under half an hour.
CROWD_TARGETS = frozenset({"mock", "relay", "supportbot-sqlite", "supportbot-postgres"})


@dataclass(frozen=True)
class Scenario:
    """One measured run of a round: its load, and which targets take part."""

    name: str
    load: dict[str, Any]
    only: frozenset[str] | None = None  # None: every one-worker target
    # supportbot with several workers, and several replicas behind nginx, run it too (the saturation stage)
    with_workers: bool = False

    def includes(self, target: str, several: frozenset[str]) -> bool:
        """Whether `target` runs this scenario (`several`: the targets of more than one supportbot process)."""
        if target in several:
            return self.with_workers
        return self.only is None or target in self.only


def stages(profile: Profile) -> dict[str, str]:
    """The scenario names the issue's targets are read from (kept in the results with the runs)."""
    rate = f"{profile.open_rate:g}"
    return {"open_json": f"open-{rate}-json", "open_sse": f"open-{rate}-sse", "crowd": f"stream-c{profile.crowd[0]}",
            "saturation": f"closed-c{max(c for c, _ in profile.closed)}",
            "workers_target": f"supportbot-sqlite-w{profile.workers}",
            "replicas_target": f"supportbot-postgres-r{profile.replicas}"}


def scenarios(profile: Profile) -> list[Scenario]:
    """Every measured run of a round."""
    named = stages(profile)
    runs = [Scenario(f"closed-c{c}", {"mode": "closed", "concurrency": c, "turns": n},
                     with_workers=f"closed-c{c}" == named["saturation"]) for c, n in profile.closed]
    concurrency, turns = profile.stream
    runs.append(Scenario(f"stream-c{concurrency}", {"mode": "closed", "concurrency": concurrency, "turns": turns,
                                                    "stream": True}))
    crowd, crowd_turns = profile.crowd
    runs.append(Scenario(named["crowd"], {"mode": "closed", "concurrency": crowd, "turns": crowd_turns,
                                          "stream": True}, CROWD_TARGETS))
    for key, stream in (("open_json", False), ("open_sse", True)):
        runs.append(Scenario(named[key], {"mode": "open", "rate": profile.open_rate, "turns": profile.open_turns,
                                          "stream": stream}))
    return runs


def system_prompt() -> str:
    """The system prompt supportbot sends for the first question, so the peers send as many bytes."""
    # Its own data dir under bench/work: `prompt show` generates a secret key (the canary) when none is set.
    env = {**os.environ, "SUPPORTBOT_DATA_DIR": str(ROOT / "bench" / "work" / "prompt-show")}
    shown = subprocess.run([str(VENV_BIN / "supportbot"), "prompt", "show", "--query", QUESTIONS[0]],
                           capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    return shown.stdout


def base_spec(target: Target, profile: Profile, prompt: str) -> dict[str, Any]:
    """What every run against `target` sends, whatever the scenario."""
    from service.providers.base import ESCALATE_TOOL

    return {
        "kind": target.kind, "host": "127.0.0.1", "port": target.port, "questions": QUESTIONS,
        "turns_per_conversation": profile.turns_per_conversation, "system_prompt": prompt,
        "model": MODEL, "max_tokens": MAX_TOKENS, "temperature": 0.2, "tools": [ESCALATE_TOOL],
        "api_key": target.api_key,
    }


def measure(client: LoadClient, target: Target, spec: dict[str, Any], rss_interval: float = 0.25) -> dict[str, Any]:
    """Run `spec` and add the server's CPU time (and its database's) and RSS over the run."""
    server, database, proxy = CpuWindow(target.pids), CpuWindow(target.extra_pids), CpuWindow(target.proxy_pids)
    with RssSampler(target.pids, interval=rss_interval) as sampler:
        server.start()
        database.start()
        proxy.start()
        result = client.run(spec)
        server_cpu, database_cpu, proxy_cpu = server.stop(), database.stop(), proxy.stop()
    turns = max(result["turns_ok"], 1)
    result.update({
        "server_cpu_s": round(server_cpu, 4), "cpu_per_turn_ms": round(server_cpu / turns * 1000, 4),
        "server_user_s": round(server.user, 4), "server_system_s": round(server.system, 4),
        "server_cpu_utilization": round(server_cpu / result["wall_s"], 4) if result["wall_s"] else None,
        "peak_rss_mb": round(sampler.peak / MB, 1),
    })
    if target.name.startswith("supportbot-postgres"):
        result["db_cpu_s"] = round(database_cpu, 4)
        result["db_cpu_per_turn_ms"] = round(database_cpu / turns * 1000, 4)
    if target.members:  # replicas behind a proxy: the proxy's CPU, counted apart like the database's
        result["proxy_cpu_s"] = round(proxy_cpu, 4)
        result["proxy_cpu_per_turn_ms"] = round(proxy_cpu / turns * 1000, 4)
    if rss_interval >= 1.0:
        result["rss_series_mb"] = [[round(t, 1), round(rss / MB, 2)] for t, rss in sampler.samples]
    return result


@dataclass
class LiveSuite:
    """Targets started once, then measured round after round."""

    profile: Profile
    work: Path
    plan: CpuPlan
    include_litellm: bool
    log: Callable[[str], None]
    targets: list[Target] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    info: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    stages: dict[str, str] = field(default_factory=dict)

    def start(self) -> dict[str, Any]:
        """Start the mock (and check its capacity), then every target; warm each up."""
        timing = self.profile.upstream
        mock_workers = max(2, len(self.plan.clients or ()))
        mock = start_mock(self.work, self.plan, timing, mock_workers)
        self.targets.append(mock)
        self.client = LoadClient(self.plan)
        self.prompt = system_prompt()
        capacity = self.client.run({**base_spec(mock, self.profile, self.prompt), "mode": "closed",
                                    "concurrency": 32, "turns": self.profile.capacity_turns,
                                    "headers": {"x-mock-latency-ms": "0"}})
        upstream = f"http://127.0.0.1:{mock.port}/v1"
        self.stages = stages(self.profile)
        workers = self.profile.workers
        starters: list[tuple[str, Callable[[], Target]]] = [
            ("relay", lambda: start_relay(self.work, self.plan, upstream)),
            ("passthrough", lambda: start_passthrough(self.work, self.plan, upstream)),
            ("supportbot-sqlite", lambda: start_supportbot_sqlite(self.work, self.plan, upstream)),
            (self.stages["workers_target"], lambda: start_supportbot_sqlite(self.work, self.plan, upstream, workers)),
            ("supportbot-postgres", lambda: start_supportbot_postgres(self.work, self.plan, upstream)),
            (self.stages["replicas_target"],
             lambda: start_supportbot_replicas(self.work, self.plan, upstream, self.profile.replicas)),
            ("litellm", lambda: start_litellm(self.work, self.plan, upstream)),
        ]
        # Start-up is mostly imports: start the targets side by side.
        with ThreadPoolExecutor(max_workers=len(starters)) as pool:
            futures = {name: pool.submit(self._start_one, name, starter) for name, starter in starters}
        for name, _ in starters:
            target = futures[name].result()
            if target is not None:
                self.targets.append(target)
        self.info.setdefault("mock", {})["workers"] = mock_workers
        for target in self.targets:
            self._warm_up(target)
        return {"requests_per_s": round(capacity["turns_per_s"], 1), "errors": capacity["turns_failed"],
                "concurrency": 32, "latency": "0 ms (x-mock-latency-ms header)",
                "client_cpu_per_request_ms": capacity["client_cpu_per_turn_ms"]}

    def _start_one(self, name: str, starter: Callable[[], Target]) -> Target | None:
        reason = self._unavailable(name)
        if reason:
            self.skipped[name] = reason
            self.log(f"skip {name}: {reason}")
            return None
        began = time.monotonic()
        try:
            target = starter()
        except Exception as error:  # noqa: BLE001 - one target failing must not stop the others
            self.skipped[name] = f"failed to start: {error}"
            self.log(f"skip {name}: {error}")
            return None
        self.info[name] = {"startup_s": round(time.monotonic() - began, 2)}
        return target

    def _unavailable(self, name: str) -> str | None:
        if name == "supportbot-postgres":
            return postgres_available()
        if name == self.stages["replicas_target"]:
            return postgres_available() or (None if nginx_binary() else "nginx not installed "
                                            "(scripts/ensure-nginx.sh installs Debian's)")
        if name == "litellm":
            if not self.include_litellm:
                return "not run in this mode (--skip-litellm or --quick)"
            return ensure_installed(self.work, self.work / "litellm-install.log")
        return None

    def _warm_up(self, target: Target) -> None:
        info = self.info.setdefault(target.name, {})
        info["label"], info["version"] = target.label, target.version
        info["rss_after_start_mb"] = round(rss_bytes(target.pids()) / MB, 1)
        spec = base_spec(target, self.profile, self.prompt)
        for stream in (False, True):
            result = self.client.run({**spec, "mode": "closed", "concurrency": 4,
                                      "turns": self.profile.warmup_turns, "stream": stream})
            if result["turns_failed"]:
                self.log(f"warm-up of {target.name} had errors: {result['errors']}")
        time.sleep(1.0)
        info["idle_rss_mb"] = round(rss_bytes(target.pids()) / MB, 1)

    def run_rounds(self) -> None:
        """Every scenario on every target, `profile.rounds` times, target order rotating."""
        plan = scenarios(self.profile)
        several = frozenset({self.stages["workers_target"], self.stages["replicas_target"]})
        for round_index in range(self.profile.rounds):
            shift = round_index % len(self.targets)
            order = self.targets[shift:] + self.targets[:shift]
            for scenario in plan:
                for target in (t for t in order if scenario.includes(t.name, several)):
                    spec = {**base_spec(target, self.profile, self.prompt), **scenario.load}
                    result = measure(self.client, target, spec)
                    result.update({"round": round_index, "scenario": scenario.name, "target": target.name})
                    self.runs.append(result)
                    self.log(f"round {round_index + 1}/{self.profile.rounds} {scenario.name:<14} {target.name:<20} "
                             f"{result['turns_per_s']:8.1f} turns/s  p50 {result['latency_ms'].get('p50', 0):8.2f} ms"
                             f"  cpu/turn {result['cpu_per_turn_ms']:6.2f} ms  errors {result['turns_failed']}")
                    time.sleep(self.profile.pause)

    def soak(self, seconds: float) -> dict[str, Any] | None:
        """Fixed-rate load on supportbot (SQLite) for `seconds`, RSS sampled every second."""
        target = next((t for t in self.targets if t.name == "supportbot-sqlite"), None)
        if target is None:
            return None
        rate = self.profile.soak_rate
        spec = {**base_spec(target, self.profile, self.prompt), "mode": "open", "rate": rate,
                "turns": int(rate * seconds), "deadline": seconds * 3 + 120}
        self.log(f"soak: supportbot-sqlite at {rate:g} turns/s for {seconds:g} s")
        result = measure(self.client, target, spec, rss_interval=1.0)
        result.update({"target": target.name, "rate": rate, "seconds": seconds})
        return result

    def profile_servers(self, seconds: float) -> dict[str, Any]:
        """py-spy profiles of supportbot (SQLite) and the relay (the floor), for the findings."""
        from .profiling import profile_target

        profiles = {}
        for target in self.targets:
            if target.name in ("supportbot-sqlite", "relay"):
                self.log(f"profiling {target.name} for {seconds:g} s")
                profiles[target.name] = profile_target(self.client, target, self.profile, self.prompt, self.work,
                                                       seconds)
        return profiles

    def finish(self) -> None:
        """Record each target's RSS high-water mark, then stop everything."""
        for target in self.targets:
            self.info.setdefault(target.name, {})["peak_rss_hwm_mb"] = round(peak_rss_bytes(target.pids()) / MB, 1)
        if hasattr(self, "client"):
            self.client.close()
        for target in reversed(self.targets):
            target.stop()

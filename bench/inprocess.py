"""CPU per turn of the relay and of supportbot, all driven in this one process: the A/B to judge a change by.

The full run (`python -m bench.run`) measures what a user sees, across processes and sockets; on this
two-core machine its rounds of the same code varied by a third (bench/findings.md 0c), more than most
single changes move. Here both apps are driven through httpx's ASGI transport in one process pinned to the
service core, against the mock upstream (zero latency, 20 chunks) on the other, with the full run's
questions, ten turns a conversation and supportbot's benchmark settings on SQLite. A turn's CPU is this
process's CPU time (`time.process_time()`: every thread, so supportbot's database threads count) divided by
the turns. The driving client costs the same for both, so `extra` (supportbot minus relay) is supportbot's
own work per turn; the ratio is not the full run's, whose relay figure has no client in it. The relay is the
floor of issue 20 (`create` and the client's typed answer); `plain relay` is the same relay reading the answer's
JSON as it is, as supportbot's provider does, and `extra over plain` supportbot's work beyond that.

    python -m bench.inprocess [--turns 400] [--rounds 3] [--concurrency 4] [--json]

Rounds alternate the relays and supportbot; the best round of each is reported (the least disturbed), and the
median beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from .procstat import CpuPlan
from .profiles import QUESTIONS
from .targets import prepare_supportbot, start_mock, supportbot_env

TURNS_PER_CONVERSATION = 10  # as the full run's load generator
UPSTREAM = {"latency_ms": 0.0, "ttft_ms": 0.0, "chunks": 20, "interval_ms": 0.0}


async def drive(app: Any, turns: int, stream: bool, concurrency: int) -> float:
    """CPU milliseconds per turn over `turns` turns, `concurrency` conversations at a time (after a warm-up)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench.test", timeout=60) as client:
        conversations: dict[int, list[Any]] = {}

        async def turn(number: int) -> None:
            slot = number % concurrency
            if slot not in conversations or conversations[slot][2] >= TURNS_PER_CONVERSATION:
                created = (await client.post("/api/conversations")).json()
                conversations[slot] = [created["conversation_id"], created["token"], 0]
            conversation_id, token, _ = conversations[slot]
            conversations[slot][2] += 1
            headers = {"Authorization": f"Bearer {token}"}
            if stream:
                headers["Accept"] = "text/event-stream"
            answer = await client.post(f"/api/conversations/{conversation_id}/messages", headers=headers,
                                       json={"content": QUESTIONS[number % len(QUESTIONS)]})
            if answer.status_code != 200 or (stream and "event: done" not in answer.text):
                raise RuntimeError(f"turn failed: {answer.status_code} {answer.text[:300]}")

        await asyncio.gather(*(turn(n) for n in range(concurrency)))  # connections, caches, first imports
        began = time.process_time()
        for start in range(0, turns, concurrency):
            await asyncio.gather(*(turn(n) for n in range(start, min(start + concurrency, turns))))
        return (time.process_time() - began) * 1000 / turns


async def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    plan = CpuPlan.for_machine()
    mock = start_mock(work, plan, UPSTREAM, workers=1)
    try:
        if plan.service:
            os.sched_setaffinity(0, plan.service)
        upstream = f"http://127.0.0.1:{mock.port}/v1"
        data_dir = work / "supportbot"
        env = supportbot_env(data_dir, f"sqlite:///{data_dir / 'supportbot.db'}", upstream)
        prepare_supportbot(env)
        os.environ.update(env | {"RELAY_BASE_URL": upstream})
        os.chdir(data_dir)
        logging.disable(logging.INFO)  # SUPPORTBOT_LOG_LEVEL=WARNING, as the full run serves it
        from service.api.app import create_app  # after the environment: both read it when imported or built

        from . import relay
        supportbot = create_app()
        results: dict[str, Any] = {}
        async with supportbot.router.lifespan_context(supportbot):
            for mode, stream in (("json", False), ("sse", True)):
                apps = {"relay": relay.app, "plain_relay": relay.plain_app, "supportbot": supportbot}
                rounds: dict[str, list[float]] = {name: [] for name in apps}
                for _ in range(args.rounds):
                    for name, app in apps.items():
                        rounds[name].append(await drive(app, args.turns, stream, args.concurrency))
                best = {name: min(values) for name, values in rounds.items()}
                results[mode] = {
                    "relay_ms": best["relay"], "plain_relay_ms": best["plain_relay"],
                    "supportbot_ms": best["supportbot"], "extra_ms": best["supportbot"] - best["relay"],
                    "extra_over_plain_ms": best["supportbot"] - best["plain_relay"],
                    "median_relay_ms": statistics.median(rounds["relay"]),
                    "median_plain_relay_ms": statistics.median(rounds["plain_relay"]),
                    "median_supportbot_ms": statistics.median(rounds["supportbot"]),
                    "rounds": rounds}
        await relay.client.close()
        return {"turns": args.turns, "rounds": args.rounds, "concurrency": args.concurrency,
                "cpu": plan.describe(), "results": results}
    finally:
        mock.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=400, help="turns per round and target (default 400)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--concurrency", type=int, default=4, help="conversations at a time (default 4)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the database and logs (default: a "
                        "temporary one, removed afterwards)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.turns < 1 or args.rounds < 1 or args.concurrency < 1:
        parser.error("--turns, --rounds and --concurrency must be at least 1")
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        report = asyncio.run(measure(args, args.work.resolve()))
    else:
        with tempfile.TemporaryDirectory(prefix="bench-inprocess-") as work:
            report = asyncio.run(measure(args, Path(work)))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{args.turns} turns x {args.rounds} rounds, {args.concurrency} at a time; {report['cpu']}")
    print("CPU ms per turn: best round (medians)")
    print("mode  relay           plain relay     supportbot      extra  extra over plain")
    for mode, row in report["results"].items():
        print(f"{mode:4}  {row['relay_ms']:5.2f} ({row['median_relay_ms']:5.2f})  "
              f"{row['plain_relay_ms']:5.2f} ({row['median_plain_relay_ms']:5.2f})  "
              f"{row['supportbot_ms']:5.2f} ({row['median_supportbot_ms']:5.2f})  "
              f"{row['extra_ms']:5.2f}  {row['extra_over_plain_ms']:16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

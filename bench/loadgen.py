"""The load generator: conversations sent closed-loop (N at once) or open-loop (a fixed rate).

Runs as its own process, pinned away from the service: `python -m bench.loadgen` reads one JSON run
spec per line on stdin and answers one JSON result per line on stdout, so the harness can read the
service's CPU counters right before and after each run. Two target kinds:

- `openai`: POST /v1/chat/completions with the system prompt and the conversation so far (the mock,
  the passthrough, LiteLLM), so they see the same messages supportbot would send upstream;
- `supportbot`: POST /api/conversations, then POST /api/conversations/{id}/messages per turn (supportbot
  and the relay, bench/relay.py).

With arguments it runs one load against a server started by hand and prints the result, with the CPU
time per turn of the process trees given by `--pids` (how docs/performance.md measures scaling on a larger
machine): `python -m bench.loadgen --port 8000 --concurrency 300 --turns 20000 --pids 1234`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .http_client import Connection, HttpError, Response
from .stats import summarize


@dataclass
class Sample:
    """One turn as the client saw it (times in seconds, relative to the turn's intended start)."""

    latency: float
    ok: bool
    error: str | None = None
    ttft: float | None = None
    max_gap: float | None = None
    chunks: int = 0
    tail: float | None = None
    server: dict[str, float] = field(default_factory=dict)
    escalated: bool = False
    done_at: float = 0.0


@dataclass
class Session:
    """A visitor: one keep-alive connection and the conversation in progress."""

    connection: Connection
    turns_done: int = 0
    conversation_id: str | None = None
    token: str | None = None
    history: list[dict[str, str]] = field(default_factory=list)


def parse_server_timing(value: str) -> dict[str, float]:
    """`db;dur=1.2, upstream;dur=3.4, total;dur=5.6` -> {"db": 1.2, ...} (milliseconds)."""
    result = {}
    for part in value.split(","):
        name, _, rest = part.strip().partition(";")
        if rest.startswith("dur="):
            result[name] = float(rest[4:])
    return result


class Driver:
    """Sends turns of one kind of target, as one run spec asks."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.stream = bool(spec.get("stream"))
        self.questions: list[str] = spec["questions"]
        self.per_conversation = int(spec.get("turns_per_conversation", 10))
        self.extra_headers: dict[str, str] = spec.get("headers", {})
        self.creates: list[float] = []
        self.create_errors = 0

    def session(self) -> Session:
        return Session(Connection(self.spec["host"], int(self.spec["port"])))

    async def turn(self, session: Session, started: float) -> Sample:
        """One user message and its reply; `started` is when it was meant to go out."""
        try:
            if self.spec["kind"] == "supportbot":
                return await self._supportbot_turn(session, started)
            return await self._openai_turn(session, started)
        except (TimeoutError, HttpError, OSError, ValueError, KeyError) as error:
            session.connection.close()
            session.conversation_id = None
            return Sample(time.perf_counter() - started, False, error=type(error).__name__)

    def _question(self, session: Session) -> str:
        return self.questions[session.turns_done % len(self.questions)]

    def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **extra, **self.extra_headers}
        if self.stream:
            headers["Accept"] = "text/event-stream"
        return headers

    async def _supportbot_turn(self, session: Session, started: float) -> Sample:
        if session.conversation_id is None or session.turns_done % self.per_conversation == 0:
            began = time.perf_counter()
            created = await session.connection.request("POST", "/api/conversations", b"", {})
            if created.status != 201:
                self.create_errors += 1
                return Sample(time.perf_counter() - started, False, error=f"create HTTP {created.status}")
            creation = time.perf_counter() - began
            self.creates.append(creation)
            # The turn is timed from when its conversation exists: the peers have no such step.
            started += creation
            payload = json.loads(created.body)
            session.conversation_id, session.token = payload["conversation_id"], payload["token"]
        body = json.dumps({"content": self._question(session)}).encode()
        headers = self._headers({"Authorization": f"Bearer {session.token}"})
        sent = time.perf_counter()
        response = await session.connection.request(
            "POST", f"/api/conversations/{session.conversation_id}/messages", body, headers, stream=self.stream)
        session.turns_done += 1
        if response.status != 200:
            return Sample(time.perf_counter() - started, False, error=f"HTTP {response.status}")
        if self.stream:
            return self._supportbot_stream(response, started, sent)
        turn = json.loads(response.body)
        sample = Sample(time.perf_counter() - started, True, escalated=bool(turn["escalated"]))
        sample.server = parse_server_timing(response.headers.get("server-timing", ""))
        if turn["reply"]["status"] != "ok" or sample.escalated:
            sample.ok, sample.error = False, "escalated" if sample.escalated else f"reply {turn['reply']['status']}"
        return sample

    @staticmethod
    def _supportbot_stream(response: Response, started: float, sent: float) -> Sample:
        deltas = [at for at, event in response.events if event.startswith(b"event: delta")]
        done = [event for _, event in response.events if event.startswith(b"event: done")]
        ended = time.perf_counter()
        sample = _stream_sample(deltas, started, ended)
        if not done:
            sample.ok, sample.error = False, "no done event"
            return sample
        turn = json.loads(done[0].split(b"data: ", 1)[1])
        if turn["escalated"] or turn["reply"]["status"] != "ok":
            sample.ok, sample.error, sample.escalated = False, "escalated or not ok", bool(turn["escalated"])
        return sample

    async def _openai_turn(self, session: Session, started: float) -> Sample:
        if session.turns_done % self.per_conversation == 0:
            session.history = []
        question = self._question(session)
        request: dict[str, Any] = {
            "model": self.spec["model"],
            "messages": [{"role": "system", "content": self.spec["system_prompt"]}, *session.history[-20:],
                         {"role": "user", "content": question}],
            "max_tokens": self.spec["max_tokens"], "temperature": self.spec["temperature"],
            "tools": self.spec["tools"],
        }
        if self.stream:
            request["stream"] = True
            request["stream_options"] = {"include_usage": True}
        headers = self._headers({"Authorization": f"Bearer {self.spec['api_key']}"})
        response = await session.connection.request(
            "POST", "/v1/chat/completions", json.dumps(request).encode(), headers, stream=self.stream)
        session.turns_done += 1
        if response.status != 200:
            return Sample(time.perf_counter() - started, False, error=f"HTTP {response.status}")
        if self.stream:
            deltas, text = [], []
            for at, event in response.events:
                data = event.split(b"data: ", 1)[-1]
                if data == b"[DONE]":
                    continue
                choices = json.loads(data).get("choices") or []
                content = choices[0].get("delta", {}).get("content") if choices else None
                if content:
                    deltas.append(at)
                    text.append(content)
            sample = _stream_sample(deltas, started, time.perf_counter())
            reply = "".join(text)
        else:
            sample = Sample(time.perf_counter() - started, True)
            reply = json.loads(response.body)["choices"][0]["message"]["content"]
        session.history += [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
        return sample


def _stream_sample(deltas: list[float], started: float, ended: float) -> Sample:
    if not deltas:
        return Sample(ended - started, False, error="no content chunks")
    gaps = [b - a for a, b in zip(deltas, deltas[1:], strict=False)]
    return Sample(ended - started, True, ttft=deltas[0] - started, max_gap=max(gaps, default=0.0),
                  chunks=len(deltas), tail=ended - deltas[-1])


async def closed_loop(driver: Driver, concurrency: int, turns: int) -> list[Sample]:
    """`concurrency` visitors, each sending its next message as soon as the reply is in."""
    remaining = turns
    samples: list[Sample] = []

    async def visitor() -> None:
        nonlocal remaining
        session = driver.session()
        while remaining > 0:
            remaining -= 1
            sample = await driver.turn(session, time.perf_counter())
            sample.done_at = time.perf_counter()
            samples.append(sample)
        session.connection.close()

    await asyncio.gather(*(visitor() for _ in range(concurrency)))
    return samples


async def open_loop(driver: Driver, rate: float, turns: int) -> tuple[list[Sample], float]:
    """Turns started at a fixed rate whatever the replies do; latency counts from the scheduled start."""
    idle: deque[Session] = deque()
    samples: list[Sample] = []
    tasks = set()
    worst_lag = 0.0

    async def one(due: float) -> None:
        session = idle.popleft() if idle else driver.session()
        sample = await driver.turn(session, due)
        sample.done_at = time.perf_counter()
        samples.append(sample)
        idle.append(session)

    began = time.perf_counter()
    for n in range(turns):
        due = began + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        worst_lag = max(worst_lag, time.perf_counter() - due)
        task = asyncio.create_task(one(due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*list(tasks))
    for session in idle:
        session.connection.close()
    return samples, worst_lag


def report(samples: list[Sample], wall: float, driver: Driver, cpu: float, extra: dict[str, Any]) -> dict[str, Any]:
    """The run's summary: throughput, errors, latency, streaming and Server-Timing figures."""
    ok = [s for s in samples if s.ok]
    errors = Counter(s.error or "unknown" for s in samples if not s.ok)
    result: dict[str, Any] = {
        "turns_ok": len(ok), "turns_failed": len(samples) - len(ok), "errors": dict(errors),
        "error_rate": (len(samples) - len(ok)) / len(samples) if samples else 0.0,
        "wall_s": wall, "turns_per_s": len(ok) / wall if wall else 0.0,
        "latency_ms": summarize([s.latency * 1000 for s in ok]),
        "client_cpu_s": cpu, "client_cpu_per_turn_ms": cpu / len(ok) * 1000 if ok else None,
        "conversations_created": len(driver.creates),
        "create_latency_ms": summarize([c * 1000 for c in driver.creates]) if driver.creates else None,
        **extra,
    }
    if driver.stream:
        result["ttft_ms"] = summarize([s.ttft * 1000 for s in ok if s.ttft is not None])
        result["max_gap_ms"] = summarize([s.max_gap * 1000 for s in ok if s.max_gap is not None])
        result["tail_ms"] = summarize([s.tail * 1000 for s in ok if s.tail is not None])
        result["chunks_per_turn"] = sum(s.chunks for s in ok) / len(ok) if ok else 0
    timed = [s for s in ok if "total" in s.server]
    if timed:
        result["server_timing_ms"] = {
            name: summarize([s.server.get(name, 0.0) for s in timed]) for name in ("total", "upstream", "db")
        }
        result["server_timing_ms"]["overhead"] = summarize(
            [s.server["total"] - s.server.get("upstream", 0.0) for s in timed])
        result["server_timing_ms"]["client_minus_total"] = summarize(
            [s.latency * 1000 - s.server["total"] for s in timed])
    if extra.get("keep_series"):
        result["series"] = [[round(s.done_at - extra["t0"], 3), round(s.latency * 1000, 2)] for s in samples]
    return result


async def execute(spec: dict[str, Any]) -> dict[str, Any]:
    """One run as the spec says."""
    driver = Driver(spec)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    extra: dict[str, Any] = {"keep_series": bool(spec.get("keep_series")), "t0": began}
    if spec["mode"] == "closed":
        samples = await closed_loop(driver, int(spec["concurrency"]), int(spec["turns"]))
    else:
        samples, lag = await open_loop(driver, float(spec["rate"]), int(spec["turns"]))
        extra["worst_schedule_lag_ms"] = lag * 1000
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    result = report(samples, wall, driver, cpu, extra)
    result.pop("keep_series", None)
    result.pop("t0", None)
    return result


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description="One load against a running "
                                     "supportbot (or relay); without arguments, run specs from stdin.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=150, help="closed loop: conversations at once")
    parser.add_argument("--rate", type=float, help="open loop at this many turns/s instead of a closed loop")
    parser.add_argument("--turns", type=int, default=5000)
    parser.add_argument("--stream", action="store_true", help="ask for Server-Sent Events")
    parser.add_argument("--pids", default="", help="comma-separated pids whose process trees' CPU is the "
                        "server's (supportbot serve, or each replica)")
    parser.add_argument("--other-pids", default="", help="comma-separated pids whose process trees' CPU is "
                        "counted apart (nginx, the PostgreSQL server)")
    return parser.parse_args(argv)


def _tree_window(pids: str) -> tuple[bool, Any]:
    from .procstat import CpuWindow, process_tree

    roots = [int(pid) for pid in pids.split(",") if pid.strip()]
    return bool(roots), CpuWindow(lambda: [pid for root in roots for pid in process_tree(root)])


def run_once(argv: list[str], run: Callable[..., Any]) -> None:
    """One load from the command line; prints the result with the CPU per turn of the pids' trees."""
    from .profiles import QUESTIONS

    args = parse_args(argv)
    spec: dict[str, Any] = {"kind": "supportbot", "host": args.host, "port": args.port, "questions": QUESTIONS,
                            "turns": args.turns, "stream": args.stream}
    spec |= {"mode": "open", "rate": args.rate} if args.rate else {"mode": "closed", "concurrency": args.concurrency}
    windows = {"": _tree_window(args.pids), "other_": _tree_window(args.other_pids)}
    for _, window in windows.values():
        window.start()
    result = run(execute(spec))
    for prefix, (given, window) in windows.items():
        cpu = window.stop()
        if given:
            result[f"{prefix or 'server_'}cpu_s"] = round(cpu, 3)
            result[f"{prefix}cpu_per_turn_ms"] = round(cpu / max(result["turns_ok"], 1) * 1000, 3)
    print(json.dumps(result, indent=1))


def main(argv: list[str] | None = None) -> None:
    """Serve run specs from stdin until it closes, or run the one load the arguments describe."""
    try:
        import uvloop

        run: Callable[..., Any] = uvloop.run
    except ImportError:
        run = asyncio.run
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        run_once(argv, run)
        return
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        spec = json.loads(line)
        result = run(asyncio.wait_for(execute(spec), timeout=float(spec.get("deadline", 900))))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

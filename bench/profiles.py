"""How much load each mode sends: the full run (~30 minutes on 2 cores) and `--quick`, the smoke run."""

from __future__ import annotations

from dataclasses import dataclass, field

# Ordinary product questions: none asks for a person, a refund or another policy topic, none is a
# known issue marked `escalate: true`, and no two are alike, so every turn goes to the model.
QUESTIONS = [
    "My dashboard takes forever to load",
    "How do I export to CSV?",
    "How do I connect Snowflake to my workspace?",
    "Can I schedule a report by email every Monday?",
    "How do I invite a teammate to my workspace?",
    "Where do I create an API key?",
    "How do I change the workspace timezone?",
    "Can I export a dashboard as PDF?",
    "How do I set up Slack notifications for alerts?",
    "How do I duplicate a dashboard?",
]


@dataclass(frozen=True)
class Profile:
    """Run sizes; every figure in the report names the profile that produced it."""

    name: str
    rounds: int
    closed: tuple[tuple[int, int], ...]  # (concurrency, turns per round)
    stream: tuple[int, int]  # (concurrency, turns per round)
    open_rate: float  # turns/s, once with JSON turns and once streamed
    open_turns: int
    crowd: tuple[int, int]  # many concurrent streamed conversations: (concurrency, turns per round)
    warmup_turns: int
    soak_seconds: float
    soak_rate: float
    capacity_turns: int
    retrieval_sizes: tuple[int, ...]
    retrieval_queries: int
    messages: int
    upstream: dict[str, float] = field(default_factory=lambda: {
        "latency_ms": 50.0, "ttft_ms": 100.0, "chunks": 20, "interval_ms": 25.0})
    turns_per_conversation: int = 10
    pause: float = 0.3  # seconds between runs
    profile_seconds: float = 15.0  # py-spy profile per server; 0 = none
    inbox_http: bool = True
    postgres_data: bool = False  # export and inbox on PostgreSQL as well (--postgres-data)
    # supportbot on SQLite also runs as `serve --workers N` in the highest closed-loop stage (saturation).
    workers: int = 2
    # ... and supportbot on PostgreSQL as this many replicas behind nginx (deploy/nginx.conf), in the same stage.
    replicas: int = 2


FULL = Profile(
    name="full", rounds=3, closed=((1, 60), (10, 300), (50, 500), (200, 600)), stream=(10, 120),
    open_rate=50.0, open_turns=600, crowd=(200, 600), warmup_turns=60, soak_seconds=120.0, soak_rate=20.0,
    capacity_turns=4000,
    retrieval_sizes=(100, 1_000, 10_000), retrieval_queries=300, messages=1_000_000,
)
QUICK = Profile(
    name="quick", rounds=1, closed=((1, 5), (10, 20)), stream=(5, 10), open_rate=20.0, open_turns=20, crowd=(20, 20),
    warmup_turns=4, soak_seconds=2.0, soak_rate=10.0, capacity_turns=100, retrieval_sizes=(100, 1_000),
    retrieval_queries=10, messages=3_000,
    upstream={"latency_ms": 10.0, "ttft_ms": 20.0, "chunks": 5, "interval_ms": 10.0},
    pause=0.05, profile_seconds=0.0, inbox_http=False,
)
PROFILES = {p.name: p for p in (FULL, QUICK)}

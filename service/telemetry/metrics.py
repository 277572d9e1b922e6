"""Prometheus metrics: what the service counts as it works, and the gauges read from the database at scrape time.

Counters and histograms are module-level (prometheus-client's default registry), so a hook is one call with
no setup. With `supportbot serve --workers N`, PROMETHEUS_MULTIPROC_DIR (prepared by `prepare_multiprocess_dir`)
makes every worker write its values to files there, and a scrape of any worker sums them all. Gauges that need
a query (outbox backlog, knowledge last sync) are computed by `ServiceState` when scraped, never per turn.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from ..config import Settings
from ..models import KnowledgeSource, OutboxEvent, OutboxStatus, utcnow

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# A `_created` timestamp beside every counter doubles the series; multiprocess mode has none, so neither do we.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Turns take from milliseconds (a fixed text) to a minute (SUPPORTBOT_TURN_TIMEOUT).
TURN_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
FIRST_TOKEN_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
# An action's HTTP call takes from milliseconds to its file's timeout (5 s by default).
ACTION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

TURNS = Counter("supportbot_turns", "Turns answered, by outcome (answered, escalated, partial, failed), provider, "
                "prompt version and experiment arm", ["outcome", "provider", "prompt_version", "arm"])
TURN_SECONDS = Histogram("supportbot_turn_duration_seconds", "From the visitor's message stored to the reply stored",
                         ["mode"], buckets=TURN_BUCKETS)
FIRST_TOKEN_SECONDS = Histogram("supportbot_time_to_first_token_seconds", "From the visitor's message stored to the "
                                "first streamed text sent", ["provider"], buckets=FIRST_TOKEN_BUCKETS)
UPSTREAM_ERRORS = Counter("supportbot_upstream_errors", "Model calls that failed, by kind (timeout, connection, "
                          "rate_limited, server_error, client_error, malformed, stream_broken, circuit_open)",
                          ["kind"])
UPSTREAM_ATTEMPTS = Counter("supportbot_upstream_attempts", "HTTP requests sent to the model, retries included, by "
                            "target (primary, fallback)", ["target"])
ESCALATIONS = Counter("supportbot_escalations", "Conversations handed to a person, by reason", ["reason"])
RATE_LIMITED = Counter("supportbot_rate_limited_requests", "Requests refused with 429, by limit (ip, conversations, "
                       "visitor)", ["scope"])
RATE_LIMIT_FAIL_OPEN = Counter("supportbot_ratelimit_fail_open", "Requests let through unchecked because the rate "
                               "limit storage (Redis) could not be reached", ["scope"])
# Every metric has labels: a labelled one writes nothing until counted, so importing this module (any CLI command)
# creates no file in PROMETHEUS_MULTIPROC_DIR.
LEAK_BLOCKS = Counter("supportbot_leak_blocks", "Replies replaced because they repeated the system prompt, by "
                      "provider", ["provider"])
TOKENS = Counter("supportbot_tokens", "Model tokens, by direction (input, output) and model", ["direction", "model"])
COST = Counter("supportbot_cost_usd", "Model cost in USD at SUPPORTBOT_MODEL_PRICES, by model", ["model"])
WEBHOOK_DELIVERIES = Counter("supportbot_webhook_deliveries", "Handoff webhook delivery attempts, by result "
                             "(delivered, retry, dead)", ["result"])
ACTION_CALLS = Counter("supportbot_action_calls", "Actions the model called, by action and status (ok, rejected, "
                       "failed, invalid_arguments, sign_in_required, awaiting_confirmation, cancelled, over_limit, "
                       "unknown_action)", ["action", "status"])
ACTION_CALL_SECONDS = Histogram("supportbot_action_call_seconds", "How long the team's API took to answer an action "
                                "call (calls made only)", ["action"], buckets=ACTION_BUCKETS)
DB_POOL_IN_USE = Gauge("supportbot_db_pool_connections_in_use", "Database connections checked out of the pool, by "
                       "database (sqlite, postgresql)", ["database"], multiprocess_mode="livesum")

# A labelled child per label set, found without the metric's lock; label values come from small sets.
_children: dict[tuple[object, ...], Any] = {}


def _child(metric: Counter | Histogram | Gauge, *labels: str) -> Any:
    key = (metric, *labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


def turn_outcome(status: str, escalated: bool) -> str:
    """The `outcome` label: failed or partial by the reply's status, else escalated or answered."""
    if status in ("failed", "partial"):
        return status
    return "escalated" if escalated else "answered"


def record_turn(outcome: str, provider: str, prompt_version: str, arm: str | None, mode: str, seconds: float) -> None:
    """Count one stored reply and its duration."""
    _child(TURNS, outcome, provider, prompt_version, arm or "none").inc()
    _child(TURN_SECONDS, mode).observe(seconds)


def record_first_token(provider: str, seconds: float) -> None:
    """The time until a streamed turn's first text went out."""
    _child(FIRST_TOKEN_SECONDS, provider).observe(seconds)


def record_usage(model: str, tokens_in: int | None, tokens_out: int | None, cost: float | None) -> None:
    """Tokens and cost the model reported for one reply."""
    if tokens_in:
        _child(TOKENS, "input", model).inc(tokens_in)
    if tokens_out:
        _child(TOKENS, "output", model).inc(tokens_out)
    if cost:
        _child(COST, model).inc(cost)


def record_upstream_error(kind: str) -> None:
    """A model call failed (after the client's own retries)."""
    _child(UPSTREAM_ERRORS, kind).inc()


def record_upstream_attempt(target: str) -> None:
    """One HTTP request went to the model."""
    _child(UPSTREAM_ATTEMPTS, target).inc()


def record_escalation(reason: str) -> None:
    """A conversation was handed to a person."""
    _child(ESCALATIONS, reason).inc()


def record_rate_limited(scope: str) -> None:
    """A request was refused with 429."""
    _child(RATE_LIMITED, scope).inc()


def record_rate_limit_fail_open(scope: str) -> None:
    """A request went through unchecked: the rate limit storage is down."""
    _child(RATE_LIMIT_FAIL_OPEN, scope).inc()


def record_leak_block(provider: str) -> None:
    """The leak guard replaced a reply."""
    _child(LEAK_BLOCKS, provider).inc()


def record_webhook_delivery(result: str) -> None:
    """A webhook delivery attempt ended: delivered, retry (failed, tried again later), dead (given up) or erased
    (its conversation was erased during the attempt)."""
    _child(WEBHOOK_DELIVERIES, result).inc()


def record_action(action: str, status: str, seconds: float | None) -> None:
    """Count one action call by status, and its HTTP time when a request was made (`seconds` None: not called).

    A name the model made up (status unknown_action) counts as action "unknown": the label set stays the
    team's action files, whatever the model writes."""
    label = "unknown" if status == "unknown_action" else action
    _child(ACTION_CALLS, label, status).inc()
    if seconds is not None:
        _child(ACTION_CALL_SECONDS, label).observe(seconds)


_pooled: weakref.WeakSet[Engine] = weakref.WeakSet()


def watch_pool(engine: Engine) -> None:
    """Keep `supportbot_db_pool_connections_in_use` up to date from the engine's pool events (once per engine)."""
    if engine in _pooled:
        return
    _pooled.add(engine)
    in_use = DB_POOL_IN_USE.labels(engine.dialect.name)
    event.listen(engine, "checkout", lambda *_: in_use.inc())
    event.listen(engine, "checkin", lambda *_: in_use.dec())


class ServiceState(Collector):
    """Gauges read when scraped: outbox backlog and oldest age, dead rows, knowledge entries and last sync."""

    def __init__(self, sessions: sessionmaker[Session], knowledge_entries: Callable[[], int]) -> None:
        self.sessions = sessions
        self.knowledge_entries = knowledge_entries

    def collect(self) -> Iterable[Metric]:
        """One cheap query per table; without the database, `supportbot_database_up` says 0 and the rest is left out."""
        yield _gauge("supportbot_knowledge_entries", "Known issues served (files and imported)",
                     self.knowledge_entries())
        try:
            pending, oldest, dead, last_sync = self._read()
        except Exception as error:  # noqa: BLE001 - a scrape must answer while the database is down
            log.warning("metrics: database unavailable (%s)", type(error).__name__)
            yield _gauge("supportbot_database_up", "1 when the database answered the scrape's queries", 0)
            return
        yield _gauge("supportbot_database_up", "1 when the database answered the scrape's queries", 1)
        yield _gauge("supportbot_outbox_backlog", "Outbox rows waiting to be delivered", pending)
        age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        yield _gauge("supportbot_outbox_oldest_age_seconds", "Age of the oldest undelivered outbox row (0: none)", age)
        yield _gauge("supportbot_outbox_dead", "Outbox rows given up on after their last attempt", dead)
        if last_sync is not None:
            yield _gauge("supportbot_knowledge_last_sync_timestamp_seconds", "When an imported knowledge source "
                         "was last synced (Unix time)", last_sync.timestamp())

    def _read(self) -> tuple[int, Any, int, Any]:
        with self.sessions() as session:
            pending, oldest = session.execute(
                select(func.count(), func.min(OutboxEvent.created_at))
                .where(OutboxEvent.status == OutboxStatus.PENDING)).one()
            dead = session.scalar(select(func.count()).where(OutboxEvent.status == OutboxStatus.DEAD))
            last_sync = session.scalar(select(func.max(KnowledgeSource.last_sync_at)))
        return int(pending), oldest, int(dead or 0), last_sync


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class _ProcessRegistry(Collector):
    """This process's metrics (the default registry), for a registry built per scrape."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def scrape_registry(state: Collector | None) -> CollectorRegistry:
    """Every worker's counters (summed in multiprocess mode, else this process's), then the scrape-time gauges."""
    registry = CollectorRegistry(auto_describe=False)
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ProcessRegistry())
    if state is not None:
        registry.register(state)
    return registry


def exposition(state: Collector | None) -> bytes:
    """The Prometheus text of `scrape_registry`."""
    return generate_latest(scrape_registry(state))


def serve_metrics_port(settings: Settings, port: int) -> None:
    """SUPPORTBOT_METRICS_PORT: the metrics on 127.0.0.1:`port`, no token, from a thread of the serving process
    (with several workers, their supervisor: it sums their files like any worker would)."""
    from ..db import create_db_engine, make_session_factory
    from ..imports.storing import ImportedKnowledge
    from ..knowledge import KnowledgeStore

    sessions = make_session_factory(create_db_engine(settings.resolved_database_url))
    knowledge = KnowledgeStore(settings.knowledge_dir, interval=settings.reload_interval,
                               imported=ImportedKnowledge(sessions, interval=settings.reload_interval))
    state = ServiceState(sessions, lambda: len(knowledge.current().issues))
    start_http_server(port, addr="127.0.0.1", registry=_Scrape(state))
    log.info("metrics on http://127.0.0.1:%s/metrics (no token: bound to this machine only)", port)


class _Scrape(CollectorRegistry):
    """A registry that builds `scrape_registry` afresh at each scrape (workers come and go)."""

    def __init__(self, state: Collector) -> None:
        super().__init__(auto_describe=False)
        self.state = state

    def collect(self) -> Iterator[Metric]:
        yield from scrape_registry(self.state).collect()


def prepare_multiprocess_dir(given: str | None) -> Path:
    """A fresh PROMETHEUS_MULTIPROC_DIR for this start, set in the environment the workers inherit: the operator's
    folder (`given`) emptied of an earlier run's files, else a new temporary one (see `remove_multiprocess_dir`)."""
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    else:
        directory = Path(tempfile.mkdtemp(prefix="supportbot-metrics-"))
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


def remove_multiprocess_dir(directory: Path, created: bool) -> None:
    """Remove the folder `prepare_multiprocess_dir` created (an operator's own folder stays)."""
    if created:
        shutil.rmtree(directory, ignore_errors=True)


def forget_this_process() -> None:
    """On a worker's exit: drop its live gauges (pool in use) from the sum; its counters stay counted."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]

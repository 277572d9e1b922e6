"""Live experiments: what each arm of a split label achieved, with 95 % intervals, and a plain verdict.

The shapes below are the one definition the CLI (`supportbot experiment report`), the admin API
(`GET /admin/api/experiments`), the page (/admin/experiments) and the report's recommendation read.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from .errors import NotFound
from .experiment_figures import Cell, arm_cells
from .experiment_stats import (
    Interval,
    mean_interval,
    newcombe,
    quantile_difference,
    quantile_interval,
    sample_size,
    welch,
    wilson,
)
from .models import ArmStop, Conversation, FineTuneJob
from .prompts import PromptRegistry, Split

Kind = Literal["rate", "mean", "quantile"]
Better = Literal["higher", "lower"]


@dataclass(frozen=True, slots=True)
class Metric:
    """One figure compared across arms: its key (the JSON name), how it reads, and which way is better."""

    key: str  # "resolution", "miss", "escalation", "escalation:<reason>", "thumbs_down", "csat", ...
    title: str  # "Resolution rate"
    kind: Kind
    better: Better


@dataclass(frozen=True, slots=True)
class Estimate:
    """A figure with its 95 % interval and the number of observations behind it.

    Rates are fractions (0.412, not 41.2); `value` is None with no observations.
    """

    value: float | None
    low: float | None
    high: float | None
    n: int


@dataclass(frozen=True, slots=True)
class Difference:
    """An arm's figure minus control's, with its 95 % interval (rates: fractions, so +0.041 is +4.1 points)."""

    value: float | None
    low: float | None
    high: float | None
    significant: bool  # the interval excludes zero


@dataclass(frozen=True, slots=True)
class StopInfo:
    """Why and when an arm was taken out of traffic (an `ArmStop` row not lifted)."""

    metric: str
    stopped_by: str
    stopped_at: datetime
    details: dict[str, object]


@dataclass(frozen=True, slots=True)
class ArmFigures:
    """One arm of the experiment: its version, share of traffic, conversations, and every metric."""

    ref: str  # "support@v3"
    version: str
    weight: int  # its weight in the split (0 when the file no longer lists it)
    control: bool
    conversations: int
    model: str | None  # the model the version pins, if any
    fine_tuned: bool  # the pinned model is the result of a recorded fine-tuning job
    estimates: dict[str, Estimate]  # metric key -> estimate
    differences: dict[str, Difference]  # metric key -> difference to control (empty for control)
    stopped: StopInfo | None = None


@dataclass(frozen=True, slots=True)
class Point:
    """One period of a metric's time series for one arm."""

    start: datetime
    estimate: Estimate


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    """Everything known about one split label: arms, verdicts, the sample still needed, series over time."""

    prompt: str  # "support"
    label: str  # "production"
    split: str  # "v2 90 % / v3 10 %"
    control: str  # control's version
    metrics: tuple[Metric, ...]
    arms: tuple[ArmFigures, ...]
    verdicts: tuple[str, ...]  # "v3 resolves more: +4.1 points [1.2, 7.0]", "not enough data yet: ..."
    needed_per_arm: int | None  # conversations per arm to detect `effect` on resolution (80 % power)
    effect: float  # the difference in resolution rate the sample size is computed for (0.05 = 5 points)
    series: dict[str, dict[str, tuple[Point, ...]]] = field(default_factory=dict)  # metric -> arm ref -> points


RESOLUTION = Metric("resolution", "Resolution rate", "rate", "higher")
MISS = Metric("miss", "Miss rate (answered turns)", "rate", "lower")
ESCALATION = Metric("escalation", "Escalation rate", "rate", "lower")
THUMBS_DOWN = Metric("thumbs_down", "Thumbs-down rate", "rate", "lower")
CSAT = Metric("csat", "CSAT (1-5, rated conversations)", "mean", "higher")
TOKENS = Metric("tokens", "Tokens per conversation", "mean", "lower")
COST = Metric("cost", "Cost per conversation (USD)", "mean", "lower")
LATENCY_P50 = Metric("latency_p50", "Reply latency p50 (ms)", "quantile", "lower")
LATENCY_P95 = Metric("latency_p95", "Reply latency p95 (ms)", "quantile", "lower")
BASE_METRICS = (RESOLUTION, MISS, ESCALATION, THUMBS_DOWN, CSAT, TOKENS, COST, LATENCY_P50, LATENCY_P95)
REASON_PREFIX = "escalation:"
DAILY_UP_TO_DAYS = 14  # an experiment younger than this is charted per day, an older one per week (Monday, UTC)

# What a verdict says when an arm's figure is significantly higher / lower than control's.
_WORDS: dict[str, tuple[str, str]] = {
    "resolution": ("resolves more", "resolves less"),
    "miss": ("misses more", "misses less"),
    "escalation": ("escalates more", "escalates less"),
    "thumbs_down": ("gets more thumbs-down", "gets fewer thumbs-down"),
    "csat": ("is rated higher", "is rated lower"),
    "tokens": ("uses more tokens per conversation", "uses fewer tokens per conversation"),
    "cost": ("costs more per conversation", "costs less per conversation"),
    "latency_p50": ("answers slower (median)", "answers faster (median)"),
    "latency_p95": ("answers slower (95th percentile)", "answers faster (95th percentile)"),
}


def reason_metric(reason: str) -> Metric:
    """The escalation rate for one reason (`escalation:user_request`)."""
    return Metric(f"{REASON_PREFIX}{reason}", f"Escalation rate: {reason}", "rate", "lower")


def check_label(prompts: PromptRegistry, label: str) -> None:
    """NotFound, with what exists, when no prompt has `label` or it splits no traffic."""
    labels = {lab for named in prompts.labels().values() for lab in named}
    if label not in labels:
        known = ", ".join(sorted(labels)) or "none"
        raise NotFound(f"no prompt has a label '{label}' (labels: {known})", code="unknown_label")
    if not any(label in splits for splits in prompts.splits().values()):
        raise NotFound(f"label '{label}' serves one version: it splits no traffic, so there is no experiment "
                       f"(split it in labels.yaml, e.g. '{label}: {{v2: 90, v3: 10}}')", code="no_split")


def experiment_reports(sessions: sessionmaker[Session], prompts: PromptRegistry, *, label: str | None = None,
                       now: datetime | None = None, effect: float = 0.05) -> list[ExperimentReport]:
    """One report per label that splits traffic (over every prompt name); `label` keeps that label's only."""
    now = now or datetime.now(UTC)
    if label is not None:
        check_label(prompts, label)
    versions = prompts.versions()
    with sessions() as session:
        tuned = {model for model in session.scalars(select(FineTuneJob.fine_tuned_model)) if model}
        return [_report(session, name, lab, split, versions.get(name, {}), tuned, now, effect)
                for name, splits in sorted(prompts.splits().items())
                for lab, split in sorted(splits.items()) if label is None or lab == label]


def _report(session: Session, name: str, label: str, split: Split, versions: dict[str, Any], tuned: set[str],
            now: datetime, effect: float) -> ExperimentReport:
    weights = dict(split.weights)
    # Arms that conversations were assigned but the file no longer lists stay in the report, at weight 0.
    stored = session.scalars(select(Conversation.arm).where(Conversation.arm.like(f"{name}@%")).distinct())
    order = [version for version, _ in split.weights]
    order += sorted({ref.partition("@")[2] for ref in stored if ref} - set(order))
    cells = arm_cells(session, [f"{name}@{version}" for version in order])
    totals = {version: _total(cells.get(f"{name}@{version}", {})) for version in order}
    reasons = sorted({reason for total in totals.values() for reason in total.reasons})
    metrics = (*BASE_METRICS, *(reason_metric(reason) for reason in reasons))
    stops = _active_stops(session, name, label)
    control = totals[split.control]
    arms = []
    for version in order:
        total = totals[version]
        pinned = getattr(versions.get(version), "model", None)
        is_control = version == split.control
        arms.append(ArmFigures(
            ref=f"{name}@{version}", version=version, weight=weights.get(version, 0), control=is_control,
            conversations=total.conversations, model=pinned, fine_tuned=pinned in tuned,
            estimates={m.key: _estimate(m, total) for m in metrics},
            differences={} if is_control else {m.key: _difference(m, control, total) for m in metrics},
            stopped=stops.get(version)))
    base_rate = _estimate(RESOLUTION, control).value
    needed = sample_size(base_rate, effect)
    return ExperimentReport(
        prompt=name, label=label, split=split.describe(), control=split.control, metrics=metrics,
        arms=tuple(arms), verdicts=_verdicts(arms, metrics, needed, effect), needed_per_arm=needed, effect=effect,
        series=_series(cells, order, name, now))


def _total(days: dict[date, Cell]) -> Cell:
    total = Cell()
    for cell in days.values():
        total.add(cell)
    return total


def _active_stops(session: Session, name: str, label: str) -> dict[str, StopInfo]:
    rows = session.scalars(select(ArmStop).where(ArmStop.prompt == name, ArmStop.label == label,
                                                 ArmStop.lifted_at.is_(None)).order_by(ArmStop.id))
    return {row.version: StopInfo(row.metric, row.stopped_by, row.stopped_at, dict(row.details or {}))
            for row in rows}


def _counts(metric: Metric, cell: Cell) -> tuple[int, int]:
    """(successes, trials) of a rate metric."""
    if metric.key == "resolution":
        return cell.resolved, cell.conversations
    if metric.key == "miss":
        return cell.misses, cell.replies
    if metric.key == "escalation":
        return cell.escalated, cell.conversations
    if metric.key == "thumbs_down":
        return cell.thumbs_down, cell.conversations
    if metric.key.startswith(REASON_PREFIX):
        return cell.reasons.get(metric.key[len(REASON_PREFIX):], 0), cell.conversations
    raise KeyError(metric.key)


def _moments(metric: Metric, cell: Cell) -> Any:
    return {"csat": cell.csat, "tokens": cell.tokens, "cost": cell.cost}[metric.key]


def _quantile(metric: Metric) -> float:
    return {"latency_p50": 0.5, "latency_p95": 0.95}[metric.key]


def _estimate(metric: Metric, cell: Cell) -> Estimate:
    interval: Interval
    if metric.kind == "rate":
        successes, n = _counts(metric, cell)
        interval = wilson(successes, n)
    elif metric.kind == "mean":
        values = _moments(metric, cell)
        n, interval = values.n, _within(mean_interval(values), *_RANGES.get(metric.key, (0.0, None)))
    else:
        n = sum(cell.latency.values())
        interval = quantile_interval(cell.latency, _quantile(metric))
    return Estimate(*interval, n=n)


_RANGES: dict[str, tuple[float, float | None]] = {"csat": (1.0, 5.0)}  # else 0 to no limit (tokens, cost)


def _within(interval: Interval, low: float, high: float | None) -> Interval:
    """A t interval kept to the values the figure can take (a mean CSAT above 5 is no possibility)."""
    value, lower, upper = interval
    lower = None if lower is None else max(low, lower)
    upper = None if upper is None else (upper if high is None else min(high, upper))
    return value, lower, upper


def _difference(metric: Metric, control: Cell, arm: Cell) -> Difference:
    interval: Interval
    if metric.kind == "rate":
        interval = newcombe(_counts(metric, control), _counts(metric, arm))
    elif metric.kind == "mean":
        interval = welch(_moments(metric, control), _moments(metric, arm))
    else:
        interval = quantile_difference(control.latency, arm.latency, _quantile(metric))
    value, low, high = interval
    significant = low is not None and high is not None and (low > 0 or high < 0)
    return Difference(value, low, high, significant)


def _amount(metric: Metric, difference: Difference) -> str:
    """`+4.1 points [1.2, 7.0]`, `-120 tokens [-160, -80]`, ..."""
    value, low, high = difference.value or 0.0, difference.low or 0.0, difference.high or 0.0
    if metric.kind == "rate":
        return f"{value * 100:+.1f} points [{low * 100:.1f}, {high * 100:.1f}]"
    unit, digits = {"csat": ("stars", 2), "tokens": ("tokens", 0), "cost": ("USD", 4)}.get(metric.key, ("ms", 0))
    return f"{value:+,.{digits}f} {unit} [{low:,.{digits}f}, {high:,.{digits}f}]"


def _verdicts(arms: list[ArmFigures], metrics: tuple[Metric, ...], needed: int, effect: float) -> tuple[str, ...]:
    """Plain sentences: what differs significantly from control, else how much more data is needed."""
    control = next(arm for arm in arms if arm.control)
    verdicts = []
    for arm in arms:
        if arm.control:
            continue
        if arm.stopped is not None:
            verdicts.append(f"{arm.version} was stopped by {arm.stopped.stopped_by} on "
                            f"{arm.stopped.stopped_at:%Y-%m-%d %H:%M} UTC ({arm.stopped.metric}); new conversations "
                            f"get {control.version}")
        for metric in metrics:
            difference = arm.differences[metric.key]
            if difference.significant and difference.value is not None:
                more, less = _WORDS.get(metric.key, (f"escalates more for {metric.key[len(REASON_PREFIX):]}",
                                                     f"escalates less for {metric.key[len(REASON_PREFIX):]}"))
                verdicts.append(f"{arm.version} {more if difference.value > 0 else less}: "
                                f"{_amount(metric, difference)}")
        if arm.differences["resolution"].significant:
            continue
        have = min(arm.conversations, control.conversations)
        if have < needed:
            verdicts.append(f"{arm.version} vs {control.version}: not enough data yet: about {needed - have:,} more "
                            f"conversations per arm (to detect {effect * 100:g} points of resolution)")
        else:
            verdicts.append(f"{arm.version} vs {control.version}: no significant difference in resolution, with "
                            f"enough data to detect {effect * 100:g} points: "
                            f"{_amount(RESOLUTION, arm.differences['resolution'])}")
    return tuple(verdicts)


def _series(cells: dict[str, dict[date, Cell]], order: list[str], name: str,
            now: datetime) -> dict[str, dict[str, tuple[Point, ...]]]:
    """Per base metric and arm: one estimate per day (young experiments) or per week (Monday, UTC)."""
    days = [day for per_day in cells.values() for day in per_day]
    if not days:
        return {}
    daily = (now.date() - min(days)).days < DAILY_UP_TO_DAYS
    series: dict[str, dict[str, tuple[Point, ...]]] = {metric.key: {} for metric in BASE_METRICS}
    for version in order:
        ref = f"{name}@{version}"
        periods: dict[date, Cell] = {}
        for day, cell in cells.get(ref, {}).items():
            start = day if daily else day - timedelta(days=day.weekday())
            periods.setdefault(start, Cell()).add(cell)
        for metric in BASE_METRICS:
            series[metric.key][ref] = tuple(
                Point(datetime.combine(start, time(), UTC), _estimate(metric, periods[start]))
                for start in sorted(periods))
    return series


def report_json(report: ExperimentReport) -> dict[str, Any]:
    """The report as JSON-ready data (times in ISO 8601, rates as fractions)."""
    data = _plain(report)
    assert isinstance(data, dict)
    return data


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value

"""Live experiments: what each arm of a split label achieved, with 95 % intervals, and a plain verdict.

The shapes below are the one definition the CLI (`supportbot experiment report`), the admin API
(`GET /admin/api/experiments`), the page (/admin/experiments) and the report's recommendation read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

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

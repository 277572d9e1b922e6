"""Experiment reports built by hand, for the page and the recommendation before (and besides) the real engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.experiments import (
    ArmFigures,
    Difference,
    Estimate,
    ExperimentReport,
    Metric,
    Point,
    StopInfo,
)

RESOLUTION = Metric("resolution", "Resolution rate", "rate", "higher")
ESCALATION = Metric("escalation", "Escalation rate", "rate", "lower")
COST = Metric("cost", "Cost per conversation", "mean", "lower")
METRICS = (RESOLUTION, ESCALATION, COST)
START = datetime(2026, 11, 2, tzinfo=UTC)


def estimate(value: float | None, half: float = 0.03, n: int = 400) -> Estimate:
    """A figure with a symmetric interval `value ± half`."""
    if value is None:
        return Estimate(None, None, None, 0)
    return Estimate(value, value - half, value + half, n)


def difference(value: float, low: float, high: float) -> Difference:
    """A difference; significant when its interval excludes zero."""
    return Difference(value, low, high, significant=low > 0 or high < 0)


def arm(version: str, *, control: bool = False, weight: int = 50, conversations: int = 400,
        resolution: float = 0.60, cost: float = 0.010, fine_tuned: bool = False, model: str | None = None,
        differences: dict[str, Difference] | None = None, stopped: StopInfo | None = None) -> ArmFigures:
    """One arm with resolution, escalation and cost figures."""
    return ArmFigures(
        ref=f"support@{version}", version=version, weight=weight, control=control, conversations=conversations,
        model=model, fine_tuned=fine_tuned,
        estimates={"resolution": estimate(resolution, n=conversations),
                   "escalation": estimate(1 - resolution, n=conversations),
                   "cost": estimate(cost, half=cost / 10, n=conversations)},
        differences=differences or {}, stopped=stopped)


def report(*arms: ArmFigures, verdicts: tuple[str, ...] = (), needed_per_arm: int | None = 900,
           label: str = "production", weeks: int = 3) -> ExperimentReport:
    """A report over `arms` (the first is control) with `weeks` weekly points per arm and metric."""
    control = arms[0].version
    series = {metric.key: {a.ref: tuple(Point(START + timedelta(weeks=w), a.estimates[metric.key])
                                        for w in range(weeks)) for a in arms} for metric in METRICS}
    split = " / ".join(f"{a.version} {a.weight} %" for a in arms)
    return ExperimentReport(prompt="support", label=label, split=split, control=control, metrics=METRICS,
                            arms=arms, verdicts=verdicts, needed_per_arm=needed_per_arm, effect=0.05,
                            series=series)


def fine_tuned_winner() -> ExperimentReport:
    """v9, pinned to a fine-tuned model, resolves 6 points more than v2 at 40 % lower cost."""
    return report(
        arm("v2", control=True, resolution=0.60, cost=0.010),
        arm("v9", resolution=0.66, cost=0.006, fine_tuned=True, model="ft:gpt-4o-mini:acme::abc",
            differences={"resolution": difference(0.060, 0.021, 0.099),
                         "escalation": difference(-0.060, -0.099, -0.021),
                         "cost": difference(-0.004, -0.0059, -0.0021)}),
        verdicts=("v9 resolves more: +6.0 points [2.1, 9.9]",), needed_per_arm=300)

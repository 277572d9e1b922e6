"""Experiment figures in words: the cells of /admin/experiments, the charts' labels and the report's sentences.

Rates read in percent and their differences in points ("+4.1 points [1.2, 7.0]"); money in dollars; latency
in milliseconds. Every figure carries its 95 % interval in brackets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .experiments import ArmFigures, Difference, Estimate, ExperimentReport, Metric

RESOLUTION = "resolution"  # the metric the verdicts and the sample size are about
COST = "cost"  # cost per conversation, USD
NO_VALUE = "–"
_UNKNOWN = Difference(None, None, None, significant=False)


@dataclass(frozen=True, slots=True)
class Reading:
    """What the live experiments advise, in the report recommendation's terms."""

    verdict: str  # promote_arm | keep_prompting | not_enough_data
    headline: str
    reasons: list[str]
    next_steps: list[str]


def figure(metric: Metric, value: float | None) -> str:
    """One value as the metric reads: `41.2 %`, `$0.0123`, `1,240 ms`, `4.31`."""
    if value is None:
        return NO_VALUE
    if metric.kind == "rate":
        return f"{value * 100:.1f} %"
    if _is_money(metric):
        return f"${value:,.4f}"
    if "latency" in metric.key:
        return f"{value:,.0f} ms"
    if metric.key == "tokens":
        return f"{value:,.0f}"
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


def estimate_text(metric: Metric, estimate: Estimate) -> str:
    """`41.2 % [38.0, 44.5], n = 120`; with no observations, `no data`."""
    if estimate.value is None:
        return "no data"
    return f"{figure(metric, estimate.value)} {_interval(metric, estimate.low, estimate.high)}, n = {estimate.n:,}"


def difference_text(metric: Metric, difference: Difference) -> str:
    """`+4.1 points [1.2, 7.0]` for a rate, `-$0.0040 [-$0.0059, -$0.0021]` for money."""
    if difference.value is None:
        return NO_VALUE
    bounds = ", ".join(_signed(metric, v, unit=False) for v in (difference.low, difference.high) if v is not None)
    return f"{_signed(metric, difference.value)}" + (f" [{bounds}]" if bounds else "")


def judgement(metric: Metric, difference: Difference) -> str:
    """In words, not colour: `significantly better`, `significantly worse` or `no significant difference`."""
    if difference.value is None:
        return "no data"
    if not difference.significant:
        return "no significant difference"
    return "significantly better" if _improves(metric, difference) else "significantly worse"


def judgement_class(metric: Metric, difference: Difference) -> str:
    """The badge class that goes with `judgement`: `good`, `bad` or `` (the words carry the meaning)."""
    if difference.value is None or not difference.significant:
        return ""
    return "good" if _improves(metric, difference) else "bad"


def more_needed(report: ExperimentReport) -> int | None:
    """Conversations each arm in traffic still needs to detect `report.effect` on resolution (0 when enough)."""
    if report.needed_per_arm is None:
        return None
    serving = [arm.conversations for arm in report.arms if arm.weight > 0 and arm.stopped is None]
    return max(0, report.needed_per_arm - min(serving, default=0))


def undecided(report: ExperimentReport) -> bool:
    """Some arm in traffic does not yet differ significantly from control in resolution."""
    return any(not (arm.differences.get(RESOLUTION) or _UNKNOWN).significant for arm in report.arms
               if not arm.control and arm.weight > 0 and arm.stopped is None)


def arm_name(arm: ArmFigures) -> str:
    """`fine-tuned arm v9`, `arm v3`."""
    return f"{'fine-tuned arm' if arm.fine_tuned else 'arm'} {arm.version}"


def resolution_sentence(report: ExperimentReport, arm: ArmFigures) -> str:
    """`fine-tuned arm v9 resolves 6.0 points more [2.1, 9.9] than v2 at 40 % lower cost per conversation
    (-$0.0040 [-$0.0059, -$0.0021])`; cost is named only when its difference is significant."""
    metric = metric_of(report, RESOLUTION)
    difference = arm.differences.get(RESOLUTION)
    if metric is None or difference is None or difference.value is None:
        return f"{arm_name(arm)} has no resolution figures yet"
    more = difference.value >= 0
    low, high = difference.low, difference.high
    # "4.0 points less [1.0, 7.0]": the interval reads in the sentence's direction.
    bounds = _interval(metric, low, high) if more else _interval(metric, _negated(high), _negated(low))
    return (f"{arm_name(arm)} resolves {abs(difference.value) * 100:.1f} points {'more' if more else 'less'} {bounds} "
            f"than {report.control} {cost_clause(report, arm)}")


def cost_clause(report: ExperimentReport, arm: ArmFigures) -> str:
    """`at 40 % lower cost per conversation (-$0.0040 [...])`, or `at similar cost` when not significant."""
    metric = metric_of(report, COST)
    difference = arm.differences.get(COST)
    control = next((a for a in report.arms if a.control), None)
    base = control.estimates.get(COST) if control and metric else None
    if metric is None or difference is None or difference.value is None or not difference.significant:
        return "at similar cost"
    absolute = difference_text(metric, difference)
    if base is None or not base.value:
        return f"at a cost per conversation {absolute}"
    share = abs(difference.value) / base.value * 100
    return f"at {share:.0f} % {'lower' if difference.value < 0 else 'higher'} cost per conversation ({absolute})"


def metric_of(report: ExperimentReport, key: str) -> Metric | None:
    """The report's metric named `key`, if it measures it."""
    return next((metric for metric in report.metrics if metric.key == key), None)


def _improves(metric: Metric, difference: Difference) -> bool:
    return ((difference.value or 0.0) > 0) == (metric.better == "higher")


def _negated(value: float | None) -> float | None:
    return None if value is None else -value


def _is_money(metric: Metric) -> bool:
    return metric.key == COST or metric.key.startswith(f"{COST}_") or "cost" in metric.title.lower()


def _interval(metric: Metric, low: float | None, high: float | None) -> str:
    """`[38.0, 44.5]` (rates in percent or points, without the unit again), `[$0.0021, $0.0059]`."""
    if low is None or high is None:
        return ""
    if metric.kind == "rate":
        return f"[{low * 100:.1f}, {high * 100:.1f}]"
    return f"[{figure(metric, low)}, {figure(metric, high)}]"


def _signed(metric: Metric, value: float | None, *, unit: bool = True) -> str:
    """A difference with its sign (`+4.1 points`, `-$0.0040`); as an interval's bound, only a minus (`-2.1`)."""
    if value is None:
        return NO_VALUE
    sign = "-" if value < 0 else ("+" if unit else "")
    if metric.kind == "rate":
        return f"{sign}{abs(value) * 100:.1f}" + (" points" if unit else "")
    return sign + figure(metric, abs(value))


def read_experiments(experiments: Sequence[ExperimentReport]) -> Reading | None:
    """Promote the arm that resolves significantly most above control (a fine-tuned one on a tie); keep control when
    every challenger does worse; else say how many more conversations each arm needs. None: no experiment."""
    better, worse, pending = _sorted_arms(experiments)
    reasons = [_arm_reason(report, arm, pending=(report, arm) in pending) for report, arm in better + worse + pending]
    if better:
        report, arm = max(better, key=lambda pair: (pair[1].differences[RESOLUTION].value or 0, pair[1].fine_tuned))
        advice = "promote it if the extra resolutions are worth the cost" if _costs_more(report, arm) else "promote it"
        return Reading("promote_arm", _capital(f"{resolution_sentence(report, arm)}; {advice}"), reasons, [
            f"give it every new conversation: in prompts/{report.prompt}/labels.yaml write "
            f"`{report.label}: {arm.version}`", "follow the arms on /admin/experiments"])
    if pending:
        more = [m for m in (more_needed(report) for report, _ in pending) if m is not None]
        if more and max(more) == 0:
            return Reading("keep_prompting", "Keep prompting: no arm resolves clearly more than control, with "
                           "enough conversations to see it", reasons,
                           ["try another prompt version, or fine-tune on the corrected misses"])
        headline = f"about {max(more):,} more conversations per arm" if more else "keep the split running"
        return Reading("not_enough_data", f"Not enough data yet: {headline}", reasons,
                       ["keep the split running and follow it on /admin/experiments"])
    if worse:
        report, arm = worse[0]
        finding = (f"{arm_name(arm)} was stopped by the guard" if arm.stopped
                   else resolution_sentence(report, arm))
        return Reading("keep_prompting", f"Keep prompting: {finding}; keep {report.control}", reasons,
                       [f"end the split: in prompts/{report.prompt}/labels.yaml write "
                        f"`{report.label}: {report.control}`"])
    return None


Arm = tuple[ExperimentReport, ArmFigures]


def _sorted_arms(experiments: Sequence[ExperimentReport]) -> tuple[list[Arm], list[Arm], list[Arm]]:
    """The challengers that resolve significantly more, those worse or stopped, and those not decided yet."""
    better: list[Arm] = []
    worse: list[Arm] = []
    pending: list[Arm] = []
    for report in experiments:
        for arm in report.arms:
            if arm.control or (arm.weight == 0 and arm.conversations == 0):
                continue
            difference = arm.differences.get(RESOLUTION)
            if arm.stopped is not None:
                worse.append((report, arm))
            elif difference and difference.significant and difference.value is not None:
                (better if difference.value > 0 else worse).append((report, arm))
            else:
                pending.append((report, arm))
    return better, worse, pending


def _costs_more(report: ExperimentReport, arm: ArmFigures) -> bool:
    """The arm's cost per conversation is significantly higher than control's."""
    difference = arm.differences.get(COST)
    return bool(difference and difference.significant and (difference.value or 0.0) > 0)


def _arm_reason(report: ExperimentReport, arm: ArmFigures, *, pending: bool) -> str:
    """One arm's finding, naming its experiment."""
    where = f"{report.prompt}@{report.label} ({report.split})"
    if arm.stopped is not None:
        return (f"{where}: {arm_name(arm)} was stopped on {arm.stopped.stopped_at:%Y-%m-%d} by "
                f"{arm.stopped.stopped_by} ({arm.stopped.metric} worse than control); its traffic went back to "
                f"{report.control}")
    if not pending:
        return f"{where}: {resolution_sentence(report, arm)}"
    control = next((a.conversations for a in report.arms if a.control), 0)
    metric, difference = metric_of(report, RESOLUTION), arm.differences.get(RESOLUTION)
    so_far = (f"resolution {difference_text(metric, difference)} against {report.control}"
              if metric and difference and difference.value is not None else "no resolution figures yet")
    return (f"{where}: {arm_name(arm)}: {so_far}, not significant yet ({arm.conversations:,} and {control:,} "
            "conversations)")


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]

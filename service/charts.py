"""Server-rendered SVG charts for the admin pages: readable without JavaScript."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from html import escape

from .experiment_text import estimate_text
from .experiments import ExperimentReport, Metric, Point

COLOURS = ("#3d5afe", "#e65100", "#2e7d32", "#8e24aa", "#00838f", "#c62828")
RATE_STEPS = (0.01, 0.02, 0.05, 0.1, 0.2)  # gridline spacing of a rate axis: the finest giving at most 5 steps


def rate_chart(series: dict[str, list[tuple[datetime, float, float]]], width: int = 720,
               height: int = 260) -> str:
    """Miss rate (solid) and escalation rate (dashed) per prompt version over time, as an SVG string."""
    left, right, top, bottom = 48, 150, 16, 32
    points = [p for values in series.values() for p in values]
    if not points:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="60" role="img" '
                'aria-label="No data yet"><text x="10" y="35" font-size="13">'
                "No replies in this period yet.</text></svg>")
    start = min(p[0] for p in points).timestamp()
    end = max(p[0] for p in points).timestamp()
    span = max(end - start, 1.0)
    peak = max(0.05, max(max(p[1], p[2]) for p in points))
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(when: datetime) -> float:
        return left + (when.timestamp() - start) / span * plot_w if end > start else left + plot_w / 2

    def y(rate: float) -> float:
        return top + plot_h - rate / peak * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="Miss rate and escalation rate per prompt version">',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#e4e7eb"/>']
    for step in range(5):
        rate = peak * step / 4
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(rate):.1f}" y2="{y(rate):.1f}" stroke="#f0f2f5"/>'
                     f'<text x="{left - 6}" y="{y(rate) + 4:.1f}" font-size="11" text-anchor="end">{rate:.0%}</text>')
    for index, (ref, values) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        for label, dash, rates in (("miss", "", [p[1] for p in values]),
                                   ("escalation", ' stroke-dasharray="5 4"', [p[2] for p in values])):
            coords = " ".join(f"{x(p[0]):.1f},{y(rate):.1f}" for p, rate in zip(values, rates, strict=True))
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
            parts += [f'<circle cx="{x(p[0]):.1f}" cy="{y(rate):.1f}" r="3" fill="{colour}">'
                      f'<title>{escape(ref)} {label} rate, week of {p[0]:%Y-%m-%d}: {rate:.1%}</title></circle>'
                      for p, rate in zip(values, rates, strict=True)]
        legend_y = top + 14 + index * 34
        legend_x = left + plot_w + 12
        parts.append(f'<text x="{legend_x}" y="{legend_y}" font-size="12" fill="{colour}">{escape(ref)}</text>'
                     f'<text x="{legend_x}" y="{legend_y + 14}" font-size="10" fill="#616e7c">'
                     "solid: misses, dashed: escalations</text>")
    first, last = min(p[0] for p in points), max(p[0] for p in points)
    parts.append(f'<text x="{left}" y="{height - 10}" font-size="11">{first:%Y-%m-%d}</text>'
                 f'<text x="{left + plot_w}" y="{height - 10}" font-size="11" text-anchor="end">{last:%Y-%m-%d}</text>')
    parts.append("</svg>")
    return "".join(parts)


def interval_chart(metric: Metric, series: Mapping[str, Sequence[Point]], width: int = 720,
                   height: int = 240) -> str:
    """One metric per arm over time: a line through each period's value inside its shaded 95 % interval."""
    title = f"{metric.title} per arm over time, with 95 % intervals"
    drawn = {ref: [p for p in points if p.estimate.value is not None] for ref, points in series.items()}
    values = [v for points in drawn.values() for p in points for v in _bounds(p)]
    if not values:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="60" role="img" '
                f'aria-label="{escape(title)}: no data yet"><text x="10" y="35" font-size="13">'
                "No data in this period yet.</text></svg>")
    left, right, top, bottom = 64, 150, 16, 32
    plot_w, plot_h = width - left - right, height - top - bottom
    when = [p.start.timestamp() for points in drawn.values() for p in points]
    start, span = min(when), max(max(when) - min(when), 1.0)
    floor, peak, divisions = _axis(metric, values)

    def x(moment: datetime) -> float:
        return left + (moment.timestamp() - start) / span * plot_w if max(when) > start else left + plot_w / 2

    def y(value: float) -> float:
        return top + plot_h - (value - floor) / (peak - floor) * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="{escape(title)}">',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#e4e7eb"/>']
    for step in range(divisions + 1):
        tick = floor + (peak - floor) * step / divisions
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
                     f'stroke="#f0f2f5"/><text x="{left - 6}" y="{y(tick) + 4:.1f}" font-size="11" '
                     f'text-anchor="end">{escape(_tick(metric, tick))}</text>')
    for index, (ref, points) in enumerate(drawn.items()):
        colour = COLOURS[index % len(COLOURS)]
        # Arms a few pixels apart, so intervals of the same period do not hide each other.
        at = partial(_shifted, x, (index - (len(drawn) - 1) / 2) * 6)
        parts += [_band(run, at, y, colour) for run in _with_intervals(points)]
        coords = " ".join(f"{at(p.start):.1f},{y(p.estimate.value or 0.0):.1f}" for p in points)
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts += [f'<circle cx="{at(p.start):.1f}" cy="{y(p.estimate.value or 0.0):.1f}" r="3" fill="{colour}">'
                  f"<title>{escape(_point_label(metric, ref, p))}</title></circle>" for p in points]
        legend_y = top + 14 + index * 20
        parts.append(f'<text x="{left + plot_w + 12}" y="{legend_y}" font-size="12" fill="{colour}">'
                     f"{escape(ref)}</text>")
    first, last = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(max(when), UTC)
    parts.append(f'<text x="{left}" y="{height - 10}" font-size="11">{first:%Y-%m-%d}</text>'
                 f'<text x="{left + plot_w}" y="{height - 10}" font-size="11" text-anchor="end">{last:%Y-%m-%d}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _shifted(x: Callable[[datetime], float], shift: float, moment: datetime) -> float:
    return x(moment) + shift


def _bounds(point: Point) -> list[float]:
    estimate = point.estimate
    return [v for v in (estimate.value, estimate.low, estimate.high) if v is not None]


def _axis(metric: Metric, values: list[float]) -> tuple[float, float, int]:
    """The y axis (bottom, top, divisions): rates from 0 up to a round share in round steps, at most 100 %;
    other figures a little around their values, in four steps."""
    if metric.kind == "rate":
        highest = max(max(values), 0.05)
        step = next(s for s in RATE_STEPS if highest / s <= 5 + 1e-9)
        divisions = math.ceil(highest / step - 1e-9)
        return 0.0, min(1.0, divisions * step), divisions
    low, high = min(values), max(values)
    pad = (high - low) * 0.1 or abs(high) * 0.1 or 1.0
    return (max(0.0, low - pad) if low >= 0 else low - pad), high + pad, 4


def _with_intervals(points: list[Point]) -> list[list[Point]]:
    """Runs of consecutive points that have both interval bounds (a band is not drawn across a gap)."""
    runs: list[list[Point]] = [[]]
    for point in points:
        if point.estimate.low is None or point.estimate.high is None:
            runs.append([])
        else:
            runs[-1].append(point)
    return [run for run in runs if run]


def _band(run: list[Point], x: Callable[[datetime], float], y: Callable[[float], float], colour: str) -> str:
    """The shaded interval of a run of periods; a single period's is a bar."""
    if len(run) == 1:
        at, estimate = x(run[0].start), run[0].estimate
        return (f'<line x1="{at:.1f}" x2="{at:.1f}" y1="{y(estimate.high or 0.0):.1f}" '
                f'y2="{y(estimate.low or 0.0):.1f}" stroke="{colour}" stroke-opacity="0.35" stroke-width="6"/>')
    upper = [f"{x(p.start):.1f},{y(p.estimate.high or 0.0):.1f}" for p in run]
    lower = [f"{x(p.start):.1f},{y(p.estimate.low or 0.0):.1f}" for p in reversed(run)]
    return f'<polygon points="{" ".join(upper + lower)}" fill="{colour}" fill-opacity="0.15" stroke="none"/>'


def _tick(metric: Metric, value: float) -> str:
    return f"{value:.0%}" if metric.kind == "rate" else f"{value:,.4g}"


def _point_label(metric: Metric, ref: str, point: Point) -> str:
    """`support@v3 Resolution rate, from 2026-11-02: 41.2 % [38.0, 44.5], 120 observations`."""
    return f"{ref} {metric.title}, from {point.start:%Y-%m-%d}: {estimate_text(metric, point.estimate)}"


def experiment_charts(report: ExperimentReport) -> list[tuple[Metric, str]]:
    """One chart per metric the experiment has a series for, in the report's order of metrics."""
    return [(metric, interval_chart(metric, report.series[metric.key])) for metric in report.metrics
            if metric.key in report.series]

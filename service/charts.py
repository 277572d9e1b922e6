"""Server-rendered SVG charts for the admin pages: readable without JavaScript."""

from __future__ import annotations

from datetime import datetime
from html import escape

COLOURS = ("#3d5afe", "#e65100", "#2e7d32", "#8e24aa", "#00838f", "#c62828")


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

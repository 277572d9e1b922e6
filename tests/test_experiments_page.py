"""/admin/experiments: each arm's figures with 95 % intervals, differences in words, verdicts and a chart per
metric; rendered from hand-built reports, then through the real app on SQLite and PostgreSQL."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Any

from service import experiment_text
from service.api.admin_pages import templates
from service.charts import experiment_charts, interval_chart
from service.experiments import ExperimentReport, Point, StopInfo

from . import experiment_reports as experiment
from .experiment_reports import COST, RESOLUTION, fine_tuned_winner


def render_page(*reports: ExperimentReport, label: str = "", problem: str | None = None) -> str:
    """The page's main part as the route renders it (no header: that needs a signed-in person)."""
    context: dict[str, Any] = {"actor": None, "csrf": "x", "section": "experiments", "label": label,
                               "problem": problem, "reports": list(reports), "text": experiment_text,
                               "chart_sets": [experiment_charts(r) for r in reports]}
    return templates.get_template("admin/experiments.html").render(context)


def cells(page: str, metric_title: str) -> list[str]:
    """The text of one metric's row: the metric's name, then one cell per arm."""
    row = re.search(rf"<tr>\s*<th scope=\"row\">{re.escape(metric_title)}.*?</tr>", page, re.S)
    assert row, f"no row for {metric_title}"
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
            for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row.group(0), re.S)]


# Rendering


def test_each_arm_shows_its_figures_with_intervals_and_the_difference_in_words() -> None:
    page = render_page(fine_tuned_winner())

    resolution = cells(page, "Resolution rate")
    assert resolution[1] == "60.0 % [57.0, 63.0], n = 400", "control: the figure, its interval and n"
    assert resolution[2] == ("66.0 % [63.0, 69.0], n = 400 vs control: +6.0 points [2.1, 9.9] "
                             "significantly better")
    escalation = cells(page, "Escalation rate")
    assert escalation[2].endswith("vs control: -6.0 points [-9.9, -2.1] significantly better"), \
        "lower is better for escalations: a fall is an improvement"
    cost = cells(page, "Cost per conversation")
    assert cost[2] == ("$0.0060 [$0.0054, $0.0066], n = 400 vs control: -$0.0040 [-$0.0059, -$0.0021] "
                       "significantly better")
    assert page.count('class="badge good"') == 3 and 'class="badge bad"' not in page
    assert "v9 resolves more: +6.0 points [2.1, 9.9]" in page, "the engine's verdicts are shown"
    assert "ft:gpt-4o-mini:acme::abc" in page and ">fine-tuned<" in page and ">control<" in page


def test_a_difference_that_is_not_significant_says_so() -> None:
    report = experiment.report(experiment.arm("v2", control=True), experiment.arm("v3", differences={
        "resolution": experiment.difference(0.01, -0.02, 0.04),
        "escalation": experiment.difference(0.03, 0.01, 0.05)}))

    page = render_page(report)

    assert cells(page, "Resolution rate")[2].endswith("+1.0 points [-2.0, 4.0] no significant difference")
    assert cells(page, "Escalation rate")[2].endswith("+3.0 points [1.0, 5.0] significantly worse")
    assert page.count('class="badge bad"') == 1


def test_the_sample_still_needed_is_said_per_arm() -> None:
    report = experiment.report(experiment.arm("v2", control=True, conversations=420),
                               experiment.arm("v3", conversations=380), needed_per_arm=900)

    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", render_page(report))).split())

    assert "Not enough data yet: about 520 more conversations per arm" in text
    assert "900 per arm detect a difference of 5.0 points in resolution rate with 80 % power" in text


def test_a_stopped_arm_is_badged_with_why_and_when() -> None:
    stop = StopInfo("escalation", "guard", datetime(2026, 11, 20, 9, 30, tzinfo=UTC), {"z": 3.1})
    report = experiment.report(experiment.arm("v2", control=True, weight=90),
                               experiment.arm("v3", weight=10, stopped=stop))

    page = render_page(report)

    row = re.search(r"<tr>\s*<td><a href=\"/admin/prompts/support@v3\">.*?</tr>", page, re.S)
    assert row
    words = " ".join(re.sub(r"<[^>]+>", " ", row.group(0)).split())
    assert "stopped on 2026-11-20 09:30 UTC by guard: escalation worse than control" in words
    assert '<span class="badge bad">stopped</span>' in row.group(0)


def test_one_chart_per_metric_with_interval_bands() -> None:
    page = render_page(fine_tuned_winner())

    assert page.count("<svg") == 3
    for title in ("Resolution rate", "Escalation rate", "Cost per conversation"):
        assert f'aria-label="{title} per arm over time, with 95 % intervals"' in page
    assert page.count("<polygon") == 6, "one band per arm and metric"


def test_version_names_from_files_are_escaped_everywhere() -> None:
    hostile = "v3<script>alert(1)</script>"
    report = experiment.report(experiment.arm("v2", control=True),
                               experiment.arm(hostile, model="<img src=x onerror=alert(2)>"),
                               verdicts=(f"{hostile} resolves more",))

    page = render_page(report)

    assert "<script>" not in page and "<img" not in page
    assert "v3&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("&lt;script&gt;") >= 5, "table, figures header, verdict, chart legend and point titles"


def test_without_a_split_the_page_says_how_to_make_one() -> None:
    page = render_page()

    assert "No experiment is running" in page
    assert "<pre>production: {v2: 90, v3: 10}</pre>" in page
    assert "<svg" not in page


def test_an_unknown_label_is_named_with_the_reason() -> None:
    page = render_page(label="<b>nope</b>", problem="no prompt has a label '<b>nope</b>' (labels: production)")

    assert "no prompt has a label &#39;&lt;b&gt;nope&lt;/b&gt;&#39; (labels: production)" in page
    assert "<b>nope</b>" not in page and "production: {v2: 90, v3: 10}" in page


# The chart


def test_chart_draws_a_line_and_a_band_per_arm_with_labelled_points() -> None:
    series = fine_tuned_winner().series["resolution"]

    svg = interval_chart(RESOLUTION, series)

    assert svg.startswith("<svg") and svg.endswith("</svg>") and 'role="img"' in svg
    assert svg.count("<polyline") == 2 and svg.count("<polygon") == 2 and svg.count("<circle") == 6
    assert "<title>support@v9 Resolution rate, from 2026-11-09: 66.0 % [63.0, 69.0], n = 400</title>" in svg
    assert ">0%<" in svg and ">69%<" in svg, "a rate axis in percent from zero to the highest bound"


def test_chart_of_one_period_draws_its_interval_as_a_bar() -> None:
    series = experiment.report(experiment.arm("v2", control=True), experiment.arm("v3"), weeks=1).series["cost"]

    svg = interval_chart(COST, series)

    assert svg.count("<polygon") == 0 and svg.count('stroke-width="6"') == 2
    assert "$0.0100 [$0.0090, $0.0110]" in svg


def test_chart_skips_periods_without_data_and_says_when_there_is_none() -> None:
    empty = Point(datetime(2026, 11, 2, tzinfo=UTC), experiment.estimate(None))
    full = Point(datetime(2026, 11, 9, tzinfo=UTC), experiment.estimate(0.5))

    assert "No conversations in this period yet." in interval_chart(RESOLUTION, {"support@v2": (empty,)})
    svg = interval_chart(RESOLUTION, {"support@v2": (empty, full)})
    assert svg.count("<circle") == 1 and "2026-11-02" not in svg

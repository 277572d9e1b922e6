"""`supportbot experiment report|stop|resume`: live experiments from the command line (actor "cli")."""

from __future__ import annotations

import argparse
import json
import sys

from sqlalchemy.orm import Session, sessionmaker

from .config import Settings
from .db import command_sessions
from .errors import NotFound, SupportbotError
from .experiment_guard import ArmStops, ExperimentGuard, find_arm, stop_arm
from .experiments import Difference, Estimate, ExperimentReport, Metric, experiment_reports, report_json
from .prompts import PromptRegistry

ACTOR = "cli"
_WIDTH = 26


def _number(metric: Metric, value: float) -> str:
    if metric.kind == "rate":
        return f"{value * 100:.1f}"
    digits = {"csat": 2, "cost": 4}.get(metric.key, 0)
    return f"{value:,.{digits}f}"


def format_estimate(metric: Metric, estimate: Estimate) -> str:
    """`84.2 % [81.1, 86.9]`, `1,234 [1,200, 1,270]`; `-` without data."""
    if estimate.value is None:
        return "-"
    unit = " %" if metric.kind == "rate" else ""
    text = f"{_number(metric, estimate.value)}{unit}"
    if estimate.low is not None and estimate.high is not None:
        text += f" [{_number(metric, estimate.low)}, {_number(metric, estimate.high)}]"
    return text


def format_difference(metric: Metric, difference: Difference | None) -> str:
    """`-12.9 [-17.6, -8.2] *` (points for rates; `*`: the interval excludes zero)."""
    if difference is None or difference.value is None:
        return "-"
    sign = "+" if difference.value >= 0 else "-"
    text = f"{sign}{_number(metric, abs(difference.value))}"
    if difference.low is not None and difference.high is not None:
        text += f" [{_number(metric, difference.low)}, {_number(metric, difference.high)}]"
    return text + (" *" if difference.significant else "")


def format_report(report: ExperimentReport) -> str:
    """One experiment as a table for a terminal, then its verdicts."""
    control = next(arm for arm in report.arms if arm.control)
    others = [arm for arm in report.arms if not arm.control]
    heads = [f"{arm.version}{' (control)' if arm.control else ''}" for arm in report.arms]
    heads += [f"{arm.version} - {control.version}" for arm in others]
    lines = [f"{report.prompt} @ {report.label}: {report.split}",
             (f"{'':<34}" + "".join(f"{head:<{_WIDTH}}" for head in heads)).rstrip(),
             (f"{'conversations':<34}" + "".join(f"{arm.conversations:<{_WIDTH},}" for arm in report.arms)).rstrip()]
    for metric in report.metrics:
        cells = [format_estimate(metric, arm.estimates[metric.key]) for arm in report.arms]
        cells += [format_difference(metric, arm.differences.get(metric.key)) for arm in others]
        lines.append((f"{metric.title[:33]:<34}" + "".join(f"{cell:<{_WIDTH}}" for cell in cells)).rstrip())
    lines.append(f"95 % intervals (rate differences in points); * the difference excludes zero. To detect "
                 f"{report.effect * 100:g} points of resolution (80 % power): {report.needed_per_arm or 0:,} "
                 "conversations per arm.")
    lines += ["Verdicts:", *[f"  - {verdict}" for verdict in report.verdicts]]
    return "\n".join(lines)


def _report(args: argparse.Namespace, settings: Settings, sessions: sessionmaker[Session],
            prompts: PromptRegistry) -> int:
    if settings.experiment_guard:
        guard = ExperimentGuard(sessions, prompts, ArmStops(sessions, 0), alpha=settings.experiment_guard_alpha,
                                min_conversations=settings.experiment_guard_min_conversations)
        for row in guard.check():
            print(f"the guard stopped {row.prompt}@{row.version} in label '{row.label}' ({row.metric} worse than "
                  "control)", file=sys.stderr)
    reports = experiment_reports(sessions, prompts, label=args.label, effect=args.effect)
    if args.json:
        print(json.dumps([report_json(report) for report in reports], indent=2))
    elif not reports:
        print("no label splits traffic: split one in labels.yaml, e.g. 'production: {v2: 90, v3: 10}'")
    else:
        print("\n\n".join(format_report(report) for report in reports))
    return 0


def _stop(args: argparse.Namespace, sessions: sessionmaker[Session], prompts: PromptRegistry) -> int:
    row = stop_arm(ArmStops(sessions, 0), prompts, args.label, args.version, ACTOR, args.prompt)
    _, split = find_arm(prompts, args.label, args.version, args.prompt)
    print(f"stopped {row.prompt}@{row.version} in label '{row.label}': new conversations that would draw it get "
          f"{split.control}; conversations already on it keep it")
    return 0


def _resume(args: argparse.Namespace, sessions: sessionmaker[Session], prompts: PromptRegistry) -> int:
    name, _ = find_arm(prompts, args.label, args.version, args.prompt)
    ArmStops(sessions, 0).lift(name, args.label, args.version, ACTOR)
    print(f"resumed {name}@{args.version} in label '{args.label}': new conversations may draw it again")
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Dispatch an `experiment` subcommand; exit 2 for an unknown label, split or arm, 1 for other refusals."""
    prompts = PromptRegistry(settings.prompts_dir, interval=0)
    with command_sessions(settings.resolved_database_url) as sessions:
        try:
            if args.experiment_command == "stop":
                return _stop(args, sessions, prompts)
            if args.experiment_command == "resume":
                return _resume(args, sessions, prompts)
            return _report(args, settings, sessions, prompts)
        except SupportbotError as error:
            print(f"error: {error.message}", file=sys.stderr)
            return 2 if isinstance(error, NotFound) and error.code != "not_stopped" else 1


def _effect(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.05, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"the effect is a fraction between 0 and 1 (0.05 = 5 points), not {text}")
    return value


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `experiment` subcommand and its own subcommands."""
    experiment = commands.add_parser("experiment", help="live experiments: each arm's figures with intervals, "
                                                        "verdicts; stop or resume an arm")
    sub = experiment.add_subparsers(dest="experiment_command", required=True)
    report = sub.add_parser("report", help="each split label's arms, 95 %% intervals, differences and verdicts")
    report.add_argument("--label", default=None, help="only this label, e.g. production (default: every split)")
    report.add_argument("--effect", type=_effect, default=0.05,
                        help="the resolution difference the sample size is for (default 0.05 = 5 points)")
    report.add_argument("--json", action="store_true", help="print a JSON list, one object per experiment")
    for name, text in (("stop", "take an arm out of traffic: its new conversations get control"),
                       ("resume", "lift a stop: new conversations may draw the arm again")):
        command = sub.add_parser(name, help=text)
        command.add_argument("version", help="the arm's version, e.g. v3")
        command.add_argument("--label", required=True, help="the label that splits traffic, e.g. production")
        command.add_argument("--prompt", default=None, help="the prompt's name, when several split the label")

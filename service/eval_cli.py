"""`supportbot eval`: run a case file, print the side-by-side table (or JSON), gate on --min-pass."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from .cases import load_cases
from .config import Settings
from .errors import ConfigError
from .evals import Column, EvalRunner, dumps, format_table


def columns_for(settings: Settings, prompts: list[str], models: list[str]) -> list[Column]:
    """Prompt versions x models; defaults: the served prompt, and the hosted model or `offline`."""
    default_model = settings.model if settings.hosted_model_configured else "offline"
    return [Column(prompt, model) for prompt in prompts or [settings.prompt] for model in models or [default_model]]


@contextmanager
def progress(settings: Settings, total: int) -> Iterator[Callable[[], object]]:
    """A progress bar on a terminal (none in a pipe), with the per-case log lines quieted."""
    service_log = logging.getLogger("service")
    level = service_log.level
    if settings.log_level != "DEBUG":
        # One line per case would drown the table; the table and --json carry the results.
        service_log.setLevel(logging.WARNING)
    try:
        with tqdm(total=total, unit="case", disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
            yield bar.update
    finally:
        service_log.setLevel(level)  # as it was: the caller may go on logging (finetune eval, tests in-process)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Exit status 0 when every column passes --min-pass, 1 when one falls under, 2 on bad input."""
    try:
        cases = load_cases(Path(args.cases))
    except (ConfigError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    columns = columns_for(settings, args.prompt, args.model)
    if any(c.model != "offline" for c in columns) and not settings.hosted_model_configured:
        print("error: --model needs a hosted model: set OPENAI_API_KEY (or use --model offline)", file=sys.stderr)
        return 2
    runner = EvalRunner(settings, columns, knowledge_dir=Path(args.knowledge) if args.knowledge else None,
                        concurrency=args.concurrency)
    try:
        with progress(settings, len(cases) * len(columns)) as step:
            report = asyncio.run(runner.run(cases, on_progress=step))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(dumps(report) if args.json else format_table(report))
    failing = [c for c in report.columns if c.pass_rate < args.min_pass]
    for column in failing:
        print(f"{column.prompt} x {column.model}: pass rate {column.pass_rate:.0%} is under --min-pass "
              f"{args.min_pass:.0%}", file=sys.stderr)
    return 1 if failing else 0

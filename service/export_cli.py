"""`supportbot export` and `supportbot import-check`: files, progress and the summary on stderr."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import IO

from tqdm import tqdm

from .actions.files import ActionFiles
from .config import Settings
from .db import create_db_engine, make_session_factory
from .errors import SupportbotError
from .export import Exporter, ExportOptions
from .export_format import check_file


def validation_path(out: Path) -> Path:
    """`train.jsonl` -> `train.jsonl.validation.jsonl`, beside it."""
    return out.with_name(out.name + ".validation.jsonl")


def export(settings: Settings, args: argparse.Namespace) -> int:
    """Write the selected examples to --out (and its validation file); summary on stderr."""
    try:
        options = ExportOptions(
            format=args.format, select=args.select, since=args.since, until=args.until,
            prompt_version=args.prompt_version, redact=not args.no_redact,
            validation_split=args.validation_split, seed=args.seed,
            include_policy_handoffs=args.include_policy_handoffs,
        )
    except SupportbotError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2
    if args.out == "-" and options.validation_split:
        print("error: --validation-split needs --out FILE (two files are written)", file=sys.stderr)
        return 2
    engine = create_db_engine(settings.resolved_database_url)
    tools = ActionFiles(settings.actions_dir, interval=0).current().tools()
    exporter = Exporter(make_session_factory(engine), options, action_tools=tools)
    with ExitStack() as stack:
        if args.out == "-":
            train: IO[str] = sys.stdout
            validation: IO[str] = sys.stdout
        else:
            out = Path(args.out)
            train = stack.enter_context(out.open("w", encoding="utf-8"))
            validation = stack.enter_context(validation_path(out).open("w", encoding="utf-8")) \
                if options.validation_split else train
        bar = stack.enter_context(tqdm(total=exporter.count_conversations(), unit="conversation",
                                       disable=not sys.stderr.isatty(), file=sys.stderr))
        for line in exporter.lines(on_batch=bar.update):
            (validation if line.validation else train).write(line.text + "\n")
    engine.dispose()
    for text in exporter.summary.lines("standard output" if args.out == "-" else args.out):
        print(text, file=sys.stderr)
    return 0


def check(path: Path, format_name: str | None) -> int:
    """Validate a JSONL file with the export's rules; list bad lines; exit 1 when there is any."""
    if not path.is_file():
        print(f"error: {path} is not a file", file=sys.stderr)
        return 2
    bad = 0
    for number, problems in check_file(path, format_name):
        bad += 1
        print(f"{path}:{number}: {'; '.join(problems)}", file=sys.stderr)
    lines = sum(1 for _ in path.open(encoding="utf-8"))
    print(f"{path}: {lines} lines, {bad} invalid")
    return 1 if bad else 0

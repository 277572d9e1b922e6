"""The `supportbot` command: init, serve, db, prompt, chat."""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from . import __version__
from .config import Settings, get_settings
from .shipped import IncompleteInstall
from .telemetry.logs import LogFormat, logging_config

log = logging.getLogger("supportbot")


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """One log format for the service and uvicorn: time, level, logger, message (ids, not text); or JSON lines."""
    for handler in logging.getLogger().handlers[:]:  # as basicConfig(force=True) did: replace, never add
        logging.getLogger().removeHandler(handler)
        handler.close()
    logging.config.dictConfig(logging_config(level, log_format))


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    from .scaffold import init

    return init(Path(args.dir), settings)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from .serving import raise_open_file_limit, uvicorn_options
    from .telemetry import metrics

    if not _schema_ok(settings):
        return 2
    raise_open_file_limit()
    # Several workers count into files that any one of them sums when scraped; a folder fresh for each start.
    metrics_dir = metrics.prepare_multiprocess_dir(args.metrics_dir) if args.workers > 1 else None
    if settings.metrics_port:
        metrics.serve_metrics_port(settings, settings.metrics_port)
    try:
        uvicorn.run(
            "service.api.app:create_app", factory=True, host=args.host, port=args.port, workers=args.workers,
            # Applied again in every worker process, which starts with no logging configured.
            log_config=logging_config(settings.log_level, settings.log_format), log_level=settings.log_level.lower(),
            proxy_headers=False, timeout_graceful_shutdown=settings.shutdown_grace_seconds,
            **uvicorn_options(settings),
        )
    finally:
        if metrics_dir is not None:
            metrics.remove_multiprocess_dir(metrics_dir, created=not args.metrics_dir)
    return 0


def _schema_ok(settings: Settings) -> bool:
    from .db import SchemaOutdated, require_current_schema

    try:
        require_current_schema(settings.resolved_database_url)
    except SchemaOutdated as error:
        log.error("%s", error)
        return False
    return True


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from .db import create_db_engine, current_revision, head_revision, upgrade

    url = settings.resolved_database_url
    if args.db_command == "upgrade":
        upgrade(url)
    engine = create_db_engine(url)
    try:
        print(f"database {engine.url.render_as_string(hide_password=True)} at revision "
              f"{current_revision(engine)} (head {head_revision()})")
    finally:
        engine.dispose()
    return 0


def cmd_prompt(args: argparse.Namespace, settings: Settings) -> int:
    from . import prompt_tools

    if args.prompt_command == "list":
        return prompt_tools.list_prompts(settings)
    if args.prompt_command == "show":
        return prompt_tools.show_prompt(settings, args.ref, args.query)
    return prompt_tools.check_files(settings)


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    from .chat_terminal import chat

    if not _schema_ok(settings):
        return 2
    return asyncio.run(chat(settings))


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from . import export_cli

    if args.check:
        return export_cli.check(Path(args.check), args.format if args.format_given else None)
    if not args.out:
        print("error: --out FILE (or - for standard output) is required", file=sys.stderr)
        return 2
    if not _schema_ok(settings):
        return 2
    return export_cli.export(settings, args)


def cmd_import_check(args: argparse.Namespace, settings: Settings) -> int:
    from . import export_cli

    return export_cli.check(Path(args.file), args.format)


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from . import eval_cli

    return eval_cli.run(settings, args)


def cmd_knowledge(args: argparse.Namespace, settings: Settings) -> int:
    from . import knowledge_cli

    if not _schema_ok(settings):
        return 2
    return knowledge_cli.run(args, settings)


def cmd_user(args: argparse.Namespace, settings: Settings) -> int:
    from . import user_cli

    if not _schema_ok(settings):
        return 2
    return user_cli.run(args, settings)


def cmd_finetune(args: argparse.Namespace, settings: Settings) -> int:
    from . import finetune_cli

    if not _schema_ok(settings):
        return 2
    return finetune_cli.run(args, settings)


def cmd_experiment(args: argparse.Namespace, settings: Settings) -> int:
    from . import experiment_cli

    if not _schema_ok(settings):
        return 2
    return experiment_cli.run(args, settings)


def cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    from . import purge_cli

    if not _schema_ok(settings):
        return 2
    return purge_cli.run(args, settings)


def cmd_actions(args: argparse.Namespace, settings: Settings) -> int:
    from . import actions_cli

    return actions_cli.run(args, settings)


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from .db import command_sessions
    from .report import build_report, format_report

    if not _schema_ok(settings):
        return 2
    with command_sessions(settings.resolved_database_url) as sessions:
        report = build_report(settings, sessions)
    print(json.dumps(report.as_json(), indent=2) if args.json else format_report(report))
    return 0


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="supportbot", description="Support chatbot service.")
    parser.add_argument("--version", action="version", version=f"supportbot {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="write a starting prompts/ and knowledge/ (the shipped examples)")
    init.add_argument("dir", nargs="?", default=".", help="where to write them (default: here)")
    init.set_defaults(handler=cmd_init)

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(handler=cmd_serve)

    db = commands.add_parser("db", help="database migrations")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="apply all migrations")
    db_commands.add_parser("current", help="show the revision the database is at")
    db.set_defaults(handler=cmd_db)

    prompt = commands.add_parser("prompt", help="inspect and check prompt and knowledge files")
    prompt_commands = prompt.add_subparsers(dest="prompt_command", required=True)
    prompt_commands.add_parser("list", help="versions and labels")
    show = prompt_commands.add_parser("show", help="print the assembled system prompt")
    show.add_argument("ref", nargs="?", default=None, help="e.g. support@v2 (default: SUPPORTBOT_PROMPT)")
    show.add_argument("--query", default="", help="customer message used to pick known issues (large bases)")
    prompt_commands.add_parser("check", help="validate every prompt, label and knowledge file")
    prompt.set_defaults(handler=cmd_prompt)

    chat = commands.add_parser("chat", help="talk to the bot in the terminal")
    chat.set_defaults(handler=cmd_chat)

    export = commands.add_parser("export", help="write training data (JSONL) from the conversation log")
    export.add_argument("--format", choices=["openai-chat", "dpo", "eval-cases"], default=None)
    export.add_argument("--select", choices=["corrected", "misses", "all"], default="corrected")
    export.add_argument("--since", type=_date, help="YYYY-MM-DD, replies on or after")
    export.add_argument("--until", type=_date, help="YYYY-MM-DD, replies on or before")
    export.add_argument("--prompt-version", help="e.g. support@v2")
    export.add_argument("--validation-split", type=float, default=0.0, help="e.g. 0.1")
    export.add_argument("--no-redact", action="store_true", help="keep e-mails, phones, cards, IPs, keys")
    export.add_argument("--include-policy-handoffs", action="store_true",
                        help="also export agents' answers after a policy handoff (refund, legal, ...): this teaches "
                             "the model to answer what the policy reserves for people")
    export.add_argument("--seed", type=int, default=0)
    export.add_argument("--out", help="FILE, or - for standard output")
    export.add_argument("--check", metavar="FILE", help="validate an existing JSONL file instead")
    export.set_defaults(handler=cmd_export)

    evaluate = commands.add_parser("eval", help="run labeled cases through the pipeline, per prompt x model")
    evaluate.add_argument("cases", help="JSONL case file")
    evaluate.add_argument("--prompt", action="append", default=[], help="e.g. support@v1 (repeat to compare)")
    evaluate.add_argument("--model", action="append", default=[], help="model name, or offline (repeatable)")
    evaluate.add_argument("--knowledge", help="knowledge directory to use instead of SUPPORTBOT_KNOWLEDGE_DIR")
    evaluate.add_argument("--json", action="store_true", help="print one machine-readable object")
    evaluate.add_argument("--min-pass", type=float, default=0.0, help="exit 1 when a column passes less")
    evaluate.add_argument("--concurrency", type=int, default=1, help="cases in flight at once")
    evaluate.set_defaults(handler=cmd_eval)

    from .knowledge_cli import add_parser as add_knowledge_parser

    add_knowledge_parser(commands)
    commands.choices["knowledge"].set_defaults(handler=cmd_knowledge)

    from .user_cli import add_parser as add_user_parser

    add_user_parser(commands)
    commands.choices["user"].set_defaults(handler=cmd_user)

    from .finetune_cli import add_parser as add_finetune_parser

    add_finetune_parser(commands)
    commands.choices["finetune"].set_defaults(handler=cmd_finetune)

    from .experiment_cli import add_parser as add_experiment_parser

    add_experiment_parser(commands)
    commands.choices["experiment"].set_defaults(handler=cmd_experiment)

    from .purge_cli import add_parser as add_purge_parser

    add_purge_parser(commands)
    commands.choices["purge"].set_defaults(handler=cmd_purge)

    from .actions_cli import add_parser as add_actions_parser

    add_actions_parser(commands)
    commands.choices["actions"].set_defaults(handler=cmd_actions)

    report = commands.add_parser("report", help="where prompting stands, and whether to fine-tune")
    report.add_argument("--json", action="store_true")
    report.set_defaults(handler=cmd_report)

    check = commands.add_parser("import-check", help="validate a JSONL training file, naming bad lines")
    check.add_argument("file")
    check.add_argument("--format", choices=["openai-chat", "dpo", "eval-cases"], default=None,
                       help="default: guessed per line")
    check.set_defaults(handler=cmd_import_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `supportbot` console script."""
    # Taken before anything imports prometheus-client, which picks its mode from it once: only `serve --workers N`
    # counts into that folder (tests/test_metrics.py); other commands and a single worker count in memory.
    metrics_dir = os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    args = build_parser().parse_args(argv)
    args.metrics_dir = metrics_dir
    if args.command == "export":
        args.format_given = args.format is not None
        args.format = args.format or "openai-chat"
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        code: int = args.handler(args, settings)
    except IncompleteInstall as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())

"""The `supportbot` command: serve, db, prompt, chat."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .config import Settings, get_settings

log = logging.getLogger("supportbot")


def configure_logging(level: str) -> None:
    """One log format for the service and uvicorn: time, level, logger, message (ids, not text)."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True
    )
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    if not _schema_ok(settings):
        return 2
    uvicorn.run(
        "service.api.app:create_app", factory=True, host=args.host, port=args.port, workers=args.workers,
        log_config=None, log_level=settings.log_level.lower(), proxy_headers=False,
    )
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="supportbot", description="Support chatbot service.")
    parser.add_argument("--version", action="version", version=f"supportbot {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `supportbot` console script."""
    args = build_parser().parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    code: int = args.handler(args, settings)
    return code


if __name__ == "__main__":
    sys.exit(main())

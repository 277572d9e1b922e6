"""`supportbot user add|list|disable|token|tokens|revoke-token`: the team from the command line (actor "cli")."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from .config import Settings
from .errors import SupportbotError

if TYPE_CHECKING:
    from .people import People

ACTOR = "cli"


@contextmanager
def _people(settings: Settings) -> Iterator[People]:
    from .db import command_sessions
    from .people import People

    with command_sessions(settings.resolved_database_url) as sessions:
        yield People(sessions)


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M") if at else "-"


def _add(people: People, args: argparse.Namespace, settings: Settings) -> int:
    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    user = people.add(ACTOR, args.email, args.role, args.name, password)
    print(f"added {user.email} ({user.name}) as {user.role}")
    if password is None:
        link = people.new_sign_in_link(ACTOR, user.email, settings.sign_in_link_minutes, settings.public_url)
        print(f"one-time sign-in link (valid {settings.sign_in_link_minutes} min, shown once):\n{link}")
    return 0


def _list(people: People) -> int:
    everyone = people.everyone()
    if not everyone:
        print("nobody yet; add someone with `supportbot user add EMAIL --role admin|agent|reviewer`")
        return 0
    last = people.last_sign_ins()
    width = max(len(u.email) for u in everyone)
    print(f"{'EMAIL':<{width}}  {'NAME':<20}  {'ROLE':<8}  {'STATUS':<8}  {'AVAILABLE':<9}  LAST SIGN-IN (UTC)")
    for u in everyone:
        status = "disabled" if u.disabled_at else "enabled"
        print(f"{u.email:<{width}}  {u.name[:20]:<20}  {u.role:<8}  {status:<8}  {'yes' if u.available else 'no':<9}  "
              f"{_when(last.get(u.id))}")
    return 0


def _disable(people: People, email: str) -> int:
    user = people.disable(ACTOR, email)
    print(f"disabled {user.email}: signed out everywhere, API tokens revoked")
    if user.role == "admin" and people.enabled_admins() == 0:
        print("warning: no enabled admin is left; only the shared admin token (SUPPORTBOT_ADMIN_TOKEN) "
              "can manage people now", file=sys.stderr)
    return 0


def _token(people: People, email: str, label: str | None) -> int:
    row, token = people.new_api_token(ACTOR, email, label)
    print(f"personal API token {row.id} for {email.strip().lower()} (shown once; keep it secret):")
    print(token)
    return 0


def _tokens(people: People, email: str) -> int:
    rows = people.api_tokens(email)
    if not rows:
        print(f"{email.strip().lower()} has no personal API tokens")
        return 0
    print(f"{'ID':>6}  {'LABEL':<20}  {'CREATED':<16}  {'LAST USED':<16}  STATUS")
    for t in rows:
        status = f"revoked {_when(t.revoked_at)}" if t.revoked_at else "active"
        print(f"{t.id:>6}  {(t.label or '-')[:20]:<20}  {_when(t.created_at):<16}  {_when(t.last_used_at):<16}  "
              f"{status}")
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Dispatch a `user` subcommand; exit 1 on bad input (the message says why), 0 otherwise."""
    command = args.user_command
    with _people(settings) as people:
        try:
            if command == "add":
                return _add(people, args, settings)
            if command == "disable":
                return _disable(people, args.email)
            if command == "token":
                return _token(people, args.email, args.label)
            if command == "tokens":
                return _tokens(people, args.email)
            if command == "revoke-token":
                row = people.revoke_api_token(ACTOR, args.id)
                print(f"revoked token {row.id}")
                return 0
            return _list(people)
        except SupportbotError as error:
            print(f"error: {error.message}", file=sys.stderr)
            return 1


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `user` subcommand and its own subcommands."""
    user = commands.add_parser("user", help="the support team: people, roles, personal API tokens")
    sub = user.add_subparsers(dest="user_command", required=True)
    add = sub.add_parser("add", help="add a person (without --password-stdin: print a one-time sign-in link)")
    add.add_argument("email")
    add.add_argument("--role", required=True, metavar="admin|agent|reviewer")
    add.add_argument("--name", default=None, help="display name (default: the e-mail's local part)")
    add.add_argument("--password-stdin", action="store_true", help="read the password (12+ characters) from stdin")
    sub.add_parser("list", help="everyone: role, status, availability, last sign-in")
    disable = sub.add_parser("disable", help="disable a person: their sessions end, their tokens are revoked")
    disable.add_argument("email")
    token = sub.add_parser("token", help="print a new personal API token for a person (once)")
    token.add_argument("email")
    token.add_argument("--label", default=None, help="what the token is for, e.g. 'zapier'")
    tokens = sub.add_parser("tokens", help="list a person's personal API tokens (never the secret)")
    tokens.add_argument("email")
    revoke = sub.add_parser("revoke-token", help="revoke a personal API token by its id")
    revoke.add_argument("id", type=int)

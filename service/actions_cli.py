"""`supportbot actions check|try`: validate the action files, or call one by hand and see what the model would get."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from .actions.base import ActionOutcome, ActionSpec
from .actions.caller import ActionCaller
from .actions.check import check_actions
from .config import Settings
from .models import ActionStatus


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `actions` subcommand: `check` and `try`."""
    parser = commands.add_parser("actions", help="check the action files, or call one by hand")
    actions = parser.add_subparsers(dest="actions_command", required=True)
    actions.add_parser("check", help="validate every action file and the environment variables they read")
    attempt = actions.add_parser("try", help="call one action for real; print the request and what the model gets")
    attempt.add_argument("name", help="the action's name")
    attempt.add_argument("arguments", nargs="?", default="{}", help="the arguments as JSON, e.g. '{\"order_id\": "
                                                                    "\"A-1042\"}'")
    attempt.add_argument("--user", default=None, help="a verified user id to send as X-Supportbot-User")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run `actions check` or `actions try`."""
    if args.actions_command == "check":
        return check(settings)
    return attempt(settings, args.name, args.arguments, args.user)


def check(settings: Settings) -> int:
    """List the actions and the problems; 1 when there is any problem."""
    root = settings.actions_dir
    specs, problems = check_actions(root, os.environ)
    if not root.is_dir():
        print(f"no actions: {root} does not exist (SUPPORTBOT_ACTIONS_DIR)")
        return 0
    print(f"actions in {root}:" if specs else f"no valid actions in {root}")
    for spec in specs:
        print(f"  {spec.name}  {spec.request.method} {spec.request.url}")
        print(f"      identity {spec.identity}, side effects {'yes' if spec.side_effects else 'no'}, "
              f"fields {', '.join(spec.fields) or '(none: only the status reaches the model)'}")
    if problems:
        print("problems:")
        for problem in problems:
            print(f"  {problem}")
    print(f"{_count(len(specs), 'action')}, {_count(len(problems), 'problem')}")
    return 1 if problems else 0


def attempt(settings: Settings, name: str, arguments_text: str, user_id: str | None) -> int:
    """Call `name` with the JSON `arguments_text`; 0 on ok or rejected, 1 on failed or invalid, 2 on misuse."""
    specs, problems = check_actions(settings.actions_dir, os.environ)
    spec = next((s for s in specs if s.name == name), None)
    if spec is None:
        known = ", ".join(s.name for s in specs) or "none"
        print(f"error: no valid action named {name!r} in {settings.actions_dir} (valid actions: {known})",
              file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    try:
        arguments = json.loads(arguments_text)
    except ValueError as error:
        print(f"error: the arguments are not valid JSON: {error}", file=sys.stderr)
        return 2
    outcome = asyncio.run(_call(spec, arguments, user_id, settings.actions_max_argument_chars))
    print(format_outcome(spec, outcome))
    return 0 if outcome.status in (ActionStatus.OK, ActionStatus.REJECTED) else 1


async def _call(spec: ActionSpec, arguments: Any, user_id: str | None, max_chars: int) -> ActionOutcome:
    caller = ActionCaller(max_argument_chars=max_chars)
    try:
        return await caller.call(spec, arguments, user_id)
    finally:
        await caller.aclose()


def format_outcome(spec: ActionSpec, outcome: ActionOutcome) -> str:
    """The request made (secrets masked), the status, and the tool result exactly as the model gets it."""
    lines = []
    if outcome.request is not None:
        lines.append(f"request: {outcome.request.method} {outcome.request.url}")
        lines.extend(f"  {header}: {value}" for header, value in outcome.request.headers.items())
        if outcome.request.body is not None:
            lines.append(f"  body: {json.dumps(outcome.request.body, ensure_ascii=False)}")
    else:
        lines.append("request: not made")
    http = f"HTTP {outcome.http_status}, " if outcome.http_status is not None else ""
    error = f": {outcome.error}" if outcome.error else ""
    lines.append(f"status: {outcome.status.value} ({http}{outcome.latency_ms} ms){error}")
    if spec.side_effects and outcome.request is not None:
        lines.append("note: this action has side effects and was called for real")
    lines.append("the model gets:")
    lines.append(f"  {outcome.tool_content()}")
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"

"""`supportbot chat`: the real turn pipeline in a terminal, handy while editing prompts."""

from __future__ import annotations

import sys

from anyio import to_thread

from .config import Settings
from .errors import SupportbotError
from .providers.base import TextDelta
from .runtime import Runtime
from .turns import TurnOutcome, start_turn


async def chat(settings: Settings) -> int:
    """Read lines from stdin, answer each through the same pipeline the API uses."""
    runtime = Runtime.build(settings)
    print(f"supportbot chat: {runtime.describe()}", file=sys.stderr)
    print("Type a message, or an empty line / Ctrl-D to quit.", file=sys.stderr)
    conversation = await to_thread.run_sync(runtime.log.create_conversation, {"channel": "terminal"})
    try:
        while True:
            try:
                line = input("you> ")
            except EOFError:
                break
            if not line.strip():
                break
            try:
                turn = await start_turn(runtime, conversation.id, line)
            except SupportbotError as error:
                print(f"error: {error.message}", file=sys.stderr)
                continue
            print("bot> ", end="", flush=True)
            async for event in turn.events(stream=True):
                if isinstance(event, TextDelta):
                    print(event.text, end="", flush=True)
                elif isinstance(event, TurnOutcome):
                    print()
                    if event.escalation:
                        print(f"[escalated: {event.escalation.reason}]", file=sys.stderr)
                    print(f"[{event.prompt_version}, conversation {conversation.id}]", file=sys.stderr)
    finally:
        await runtime.aclose()
    return 0

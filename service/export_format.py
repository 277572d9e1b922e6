"""The rules every exported training line must pass: OpenAI chat fine-tuning and DPO formats."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FORMATS = ("openai-chat", "dpo", "eval-cases")
CHAT_ROLES = {"system", "user", "assistant", "tool"}


def _check_tool_calls(calls: Any, where: str) -> list[str]:
    if not isinstance(calls, list) or not calls:
        return [f"{where}: tool_calls must be a non-empty list"]
    problems = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or call.get("type") != "function" or not call.get("id") \
                or not isinstance(function, dict) or not function.get("name"):
            problems.append(f"{where}: each tool call needs id, type 'function' and function.name")
            continue
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            problems.append(f"{where}: tool call arguments must be a JSON string")
            continue
        try:
            json.loads(arguments)
        except json.JSONDecodeError:
            problems.append(f"{where}: tool call arguments are not valid JSON")
    return problems


def _check_message(message: Any, index: int) -> list[str]:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        return [f"{where}: not an object"]
    role = message.get("role")
    if role not in CHAT_ROLES:
        return [f"{where}: role must be one of {', '.join(sorted(CHAT_ROLES))}"]
    problems = []
    content = message.get("content")
    has_calls = "tool_calls" in message
    if has_calls:
        if role != "assistant":
            problems.append(f"{where}: only assistant messages carry tool_calls")
        problems += _check_tool_calls(message["tool_calls"], where)
    if not (isinstance(content, str) and content.strip()) and not (has_calls and content in (None, "")):
        problems.append(f"{where}: content must be a non-empty string")
    if role == "tool" and not message.get("tool_call_id"):
        problems.append(f"{where}: a tool message needs tool_call_id")
    if "weight" in message:
        if role != "assistant":
            problems.append(f"{where}: weight is only allowed on assistant messages")
        elif message["weight"] not in (0, 1) or isinstance(message["weight"], bool):
            problems.append(f"{where}: weight must be 0 or 1")
    extra = set(message) - {"role", "content", "weight", "tool_calls", "tool_call_id", "name"}
    if extra:
        problems.append(f"{where}: unknown keys {', '.join(sorted(extra))}")
    return problems


def check_chat(example: Any) -> list[str]:
    """Problems of one `openai-chat` line (empty when it is valid)."""
    if not isinstance(example, dict) or set(example) - {"messages", "tools"}:
        return ["line must be an object with 'messages' (and optionally 'tools')"]
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        return ["messages must be a non-empty list"]
    problems = [p for i, m in enumerate(messages) for p in _check_message(m, i)]
    if problems:
        return problems
    roles = [m["role"] for m in messages]
    if "system" in roles[1:]:
        problems.append("a system message may only come first")
    if roles[-1] != "assistant":
        problems.append("the last message must be the assistant's")
    if not any(m["role"] == "assistant" and m.get("weight", 1) == 1 for m in messages):
        problems.append("at least one assistant message must have weight 1")
    if any("tool_calls" in m for m in messages) and not isinstance(example.get("tools"), list):
        problems.append("examples with tool_calls need a 'tools' array")
    return problems + _check_tool_answers(messages, example.get("tools"))


def _check_tool_answers(messages: list[dict[str, Any]], tools: Any) -> list[str]:
    """A `tool` message answers a call made before it, and every function called is in `tools`."""
    problems = []
    called: set[str] = set()
    names: set[str] = set()
    for index, message in enumerate(messages):
        for call in message.get("tool_calls", ()):
            called.add(call["id"])
            names.add(call["function"]["name"])
        if message["role"] == "tool" and message["tool_call_id"] not in called:
            problems.append(f"messages[{index}]: tool_call_id {message['tool_call_id']!r} answers no earlier call")
    if isinstance(tools, list):
        offered = {tool.get("function", {}).get("name") for tool in tools if isinstance(tool, dict)}
        problems += [f"tool {name!r} is called but not in 'tools'" for name in sorted(names - offered)]
    return problems


def _single_assistant(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict) \
            or value[0].get("role") != "assistant" or not str(value[0].get("content") or "").strip():
        return [f"{name} must be a list of one assistant message with non-empty content"]
    return []


def check_dpo(example: Any) -> list[str]:
    """Problems of one `dpo` line (empty when it is valid)."""
    if not isinstance(example, dict) or set(example) != {"input", "preferred_output", "non_preferred_output"}:
        return ["line must have exactly input, preferred_output and non_preferred_output"]
    messages = example["input"].get("messages") if isinstance(example["input"], dict) else None
    if not isinstance(messages, list) or not messages:
        return ["input.messages must be a non-empty list"]
    problems = [p for i, m in enumerate(messages) for p in _check_message(m, i)]
    if not problems and messages[-1]["role"] != "user":
        problems.append("input.messages must end with the user's message")
    if any("weight" in m for m in messages if isinstance(m, dict)):
        problems.append("input messages carry no weight")
    problems += _single_assistant(example["preferred_output"], "preferred_output")
    problems += _single_assistant(example["non_preferred_output"], "non_preferred_output")
    if not problems and example["preferred_output"][0]["content"] == example["non_preferred_output"][0]["content"]:
        problems.append("preferred and non-preferred outputs are the same")
    return problems


def check_eval_case(example: Any) -> list[str]:
    """Problems of one `eval-cases` line (the escalation/eval case format)."""
    from .cases import _case
    from .errors import ConfigError

    try:
        _case(example, "line", 0)
    except ConfigError as error:
        return [error.reason]
    return []


CHECKS = {"openai-chat": check_chat, "dpo": check_dpo, "eval-cases": check_eval_case}


def guess_format(example: Any) -> str:
    """Which format a parsed line looks like."""
    if isinstance(example, dict) and "preferred_output" in example:
        return "dpo"
    if isinstance(example, dict) and "expect" in example:
        return "eval-cases"
    return "openai-chat"


def check_file(path: Path, format_name: str | None = None) -> Iterator[tuple[int, list[str]]]:
    """(line number, problems) for every bad line of a JSONL file."""
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                yield number, ["empty line"]
                continue
            try:
                example = json.loads(raw)
            except json.JSONDecodeError as error:
                yield number, [f"not valid JSON: {error.msg}"]
                continue
            problems = CHECKS[format_name or guess_format(example)](example)
            if problems:
                yield number, problems

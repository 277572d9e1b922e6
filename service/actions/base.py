"""What an action is (one file a team writes), what calling it gave, and what the model is told.

The turn (service/turns.py) offers every action as a tool, and for each call the model makes decides what
happens (refused, asks the visitor to confirm, or called through `ActionCaller`); the tool result the model
gets is always one of the JSON objects made here, so the API, the export and the eval read one shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..models import ActionStatus

Identity = Literal["none", "optional", "required"]
IDENTITIES: tuple[Identity, ...] = ("none", "optional", "required")
USER_HEADER = "X-Supportbot-User"  # the verified user id, set by the service, never by the model


@dataclass(frozen=True)
class RequestSpec:
    """How an action calls the team's API. `url` may hold `{parameter}` placeholders in its path and query
    only (scheme and host are fixed by the file); header values may hold `${ENV_VAR}` references."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 5.0


@dataclass(frozen=True)
class ActionSpec:
    """One action file, validated."""

    name: str
    description: str
    parameters: dict[str, Any]  # a JSON Schema of type object: what the model supplies
    request: RequestSpec
    identity: Identity = "optional"
    side_effects: bool = False
    fields: tuple[str, ...] = ()  # only these response fields reach the model (`a.b` reaches into objects)
    max_bytes: int = 4000
    confirm: str | None = None  # what the visitor is asked to confirm, with `{parameter}` placeholders
    path: Path | None = None

    def as_tool(self) -> dict[str, Any]:
        """The action as the model is offered it (OpenAI `tools` format): name, description, parameters."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}

    def summary(self, arguments: dict[str, Any]) -> str:
        """The sentence the visitor confirms: the file's `confirm` with the arguments, else the description
        and the arguments."""
        if self.confirm:
            try:
                return self.confirm.format_map({k: _plain(v) for k, v in arguments.items()})[:500]
            except (KeyError, IndexError, ValueError):
                pass
        shown = ", ".join(f"{k}: {_plain(v)}" for k, v in arguments.items())
        return f"{self.description} ({shown})"[:500] if shown else self.description[:500]


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class PreparedRequest:
    """The request as made, for `supportbot actions try` and the logs: secrets masked as `***`."""

    method: str
    url: str
    headers: dict[str, str]
    body: Any = None


@dataclass(frozen=True)
class ActionOutcome:
    """What calling an action gave: the status, what the team's API answered, what the model may see."""

    status: ActionStatus  # OK, REJECTED, FAILED or INVALID_ARGUMENTS (the caller decides only these)
    http_status: int | None = None
    latency_ms: int | None = None
    result: dict[str, Any] | None = None  # the declared fields only
    error: str | None = None  # short and safe to store and show: never a secret, never the raw body
    request: PreparedRequest | None = None

    def tool_content(self) -> str:
        """The tool result the model is given."""
        if self.status == ActionStatus.OK:
            return tool_result("ok", data=self.result or {})
        if self.status == ActionStatus.REJECTED:
            return tool_result("rejected", http_status=self.http_status, data=self.result or {},
                               message="The system answered that it cannot do this (for example, no such record). "
                                       "Tell the visitor politely; do not guess.")
        if self.status == ActionStatus.INVALID_ARGUMENTS:
            return tool_result("invalid_arguments", errors=self.error,
                               message="Fix the arguments (ask the visitor if needed) before calling again.")
        return tool_result("failed", error=self.error)


def tool_result(status: str, **values: Any) -> str:
    """A tool result: one JSON object with a `status`. What the team's API returned is under `data`, as data:
    nothing in it is an instruction."""
    return json.dumps({"status": status, **{k: v for k, v in values.items() if v is not None}},
                      ensure_ascii=False, separators=(",", ":"))


SIGN_IN_REQUIRED = tool_result(
    ActionStatus.SIGN_IN_REQUIRED,
    message="This needs a signed-in visitor and this one is not signed in. Ask them to sign in first.")
AWAITING_CONFIRMATION = tool_result(
    ActionStatus.AWAITING_CONFIRMATION,
    message="Nothing was done yet: the visitor is asked to confirm in the chat.")
CANCELLED = tool_result(ActionStatus.CANCELLED, message="The visitor chose not to go ahead. Nothing was done.")
OVER_LIMIT = tool_result(ActionStatus.OVER_LIMIT,
                         message="Too many actions in one turn; answer with what you have.")


def unknown_action(name: str) -> str:
    return tool_result(ActionStatus.UNKNOWN_ACTION, message=f"There is no action called {name[:64]!r}.")

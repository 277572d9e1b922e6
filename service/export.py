"""Training data out of the conversation log: corrected misses (and good replies) as validated JSONL.

Conversations are read in batches by id, so memory stays flat however large the log is; every line is
built from the exact system prompt the model saw (the stored snapshot), redacted, validated and
de-duplicated before it is written. A turn that called actions (service/actions/) is exported, in the
OpenAI chat format, as the model lived it: per round an assistant message with `tool_calls` and one `tool`
message per call with exactly the tool result the model got, then the final answer (for a corrected miss,
the correction replaces only that final text), so fine-tuning learns when to call what.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, cast

from sqlalchemy import Row, Table, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from .actions.stored import clean_strings, clean_tool_content
from .errors import Unprocessable
from .escalation import POLICY_PREFIX
from .export_format import CHECKS, FORMATS
from .inbox import day_end, day_start, split_ref
from .models import (
    ActionCall,
    ActionStatus,
    Conversation,
    Correction,
    Escalation,
    Feedback,
    Message,
    PromptSnapshot,
    Role,
)
from .providers.base import ESCALATE_TOOL, ESCALATE_TOOL_NAME
from .redact import Redactor
from .review import is_answer, is_model_turn

SELECTIONS = ("corrected", "misses", "all")
BATCH = 500
TOOL_RESULT = json.dumps({"status": "handed_over"})
_MESSAGES = cast(Table, Message.__table__)
_FEEDBACK = cast(Table, Feedback.__table__)
_CORRECTIONS = cast(Table, Correction.__table__)
_ESCALATIONS = cast(Table, Escalation.__table__)
_ACTIONS = cast(Table, ActionCall.__table__)
# Rounds the model got wrong (or did not decide: a call made on the visitor's Confirm) are context, never targets.
_NOT_LEARNED = {ActionStatus.INVALID_ARGUMENTS, ActionStatus.UNKNOWN_ACTION, ActionStatus.OVER_LIMIT}
_COLUMNS = tuple(_MESSAGES.c[name] for name in (
    "id", "conversation_id", "role", "origin", "content", "provider", "model_requested", "prompt_name",
    "prompt_version", "prompt_sha256", "reply_to_id",
    "tool_calls", "corrects_id", "miss_reasons", "review", "created_at"))


@dataclass(frozen=True)
class ExportOptions:
    format: str = "openai-chat"
    select: str = "corrected"
    since: date | None = None
    until: date | None = None
    prompt_version: str | None = None
    redact: bool = True
    validation_split: float = 0.0
    seed: int = 0
    # Agents' answers after a deterministic policy handoff (refund, legal, ...), off by default: they teach
    # the model to answer what the policy reserves for people.
    include_policy_handoffs: bool = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise Unprocessable(f"format must be one of {', '.join(FORMATS)}", code="invalid_format")
        if self.select not in SELECTIONS:
            raise Unprocessable(f"select must be one of {', '.join(SELECTIONS)}", code="invalid_select")
        if not 0 <= self.validation_split < 1:
            raise Unprocessable("validation split must be at least 0 and below 1", code="invalid_split")
        if self.prompt_version:
            split_ref(self.prompt_version)


@dataclass
class ExportSummary:
    written: int = 0
    validation: int = 0
    waiting_for_review: int = 0
    estimated_tokens: int = 0
    conversations: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def lines(self, destination: str) -> list[str]:
        """The human summary printed on stderr."""
        text = [f"export: {self.written} examples written to {destination}"
                + (f" ({self.validation} of them to the validation file)" if self.validation else "")
                + f", ~{self.estimated_tokens:,} tokens (estimate: characters / 4), "
                  f"from {self.conversations} conversations"]
        if self.waiting_for_review:
            text.append(f"  waiting for review: {self.waiting_for_review} misses without a correction (not exported)")
        for reason, count in self.skipped.most_common():
            text.append(f"  skipped {count}: {reason}")
        return text


@dataclass(frozen=True)
class ExportLine:
    text: str
    validation: bool
    conversation_id: str
    reply_id: int | None = None  # the bot reply the example stands for (a fine-tune records them)


@dataclass
class _Target:
    reply: Row[Any]
    content: str
    original: str | None  # what the model wrote; None when it wrote nothing the visitor saw
    with_tool_calls: bool
    system: str | None = None  # the system prompt, when the reply has no snapshot of its own


@dataclass
class _Batch:
    """What one batch of conversations needs to be exported."""

    messages: Sequence[Row[Any]] = ()
    ratings: dict[int, str] = field(default_factory=dict)
    corrections: dict[int, str] = field(default_factory=dict)
    policy_triggers: set[int] = field(default_factory=set)  # visitor messages a policy handed over
    actions: dict[int, list[Row[Any]]] = field(default_factory=dict)  # action calls by the reply of their turn


def in_validation(seed: int, conversation_id: str, fraction: float) -> bool:
    """Seeded, conversation-level split: a conversation is always wholly on one side."""
    digest = hashlib.sha256(f"{seed}:{conversation_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


class Exporter:
    """Streams training examples out of the log."""

    def __init__(self, sessions: sessionmaker[Session], options: ExportOptions,
                 action_tools: Sequence[dict[str, Any]] = ()) -> None:
        """`action_tools`: the actions as offered to the model (`ActionSet.tools()`), for the `tools` array of
        lines that call them; an action missing there (its file was removed) gets a definition by name only."""
        self.sessions = sessions
        self.options = options
        self.action_tools = {tool["function"]["name"]: tool for tool in action_tools}
        self.summary = ExportSummary()
        self._snapshots: dict[str, str | None] = {}
        self._version_prompts: dict[tuple[str, str], str | None] = {}
        self._seen: set[bytes] = set()

    def count_conversations(self) -> int:
        """How many conversations the export will look at (for a progress bar)."""
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(Conversation)) or 0

    def lines(self, on_batch: Any = None) -> Iterator[ExportLine]:
        """Every valid, de-duplicated example, as JSON lines; `on_batch(n)` after each batch of conversations."""
        last = ""
        while True:
            with self.sessions() as session:
                batch = session.execute(
                    select(Conversation.id, Conversation.exclude_from_training)
                    .where(Conversation.id > last).order_by(Conversation.id).limit(BATCH)).all()
                if not batch:
                    return
                last = batch[-1][0]
                loaded = self._load(session, [row[0] for row in batch])
                self._fetch_snapshots(session, loaded)
            excluded = {row[0] for row in batch if row[1]}
            grouped: dict[str, list[Row[Any]]] = {}
            for message in loaded.messages:
                grouped.setdefault(message.conversation_id, []).append(message)
            for conversation_id, rows in grouped.items():
                yield from self._conversation(conversation_id, rows, loaded, conversation_id in excluded)
            self.summary.conversations += len(batch)
            if on_batch is not None:
                on_batch(len(batch))

    def _load(self, session: Session, ids: list[str]) -> _Batch:
        """The messages of those of `ids` that can yield a line, with their ratings and corrections.

        Only a conversation with a correction, an agent answer, a rating, a review or a miss can (or, when
        asked for, a policy handoff): the others (most of a log) are never read. Plain column rows (Core),
        not ORM entities.
        """
        connection = session.connection()
        ratings: dict[int, str] = {}
        corrections: dict[int, str] = {}
        triggers: set[int] = set()
        wanted: set[str] = set()
        if self.options.include_policy_handoffs:
            for conversation_id, message_id in connection.execute(
                    select(_ESCALATIONS.c.conversation_id, _ESCALATIONS.c.message_id)
                    .where(_ESCALATIONS.c.conversation_id.in_(ids), _ESCALATIONS.c.message_id.is_not(None),
                           _ESCALATIONS.c.reason.startswith(POLICY_PREFIX))):
                triggers.add(message_id)
                wanted.add(conversation_id)
        for conversation_id, message_id, rating in connection.execute(
                select(_MESSAGES.c.conversation_id, _FEEDBACK.c.message_id, _FEEDBACK.c.rating)
                .join(_MESSAGES, _MESSAGES.c.id == _FEEDBACK.c.message_id)
                .where(_MESSAGES.c.conversation_id.in_(ids))):
            ratings[message_id] = rating
            wanted.add(conversation_id)
        for conversation_id, message_id, content in connection.execute(
                select(_MESSAGES.c.conversation_id, _CORRECTIONS.c.message_id, _CORRECTIONS.c.content)
                .join(_MESSAGES, _MESSAGES.c.id == _CORRECTIONS.c.message_id)
                .where(_MESSAGES.c.conversation_id.in_(ids)).order_by(_CORRECTIONS.c.id)):
            corrections[message_id] = content
            wanted.add(conversation_id)
        wanted.update(connection.scalars(
            select(_MESSAGES.c.conversation_id).distinct()
            .where(_MESSAGES.c.conversation_id.in_(ids),
                   or_(_MESSAGES.c.miss_reasons.is_not(None), _MESSAGES.c.review.is_not(None),
                       _MESSAGES.c.corrects_id.is_not(None)))))
        if not wanted:
            return _Batch(ratings=ratings, corrections=corrections)
        messages = connection.execute(select(*_COLUMNS).where(_MESSAGES.c.conversation_id.in_(sorted(wanted)))
                                      .order_by(_MESSAGES.c.conversation_id, _MESSAGES.c.id)).all()
        actions: dict[int, list[Row[Any]]] = {}
        for call in connection.execute(
                select(_ACTIONS.c.id, _ACTIONS.c.reply_id, _ACTIONS.c.round, _ACTIONS.c.call_id, _ACTIONS.c.action,
                       _ACTIONS.c.arguments, _ACTIONS.c.status, _ACTIONS.c.tool_content, _ACTIONS.c.confirms_id)
                .where(_ACTIONS.c.conversation_id.in_(sorted(wanted)), _ACTIONS.c.reply_id.is_not(None))
                .order_by(_ACTIONS.c.reply_id, _ACTIONS.c.round, _ACTIONS.c.id)):
            actions.setdefault(call.reply_id, []).append(cast(Row[Any], call))
        return _Batch(messages, ratings, corrections, triggers, actions)

    def _fetch_snapshots(self, session: Session, loaded: _Batch) -> None:
        wanted = {m.prompt_sha256 for m in loaded.messages if m.prompt_sha256} - set(self._snapshots)
        if wanted:
            found = dict(session.execute(select(PromptSnapshot.sha256, PromptSnapshot.content)
                                         .where(PromptSnapshot.sha256.in_(wanted))).all())
            self._snapshots.update({sha: found.get(sha) for sha in wanted})
        versions = {(m.prompt_name, m.prompt_version) for m in loaded.messages
                    if m.reply_to_id in loaded.policy_triggers and m.prompt_name} - set(self._version_prompts)
        for name, version in versions:
            # A policy handoff sent no prompt: the version's latest snapshot is what the model would have seen.
            self._version_prompts[(name, version)] = session.scalars(
                select(PromptSnapshot.content)
                .where(PromptSnapshot.prompt_name == name, PromptSnapshot.prompt_version == version)
                .order_by(PromptSnapshot.created_at.desc()).limit(1)).first()

    def _conversation(self, conversation_id: str, rows: list[Row[Any]], loaded: _Batch,
                      excluded: bool) -> Iterator[ExportLine]:
        agent_answers = {m.corrects_id: m.content for m in rows if m.role == Role.AGENT and m.corrects_id}
        redaction = _Redaction() if self.options.redact else None
        for index, reply in enumerate(rows):
            if is_model_turn(reply) and self._wanted(reply):
                correction = loaded.corrections.get(reply.id) or agent_answers.get(reply.id)
                target = self._target(reply, correction, loaded.ratings.get(reply.id))
            elif reply.reply_to_id in loaded.policy_triggers and self._wanted(reply):
                target = self._policy_target(rows, index)
            else:
                continue
            if target is None:
                continue
            if excluded:
                self.summary.skipped["conversation excluded from training"] += 1
                continue
            line = self._line(conversation_id, rows[:index], target, redaction, loaded.actions)
            if line is not None:
                yield line

    def _policy_target(self, rows: list[Row[Any]], index: int) -> _Target | None:
        """The first agent answer after the policy handoff `rows[index]`, with its version's prompt."""
        if self.options.select == "misses":
            return None  # the handoff was right: no miss
        handoff = rows[index]
        for row in rows[index + 1:]:
            if is_model_turn(row):
                return None  # the bot answered again before any agent did
            if row.role == Role.AGENT:
                if row.corrects_id is not None:
                    return None
                return _Target(handoff, row.content, None, with_tool_calls=False,
                               system=self._version_prompts.get((handoff.prompt_name, handoff.prompt_version)))
        return None

    def _wanted(self, reply: Row[Any]) -> bool:
        options = self.options
        if options.prompt_version and f"{reply.prompt_name}@{reply.prompt_version}" != options.prompt_version:
            return False
        if options.since and reply.created_at < day_start(options.since):
            return False
        return not (options.until and reply.created_at >= day_end(options.until))

    def _target(self, reply: Row[Any], correction: str | None, rating: str | None) -> _Target | None:
        """What the reply should have said: a person's answer, or (`all`) its own text when it was good.

        A fixed text (the model failed or was blocked) is never a target and never the rejected answer:
        only a person's answer to that turn can be.
        """
        select_mode = self.options.select
        original = reply.content if is_answer(reply) else None
        if correction and (select_mode != "misses" or reply.miss_reasons):
            return _Target(reply, correction, original, with_tool_calls=False)
        if select_mode == "misses" and reply.miss_reasons:
            self.summary.waiting_for_review += 1
            return None
        if original is None:
            return None
        good = reply.review == "good" or (rating == "up" and not reply.miss_reasons and reply.review != "flagged")
        if select_mode == "all" and good:
            return _Target(reply, reply.content, reply.content, with_tool_calls=bool(reply.tool_calls))
        return None

    def _line(self, conversation_id: str, history: list[Row[Any]], target: _Target,
              redaction: _Redaction | None, actions: dict[int, list[Row[Any]]]) -> ExportLine | None:
        example = self._example(conversation_id, history, target, redaction, actions)
        if example is None:
            return None
        problems = CHECKS[self.options.format](example)
        if problems:
            self.summary.skipped[f"invalid: {problems[0]}"] += 1
            return None
        text = json.dumps(example, ensure_ascii=False, separators=(",", ":"))
        digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
        if digest in self._seen:
            self.summary.skipped["exact duplicate"] += 1
            return None
        self._seen.add(digest)
        validation = self.options.validation_split > 0 and in_validation(
            self.options.seed, conversation_id, self.options.validation_split)
        self.summary.written += 1
        self.summary.validation += validation
        self.summary.estimated_tokens += len(text) // 4
        return ExportLine(text, validation, conversation_id, target.reply.id)

    def _example(self, conversation_id: str, history: list[Row[Any]], target: _Target,
                 redaction: _Redaction | None, actions: dict[int, list[Row[Any]]]) -> dict[str, Any] | None:
        fmt = self.options.format
        if fmt == "dpo" and target.original is None:
            self.summary.skipped["dpo needs a model answer to reject (the model failed or was blocked)"] += 1
            return None
        if fmt == "dpo" and target.content == target.original:
            self.summary.skipped["dpo needs a correction to prefer over the original reply"] += 1
            return None
        turns = _history_messages(history, redaction.history if redaction else _keep, with_tools=fmt == "openai-chat")
        tail = redaction.after_history() if redaction else None

        def clean(text: str) -> str:
            return tail.redact(text) if tail else text

        if not turns or turns[-1]["role"] != "user":
            self.summary.skipped["reply does not follow a user message"] += 1
            return None
        if fmt == "eval-cases":
            messages = [{"role": m["role"], "content": m["content"]}
                        for m in turns if m["role"] in ("user", "assistant")]
            return {"id": f"{conversation_id}-{target.reply.id}", "messages": messages,
                    "expect": {"reference": clean(target.content)}}
        system = target.system or self._snapshots.get(target.reply.prompt_sha256 or "")
        if system is None:
            self.summary.skipped["no stored prompt snapshot"] += 1
            return None
        # The system prompt stays exactly as sent: it is the operator's text, not customer data.
        prefix = [{"role": "system", "content": system}]
        if fmt == "dpo":
            for message in turns:
                message.pop("weight", None)
            return {"input": {"messages": prefix + turns},
                    "preferred_output": [{"role": "assistant", "content": clean(target.content)}],
                    "non_preferred_output": [{"role": "assistant", "content": clean(target.original or "")}]}
        rounds = _rounds(actions.get(target.reply.id, []), lambda call: _call_texts(call, clean))
        final: dict[str, Any] = {"role": "assistant", "content": clean(target.content), "weight": 1}
        if target.with_tool_calls:
            final["tool_calls"] = target.reply.tool_calls
        example: dict[str, Any] = {"messages": prefix + turns + rounds + [final]}
        called = [call["function"]["name"] for m in example["messages"] for call in m.get("tool_calls", ())]
        if called:
            example["tools"] = self._tools(called)
        return example

    def _tools(self, called: list[str]) -> list[dict[str, Any]]:
        """The `tools` array of a line with tool calls: escalate_to_human, then every action it calls."""
        tools = [ESCALATE_TOOL]
        for name in dict.fromkeys(called):
            if name != ESCALATE_TOOL_NAME:
                tools.append(self.action_tools.get(name) or {
                    "type": "function", "function": {"name": name, "parameters": {"type": "object"}}})
        return tools


class _Redaction:
    """One conversation's redaction, each message redacted once however many examples include it.

    An example is redacted as if by a new `Redactor` over its messages in order (placeholders numbered
    from 1 within the example); its history is a prefix of the conversation, so the redacted history
    messages are shared, and the example's own reply continues from a copy of the state after them.
    """

    def __init__(self) -> None:
        self._redactor = Redactor()
        self._done: dict[int, str] = {}

    def history(self, row: Row[Any]) -> str:
        if row.id not in self._done:
            self._done[row.id] = self._redactor.redact(row.content)
        return self._done[row.id]

    def after_history(self) -> Redactor:
        return self._redactor.copy()


def _keep(row: Row[Any]) -> str:
    return str(row.content)


def _call_texts(call: Row[Any], clean: Callable[[str], str]) -> tuple[str, str]:
    """A call's arguments (a JSON string, as the model wrote them) and tool result, every string in them cleaned."""
    return (json.dumps(clean_strings(call.arguments or {}, clean), ensure_ascii=False),
            clean_tool_content(call.tool_content, clean))


def _rounds(calls: list[Row[Any]], texts: Callable[[Row[Any]], tuple[str, str]]) -> list[dict[str, Any]]:
    """The reply's turn's action calls in chat format: per round, the assistant's `tool_calls` (weight 1 when the
    model got the round right) and a `tool` message per call with what the model was given."""
    messages: list[dict[str, Any]] = []
    for number in dict.fromkeys(call.round for call in calls):
        this_round = [call for call in calls if call.round == number]
        pairs = [texts(call) for call in this_round]
        right = not any(call.status in _NOT_LEARNED or call.confirms_id is not None
                                    for call in this_round)
        messages.append({"role": "assistant", "content": None, "weight": 1 if right else 0, "tool_calls": [
            {"id": call.call_id, "type": "function", "function": {"name": call.action, "arguments": arguments}}
            for call, (arguments, _) in zip(this_round, pairs, strict=True)]})
        messages += [{"role": "tool", "tool_call_id": call.call_id, "content": content}
                     for call, (_, content) in zip(this_round, pairs, strict=True)]
    return messages


def _history_messages(history: list[Row[Any]], clean: Callable[[Row[Any]], str],
                      with_tools: bool) -> list[dict[str, Any]]:
    """What the visitor saw before the reply, in chat format; earlier assistant turns carry weight 0 unless
    reviewed good. Earlier turns' action calls are left out: a turn's model is given the conversation's text,
    not the tool results of turns before it, and the example is what it was given."""
    messages: list[dict[str, Any]] = []
    for row in history:
        if not (row.content or "").strip() or row.role == Role.SYSTEM:
            continue
        if row.role == Role.USER:
            messages.append({"role": "user", "content": clean(row)})
            continue
        good = is_answer(row) and row.review == "good"
        message: dict[str, Any] = {"role": "assistant", "content": clean(row), "weight": 1 if good else 0}
        if with_tools and row.tool_calls:
            message["tool_calls"] = row.tool_calls
            messages.append(message)
            messages += [{"role": "tool", "tool_call_id": call["id"], "content": TOOL_RESULT}
                         for call in row.tool_calls]
            continue
        messages.append(message)
    return messages

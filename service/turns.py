"""One user message -> one reply: the only place that orchestrates a turn.

store user message (a new conversation's experiment arm with it; its commit runs on beside what follows and is
awaited before any text is shown, any action made or the reply stored) -> the conversation's prompt
version (its arm, else the configured one) -> retrieve knowledge -> deterministic escalation -> assemble prompt
(a visitor's Confirm/Cancel: make or refuse the waiting action call first) -> provider (through the leak guard)
-> actions the model calls: checked, made (or refused, or left waiting for Confirm) and their results given
back, asking again until it answers (at most SUPPORTBOT_ACTIONS_MAX_CALLS) -> detect escalation -> cite sources
-> store reply (with the turn's action calls).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import chain
from typing import Any

import anyio
from opentelemetry.trace import INVALID_SPAN, Span
from sqlalchemy.exc import IntegrityError

from .actions.base import (
    AWAITING_CONFIRMATION,
    CANCELLED,
    OVER_LIMIT,
    SIGN_IN_REQUIRED,
    ActionOutcome,
    ActionSpec,
    unknown_action,
)
from .actions.files import ActionSet
from .actions.log import ActionCallRecord, Confirmation, Decision, calls_of_turn
from .config import Settings
from .errors import PayloadTooLarge, ServiceUnavailable, Unprocessable
from .escalation import (
    ACTION_FAILED,
    BUDGET_EXCEEDED,
    MODEL_UNAVAILABLE,
    NO_ANSWER,
    USER_REQUEST,
    EscalationSignal,
    Turnlet,
    count_failures,
    detect_after,
    detect_before,
    normalize,
)
from .fixed_texts import ENGLISH
from .guard import StreamGate
from .handoff import BOT_FELL_SHORT, HANDOFF_PROVIDER, summarize
from .knowledge import KnownIssue
from .language import Guess, english_name
from .models import ActionCall, ActionStatus, ConversationStatus, Escalation, FinishStatus, Message, Origin, Role, Said
from .prompts import PromptVersion, RenderedPrompt
from .providers.base import (
    ESCALATE_TOOL,
    ESCALATE_TOOL_NAME,
    ChatRequest,
    Completion,
    StreamBroken,
    TextDelta,
    ToolCall,
)
from .providers.resilient import CircuitOpen
from .redact import Redactor, stored_kinds
from .review import DID_NOT_HELP, ESCALATED, LEAK_BLOCKED, NEXT_TURN_ESCALATED, is_answer
from .runtime import Runtime
from .sources import MAX_SOURCES, Source, answered_from, relevant_in_prompt, sources_from_json
from .store import ReplyRecord, TurnStart
from .telemetry import metrics, tracing

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class TurnOutcome:
    """The result of a turn, as the API returns it."""

    conversation_id: str
    message_id: int
    reply_id: int
    reply: str
    status: str
    escalation: EscalationSignal | None
    prompt_version: str | None
    timings: dict[str, float] = field(default_factory=dict)
    sources: tuple[Source, ...] = ()  # the knowledge the reply drew on (service/sources.py); () for fixed texts
    language: str | None = None  # the visitor message's (service/language.py)
    actions: tuple[dict[str, str], ...] = ()  # the turn's action calls in order: {"name", "status"}
    confirmation: Confirmation | None = None  # set when the turn asks the visitor to confirm an action


@dataclass
class _Asked:
    """What the provider gave over a turn's asks: the last answer, and the text and tokens of all of them."""

    completion: Completion | None = None
    status: str = FinishStatus.OK
    signal: EscalationSignal | None = None
    rounds: int = 0
    texts: list[str] = field(default_factory=list)
    tokens_in: int | None = None
    tokens_out: int | None = None

    def add(self, completion: Completion | None, status: str, signal: EscalationSignal | None) -> None:
        self.completion, self.status, self.signal = completion, status, signal
        self.rounds += 1
        if completion is None:
            return
        if completion.text.strip():
            self.texts.append(completion.text)
        if completion.tokens_in is not None:
            self.tokens_in = (self.tokens_in or 0) + completion.tokens_in
        if completion.tokens_out is not None:
            self.tokens_out = (self.tokens_out or 0) + completion.tokens_out

    def merged(self) -> Completion | None:
        """The last answer with every ask's text (paragraphs) and tokens: what the turn's reply is made of."""
        if self.completion is None:
            return None
        if self.rounds == 1:
            return self.completion
        return replace(self.completion, text="\n\n".join(self.texts), tokens_in=self.tokens_in,
                       tokens_out=self.tokens_out)


@dataclass(frozen=True)
class _Ending:
    """How an action ends a turn without asking the model again."""

    kind: str  # "failed" (a handoff), "sign_in", "confirm"
    detail: str | None = None
    summary: str = ""


def _asked_for_person(completion: Completion) -> bool:
    return any(call.name == ESCALATE_TOOL_NAME for call in completion.tool_calls)


def _calls_actions(completion: Completion) -> bool:
    """Whether the model asked for actions (and not, in the same breath, for a person: that wins)."""
    names = [call.name for call in completion.tool_calls]
    return bool(names) and ESCALATE_TOOL_NAME not in names


def check_message(runtime: Runtime, content: str) -> str:
    """The message as it will be stored (personal data redacted as configured), or a clear error when it is
    empty or too long."""
    text = content.strip()
    if not text:
        raise Unprocessable("message content is empty", code="empty_message")
    limit = runtime.settings.max_message_chars
    if len(text) > limit:
        raise PayloadTooLarge(f"message is {len(text)} characters; the limit is {limit}", code="message_too_long")
    return redact_for_storage(runtime.settings, text)


async def start_turn(
    runtime: Runtime, conversation_id: str, content: str, client_message_id: str | None = None,
    decision: Decision | None = None,
) -> Turn:
    """Validate and store the user message (committed before anything else); return the turn to run.

    With a `decision` (the visitor pressed Confirm or Cancel), the message is the decision's label and the turn
    acts on it before asking the model; its language is the conversation's, not detected from the label.
    """
    settings = runtime.settings
    text = check_message(runtime, content)
    started = time.perf_counter()
    span = tracing.start_turn(conversation_id)
    loop = asyncio.get_running_loop()
    prepared: asyncio.Future[TurnStart] = loop.create_future()
    stored = asyncio.ensure_future(runtime.db_threads.run(tracing.step(
        span, "supportbot.db.store_message", lambda: runtime.log.begin_turn(
            conversation_id, text, client_message_id,
            max_turns=settings.max_turns, history_limit=settings.history_max_messages,
            with_usage=bool(settings.daily_token_budget or settings.daily_cost_budget_usd),
            language=runtime.detection.guess(text) if decision is None else
            Guess(None, runtime.detection.languages, runtime.detection.default),
            # Deterministic from the id, so computing it on every message is cheap and agrees across replicas;
            # only the first message's is stored.
            arm=runtime.prompts.arm(settings.prompt, conversation_id, runtime.arm_stops.current()),
            prepared=lambda start: loop.call_soon_threadsafe(_settle, prepared, start),
        ), ends_turn_on_error=True)))
    # The commit's outcome is awaited by the turn (Turn._committed); this only keeps an unawaited failure (the
    # visitor gone before it) out of asyncio's "exception was never retrieved" log.
    stored.add_done_callback(lambda task: task.cancelled() or task.exception())
    with anyio.CancelScope(shield=True):  # like the database call itself: a message being stored is stored
        await asyncio.wait((prepared, stored), return_when=asyncio.FIRST_COMPLETED)
    if prepared.done():
        # The statements have run; the commit (the WAL's fsync on SQLite, the round trip on PostgreSQL) goes on
        # while the turn retrieves, assembles and asks the model. Nothing is shown or done before it lands.
        start, committing = prepared.result(), stored
    else:
        start, committing = stored.result(), None  # a replayed message (nothing to commit), or the refusal
    return Turn(runtime, start, db_seconds=time.perf_counter() - started, span=span, began=started,
                decision=decision, committing=committing)


def _settle(future: asyncio.Future[TurnStart], start: TurnStart) -> None:
    """On the event loop: the turn is ready (its statements ran), its commit still going on."""
    if not future.done():
        future.set_result(start)


class Turn:
    """A stored user message waiting for its reply."""

    def __init__(self, runtime: Runtime, start: TurnStart, db_seconds: float = 0.0, span: Span = INVALID_SPAN,
                 began: float | None = None, decision: Decision | None = None,
                 committing: asyncio.Future[TurnStart] | None = None) -> None:
        self.runtime = runtime
        self.start = start
        self._committing = committing  # the user message's commit, while it is still going on
        self.span = span  # the turn's trace (service/telemetry/tracing.py); a no-op span when tracing is off
        self._began = time.perf_counter() - db_seconds if began is None else began
        self._mode = "json"
        self.timings: dict[str, float] = {"db": db_seconds, "upstream": 0.0}
        self._text_sent: list[str] = []
        self._provider_name = runtime.provider.name
        self._knowledge = runtime.knowledge.current()  # read once: the search and the prompt see the same entries
        self._hits: list[tuple[KnownIssue, float]] = []  # the entries the message matches best, found once per turn
        self._prompt_hits: list[tuple[KnownIssue, float]] | None = None  # the prompt's, when the same search found them
        self.decision = decision  # the visitor's Confirm or Cancel this turn acts on, if any
        self._calls: list[ActionCallRecord] = []  # the actions the model called, as they will be stored
        self._executed = 0  # of those, the ones actually sent to the team's APIs

    async def run(self) -> TurnOutcome:
        """The whole turn without streaming."""
        outcome: TurnOutcome | None = None
        async for event in self.events(stream=False):
            if isinstance(event, TurnOutcome):
                outcome = event
        assert outcome is not None
        return outcome

    async def events(self, stream: bool) -> AsyncIterator[TextDelta | TurnOutcome]:
        """Text deltas (when streaming), then the outcome; a client that goes away leaves a `partial` reply."""
        self._mode = "sse" if stream else "json"
        waiting = True
        try:
            async with aclosing(self._events(stream)) as events:
                async for event in events:
                    await self._committed()  # nothing reaches the visitor before their message is stored
                    if waiting and isinstance(event, TextDelta):
                        waiting = False
                        metrics.record_first_token(self._provider_name, time.perf_counter() - self._began)
                    yield event
        except BaseException as error:
            tracing.fail(self.span, error)
            raise
        finally:
            self.span.end()

    async def _committed(self) -> None:
        """Wait for the user message's commit, begun before the turn; its error (the message was not stored) ends
        the turn before anything is shown, stored or done for it."""
        committing = self._committing
        if committing is None:
            return
        if not committing.done():
            waited = time.perf_counter()
            with anyio.CancelScope(shield=True):
                await asyncio.wait((committing,))
            self.timings["db"] += time.perf_counter() - waited
        committing.result()  # a failed commit raises here every time it is asked
        self._committing = None

    async def _events(self, stream: bool) -> AsyncGenerator[TextDelta | TurnOutcome, None]:
        if self.start.reply is not None:
            yield await self._replayed(self.start.reply, self.start.escalation)
            return
        try:
            version = self._version()
        except LookupError as error:
            raise ServiceUnavailable(f"prompt not available: {error}", code="prompt_unavailable") from None
        content, top_k = self.start.user_message.content, self.runtime.settings.knowledge_top_k
        # A knowledge base too large to inline is searched for the prompt with the visitor's last few messages:
        # for a first message that is the message alone, and one search serves both.
        shared = not self._inlined() and self._retrieved_query() == content
        with tracing.child(self.span, "supportbot.retrieval"):
            hits = await self.runtime.retriever.search(self._knowledge, content, max(MAX_SOURCES, top_k) if shared
                                                       else MAX_SOURCES)
        self._hits = hits[:MAX_SOURCES]
        if shared:
            self._prompt_hits = hits[:top_k]
        fixed = self._fixed_reply()
        if fixed is not None:
            text, handover, new = fixed
            if stream:
                yield TextDelta(text)
            yield await self._store_fixed(version, text, handover, new)
            return
        async for event in self._model_turn(version, stream):
            yield event

    async def _model_turn(self, version: PromptVersion, stream: bool) -> AsyncIterator[TextDelta | TurnOutcome]:
        """Ask the provider, running the actions it calls between asks; every failure ends in a stored reply and,
        where due, a handover."""
        prompt = await self._assemble_prompt(version)
        offered = self.runtime.actions.current()
        request = self._request(version, prompt, offered.tools() if self.runtime.settings.actions_max_calls else [])
        guard = self.runtime.prompts.guard(version, company=self.runtime.settings.company_name,
                                           product=self.runtime.settings.product_name, canary=self.runtime.canary)
        gate = StreamGate(guard)
        began = time.perf_counter()
        asked = _Asked()
        ending: _Ending | None = None
        try:
            if self.decision is not None:
                request, ending = await self._act_on_decision(request, offered)
            while ending is None:
                if asked.rounds and "".join(self._text_sent).strip():
                    safe = gate.feed("\n\n")  # the text before a lookup and the answer after it, as paragraphs
                    if safe and stream:
                        self._text_sent.append(safe)
                        yield TextDelta(safe)
                async for delta in self._ask(request, stream, gate, asked):
                    yield delta
                completion = asked.completion
                if asked.status != FinishStatus.OK or completion is None or not _calls_actions(completion):
                    break
                request, ending = await self._run_actions(request, completion, asked.rounds - 1, offered)
                limit = self.runtime.settings.actions_max_calls
                if ending is None and asked.rounds > limit:
                    ending = _Ending("failed", detail=f"the model kept calling actions after {limit} calls")
        except BaseException:
            # The client went away (cancelled): keep what was produced, marked partial, then stop.
            with anyio.CancelScope(shield=True):
                await self._store(prompt, request, None, FinishStatus.PARTIAL, None, began, "".join(self._text_sent),
                                  Origin.MODEL)
            raise
        if ending is not None:
            text, signal = self._ending_reply(ending)
            sent = "".join(self._text_sent)
            if stream:
                yield TextDelta(text[len(sent):] if text.startswith(sent) else text)
            yield await self._store(prompt, request, asked.merged(), FinishStatus.OK, signal, began, text,
                                    Origin.FIXED)
            return
        completion, status, signal = asked.merged(), asked.status, asked.signal
        text = self._reply_text(completion, status, signal)
        origin = Origin.FIXED if status == FinishStatus.FAILED else Origin.MODEL
        if signal is None and completion is not None:
            signal = detect_after(completion)
            if signal is not None and signal.reason == NO_ANSWER and completion.wrong_language:
                signal = replace(signal, detail=f"the question is in {self.start.language}, the knowledge in "
                                                f"{self.runtime.settings.knowledge_language}; no match across "
                                                "languages")
        if signal is not None and completion is not None and not completion.text.strip():
            # The handoff text stands in for an empty reply; when the model called the escalation tool, that
            # call is its answer (and a reviewer may judge it good), otherwise nothing of the model's remains.
            text = self._text("handoff")
            origin = Origin.MODEL if completion.tool_calls else Origin.FIXED
        leak = guard.leak(completion.text) if completion is not None and completion.text else None
        if leak:
            # The reply repeats the system prompt: the visitor gets a fixed text (the `done` event's
            # content replaces anything shown), reviewers get the original.
            log.warning("conversation=%s reply blocked by the leak guard (%s)", self.start.conversation_id, leak)
            metrics.record_leak_block(self._provider_name)
            text, origin = self._text("leak"), Origin.FIXED
        extra = text[len("".join(self._text_sent)):] if text.startswith("".join(self._text_sent)) else ""
        if stream and extra:
            yield TextDelta(extra)
        sources: tuple[Source, ...] = ()
        if completion is not None and completion.text.strip() and not leak and text.startswith(completion.text):
            # Only the model's own words cite sources; a handoff or leak text standing in for them draws on nothing.
            sources = self._sources(prompt, completion)
        yield await self._store(prompt, request, completion, status, signal, began, text, origin,
                                blocked=completion.text if leak and completion else None, sources=sources)

    async def _ask(self, request: ChatRequest, stream: bool, gate: StreamGate,
                   asked: _Asked) -> AsyncIterator[TextDelta]:
        """One call to the provider (streamed text passes the leak gate); what it gave goes into `asked`."""
        call = tracing.start_model_call(self.span, request, self._provider_name)
        completion: Completion | None = None
        status = FinishStatus.OK
        signal: EscalationSignal | None = None
        failure: BaseException | None = None
        try:
            if stream:
                async for event in self.runtime.provider.stream(request):
                    if isinstance(event, TextDelta):
                        safe = gate.feed(event.text)
                        if safe:
                            self._text_sent.append(safe)
                            yield TextDelta(safe)
                    else:
                        completion = event
            else:
                completion = await self.runtime.provider.complete(request)
        except StreamBroken as error:
            failure = error
            log.warning("conversation=%s upstream stream broke: %s", self.start.conversation_id, error)
            completion, status = error.partial, FinishStatus.PARTIAL
            signal = EscalationSignal(MODEL_UNAVAILABLE, detail=str(error))
        except CircuitOpen as error:
            failure = error
            # The model is being skipped: answer from the knowledge base when it knows, else hand over.
            completion = await self.runtime.offline.answer(request)
            self._provider_name = self.runtime.offline.name
            if completion.no_answer:
                completion, status = None, FinishStatus.FAILED
                signal = EscalationSignal(MODEL_UNAVAILABLE, detail=str(error))
            elif stream:
                self._text_sent.append(completion.text)
                yield TextDelta(completion.text)
        except Exception as error:  # noqa: BLE001 - any provider failure must end in a polite handover
            log.warning("conversation=%s model unavailable: %s", self.start.conversation_id, error)
            failure, status = error, FinishStatus.FAILED
            signal = EscalationSignal(MODEL_UNAVAILABLE, detail=str(error) or type(error).__name__)
        except BaseException as error:
            tracing.end_model_call(call, completion, error)
            raise
        tracing.end_model_call(call, completion, failure)
        asked.add(completion, status, signal)

    async def _run_actions(self, request: ChatRequest, completion: Completion, round_: int,
                           offered: ActionSet) -> tuple[ChatRequest, _Ending | None]:
        """Run the actions the model called (in order), give it their results; the request to ask next, or how
        the turn ends without asking again (a confirmation to wait for, a sign-in, a failure)."""
        ending: _Ending | None = None
        results = []
        for tool_call in completion.tool_calls:
            record, ends = await self._call_action(tool_call, round_, offered, ending)
            self._calls.append(record)
            results.append({"role": "tool", "tool_call_id": tool_call.id, "content": record.tool_content})
            ending = ending or ends
        said = {"role": "assistant", "content": completion.text or None,
                "tool_calls": [c.as_openai() for c in completion.tool_calls]}
        # Past the limit the model is offered only the handoff: it must answer with what it has.
        tools = request.tools if self._executed < self.runtime.settings.actions_max_calls else [ESCALATE_TOOL]
        return replace(request, messages=[*request.messages, said, *results], tools=tools), ending

    async def _call_action(self, tool_call: ToolCall, round_: int, offered: ActionSet,
                           ended: _Ending | None) -> tuple[ActionCallRecord, _Ending | None]:
        """What one call of the model's becomes: refused, waiting for the visitor's Confirm, or made."""
        spec = offered.by_name.get(tool_call.name)
        try:
            arguments: dict[str, Any] | None = tool_call.parsed_arguments()
        except ValueError:
            arguments = None
        made = partial(ActionCallRecord, round=round_, call_id=tool_call.id[:100], action=tool_call.name[:64],
                       arguments=arguments)
        if spec is None:
            return made(status=ActionStatus.UNKNOWN_ACTION, tool_content=unknown_action(tool_call.name)), None
        if ended is not None or self._executed >= self.runtime.settings.actions_max_calls:
            return made(status=ActionStatus.OVER_LIMIT, tool_content=OVER_LIMIT), None
        invalid = "the arguments are not a JSON object" if arguments is None else \
            self.runtime.action_caller.validate(spec, arguments)
        if invalid is not None or arguments is None:
            outcome = ActionOutcome(ActionStatus.INVALID_ARGUMENTS, error=invalid)
            return made(status=outcome.status, tool_content=outcome.tool_content(), error=invalid), None
        if spec.identity == "required" and self.start.user_id is None:
            return made(status=ActionStatus.SIGN_IN_REQUIRED, tool_content=SIGN_IN_REQUIRED), _Ending("sign_in")
        if spec.side_effects:
            summary = spec.summary(arguments)
            return (made(status=ActionStatus.AWAITING_CONFIRMATION, tool_content=AWAITING_CONFIRMATION,
                         summary=summary), _Ending("confirm", summary=summary))
        return await self._execute(spec, arguments, made)

    async def _execute(self, spec: ActionSpec, arguments: dict[str, Any],
                       made: Callable[..., ActionCallRecord]) -> tuple[ActionCallRecord, _Ending | None]:
        """Call the team's API through the action caller; a failure ends the turn in a handoff."""
        await self._committed()  # a call to the team's API only for a message that is stored
        self._executed += 1
        user_id = self.start.user_id if spec.identity != "none" else None
        with tracing.child(self.span, "supportbot.action", {"supportbot.action": spec.name}) as span:
            outcome = await self.runtime.action_caller.call(spec, arguments, user_id)
            if span.is_recording():
                span.set_attributes({"supportbot.action.status": outcome.status,
                                     "http.response.status_code": outcome.http_status or 0})
        metrics.record_action(spec.name, outcome.status,
                              outcome.latency_ms / 1000 if outcome.latency_ms is not None else None)
        log.info("conversation=%s message=%s action=%s status=%s http_status=%s latency_ms=%s",
                 self.start.conversation_id, self.start.user_message.id, spec.name, outcome.status,
                 outcome.http_status, outcome.latency_ms)
        record = made(status=outcome.status, tool_content=outcome.tool_content(), http_status=outcome.http_status,
                      latency_ms=outcome.latency_ms, result=outcome.result, error=outcome.error)
        failed = outcome.status == ActionStatus.FAILED
        return record, _Ending("failed", detail=f"{spec.name}: {outcome.error}") if failed else None

    async def _act_on_decision(self, request: ChatRequest, offered: ActionSet) -> tuple[ChatRequest, _Ending | None]:
        """The visitor answered a confirmation: make the call (Confirm) or tell the model it was cancelled."""
        decision = self.decision
        assert decision is not None
        tool_call = ToolCall(decision.call_id, decision.action, json.dumps(decision.arguments, ensure_ascii=False))
        made = partial(ActionCallRecord, round=0, call_id=decision.call_id, action=decision.action,
                       arguments=decision.arguments, confirms_id=decision.action_call_id)
        spec = offered.by_name.get(decision.action)
        ending: _Ending | None = None
        if not decision.confirmed:
            record = made(status=ActionStatus.CANCELLED, tool_content=CANCELLED)
        elif spec is None:
            record = made(status=ActionStatus.UNKNOWN_ACTION, tool_content=unknown_action(decision.action))
        elif spec.identity == "required" and self.start.user_id is None:
            record, ending = made(status=ActionStatus.SIGN_IN_REQUIRED, tool_content=SIGN_IN_REQUIRED), \
                _Ending("sign_in")
        else:
            record, ending = await self._execute(spec, decision.arguments, made)
        self._calls.append(record)
        said = {"role": "assistant", "content": None, "tool_calls": [tool_call.as_openai()]}
        result = {"role": "tool", "tool_call_id": tool_call.id, "content": record.tool_content}
        return replace(request, messages=[*request.messages, said, result]), ending

    def _ending_reply(self, ending: _Ending) -> tuple[str, EscalationSignal | None]:
        """The reply when an action ends the turn: a fixed text in the visitor's language (and, for a failure,
        a handoff); what the model wrote before calling stays in front of it."""
        signal = None
        if ending.kind == "failed":
            text, signal = self._text("action_failed"), EscalationSignal(ACTION_FAILED, detail=ending.detail)
        elif ending.kind == "sign_in":
            text = self._text("action_sign_in")
        else:
            asking = self._text("action_confirm")
            text = asking.replace("{summary}", ending.summary) if "{summary}" in asking \
                else f"{asking} {ending.summary}"
        sent = "".join(self._text_sent)
        return (f"{sent}\n\n{text}" if sent.strip() else text), signal

    def _version(self) -> PromptVersion:
        """The conversation's arm for its life; without one (or once its version is gone), the configured prompt."""
        prompts, arm = self.runtime.prompts, self.start.arm
        if arm is not None:
            try:
                return prompts.exact(arm)
            except LookupError:
                log.warning("conversation=%s arm %s no longer exists; serving %s", self.start.conversation_id, arm,
                            self.runtime.settings.prompt)
        return prompts.resolve(self.runtime.settings.prompt)

    def _fixed_reply(self) -> tuple[str, EscalationSignal, bool] | None:
        """The reply when no model is asked: (text, escalation, whether it is a new escalation)."""
        settings = self.runtime.settings
        start = self.start
        if start.conversation_status == ConversationStatus.ESCALATED and settings.pause_bot_while_escalated:
            # A person has the conversation: store and acknowledge, do not let the model answer.
            existing = start.escalation
            current = EscalationSignal(existing.reason, existing.detail) if existing else \
                EscalationSignal(USER_REQUEST, "conversation is with a person")
            return self._text("escalated_ack"), current, False
        signal = detect_before(
            start.user_message.content,
            [Turnlet(m.role, m.content) for m in start.history],
            self.runtime.policies.rules(),
            failures_to_escalate=settings.escalate_after_failures,
            top_hit=self._top_hit,
            min_score=settings.offline_min_score,
            languages=self.runtime.languages.rules(settings.languages),
        )
        if signal is None:
            over = self._over_budget()
            if over is None:
                return None
            return self._text("budget"), EscalationSignal(BUDGET_EXCEEDED, over, self._summary()), True
        return self._text("handoff"), replace(signal, summary=self._summary()), True

    def _text(self, key: str) -> str:
        """A fixed text in the visitor's language."""
        return self.runtime.texts.get(key, self.start.language)

    def _over_budget(self) -> str | None:
        """Which budget this turn would go past, if any (checked before the model is asked)."""
        settings, start = self.runtime.settings, self.start
        if settings.conversation_token_cap and start.tokens_used >= settings.conversation_token_cap:
            return f"conversation used {start.tokens_used} tokens (cap {settings.conversation_token_cap})"
        if settings.daily_token_budget and start.day_tokens >= settings.daily_token_budget:
            return f"deployment used {start.day_tokens} tokens today (budget {settings.daily_token_budget})"
        if settings.daily_cost_budget_usd and start.day_cost >= settings.daily_cost_budget_usd:
            return f"deployment spent ${start.day_cost:.2f} today (budget ${settings.daily_cost_budget_usd:.2f})"
        return None

    @property
    def _top_hit(self) -> tuple[KnownIssue, float] | None:
        return self._hits[0] if self._hits else None

    def _sources(self, prompt: RenderedPrompt, completion: Completion) -> tuple[Source, ...]:
        """What the reply drew on: the offline provider's entry, or a hosted model's relevant prompt entries."""
        if completion.matched_issue is not None:
            issues = chain((issue for issue, _ in self._hits), self._knowledge.issues)
            return answered_from(issues, completion.matched_issue)
        if self._provider_name == self.runtime.offline.name:
            return ()  # a greeting or a thank-you: no entry behind it
        return relevant_in_prompt(self._hits, prompt.known_issue_ids, self.runtime.settings.offline_min_score)

    def _known_issue(self) -> str | None:
        hit = self._top_hit
        return hit[0].id if hit and hit[1] >= self.runtime.settings.offline_min_score else None

    def _summary(self) -> str:
        return summarize([*self.start.history, self.start.user_message])

    async def _store_fixed(
        self, version: PromptVersion, text: str, signal: EscalationSignal, new: bool
    ) -> TurnOutcome:
        record = ReplyRecord(
            conversation_id=self.start.conversation_id, reply_to_id=self.start.user_message.id,
            content=text, origin=Origin.FIXED, status=FinishStatus.OK, provider=HANDOFF_PROVIDER,
            model_requested=None,
            model_reported=None, prompt_name=version.name, prompt_version=version.version, prompt_sha256=None,
            prompt_text=None, tokens_in=None, tokens_out=None, cost_usd=None, latency_ms=None,
            escalation_reason=signal.reason if new else None, escalation_detail=signal.detail,
            escalation_summary=signal.summary, known_issue=self._known_issue(),
            **self._previous_reply_misses(handed_over=new and signal.reason in BOT_FELL_SHORT),
        )
        return await self._persist(record, signal, version.ref)

    def _previous_reply_misses(self, handed_over: bool) -> dict[str, Any]:
        """The bot's last answer becomes a miss when this message says it did not help, or hands over for that."""
        previous = next((m for m in reversed(self.start.history) if is_answer(m)), None)
        if previous is None:
            return {}
        reasons = []
        if handed_over:
            reasons.append(NEXT_TURN_ESCALATED)
        history = [Turnlet(m.role, m.content) for m in self.start.history]
        if count_failures(history, normalize(self.start.user_message.content)) >= 1:
            reasons.append(DID_NOT_HELP)
        return {"previous_reply_id": previous.id, "previous_reply_misses": tuple(reasons)}

    def _reply_text(self, completion: Completion | None, status: str, signal: EscalationSignal | None) -> str:
        if status == FinishStatus.FAILED:
            return self._text("model_unavailable")
        assert completion is not None
        if status == FinishStatus.PARTIAL:
            return f"{completion.text}\n\n{self._text('interrupted')}"
        return completion.text

    async def _assemble_prompt(self, version: PromptVersion) -> RenderedPrompt:
        runtime = self.runtime
        settings, knowledge = runtime.settings, self._knowledge
        if self._inlined():
            issues, complete = knowledge.issues, True
        else:
            hits = self._prompt_hits
            if hits is None:
                with tracing.child(self.span, "supportbot.retrieval"):
                    hits = await runtime.retriever.search(knowledge, self._retrieved_query(), settings.knowledge_top_k)
            issues = tuple(issue for issue, _ in hits)
            complete = False
        return runtime.prompts.assemble(version, knowledge, issues, complete=complete,
                                        company=settings.company_name, product=settings.product_name,
                                        canary=runtime.canary, language=self._language_name())

    def _inlined(self) -> bool:
        """Whether the prompt holds the whole knowledge base (else the entries a search finds)."""
        return self._knowledge.size_chars <= self.runtime.settings.knowledge_inline_max_chars

    def _retrieved_query(self) -> str:
        """What the prompt's known issues are searched with when the knowledge is too large to inline: the
        visitor's last few messages."""
        return " ".join(m.content for m in [*self.start.history[-3:], self.start.user_message] if m.role == Role.USER)

    def _language_name(self) -> str:
        """The visitor's language by its English name, as the prompt's `language` variable names it."""
        code = self.start.language or ENGLISH
        file = self.runtime.languages.languages().get(code)
        return file.english_name if file is not None else english_name(code)

    def _request(self, version: PromptVersion, prompt: RenderedPrompt, actions: list[dict[str, Any]]) -> ChatRequest:
        settings = self.runtime.settings
        messages = [{"role": "system", "content": prompt.text}]
        messages += model_history(self.start.history, settings.history_max_chars)
        messages.append({"role": "user", "content": self.start.user_message.content})
        if settings.redact_before_model:
            messages = messages[:1] + redact_for_model(messages[1:])
        return ChatRequest(
            model=version.model or self.runtime.model,
            messages=messages,
            max_tokens=version.max_tokens or settings.max_tokens,
            temperature=version.temperature,
            tools=[ESCALATE_TOOL, *actions],
            language=self.start.language,
        )

    async def _store(
        self, prompt: RenderedPrompt, request: ChatRequest, completion: Completion | None, status: str,
        signal: EscalationSignal | None, began: float, text: str, origin: Origin, blocked: str | None = None,
        sources: tuple[Source, ...] = (),
    ) -> TurnOutcome:
        latency = time.perf_counter() - began
        self.timings["upstream"] = latency
        provider = self._provider_name
        if signal is not None and signal.summary is None:
            signal = replace(signal, summary=self._summary())
        record = ReplyRecord(
            conversation_id=self.start.conversation_id, reply_to_id=self.start.user_message.id,
            content=text, origin=origin, status=status, provider=provider, model_requested=request.model,
            model_reported=completion.model_reported if completion else None,
            prompt_name=prompt.name, prompt_version=prompt.version, prompt_sha256=prompt.sha256,
            prompt_text=prompt.text,
            tokens_in=completion.tokens_in if completion else None,
            tokens_out=completion.tokens_out if completion else None,
            cost_usd=self._cost(request.model, completion),
            latency_ms=round(latency * 1000),
            # Only the handoff call: the actions' calls are stored with their results (action_calls).
            tool_calls=[c.as_openai() for c in completion.tool_calls if c.name == ESCALATE_TOOL_NAME]
            if completion and _asked_for_person(completion) else None,
            escalation_reason=signal.reason if signal else None,
            escalation_detail=signal.detail if signal else None,
            escalation_summary=signal.summary if signal else None,
            miss_reasons=tuple(r for r, on in ((ESCALATED, signal), (LEAK_BLOCKED, blocked)) if on),
            known_issue=self._known_issue(), blocked_content=blocked,
            sources=[source.as_json() for source in sources] or None,
            # One shared row per day is a hot spot on PostgreSQL: counted only when a daily budget is set.
            count_usage=bool(self.runtime.settings.daily_token_budget or self.runtime.settings.daily_cost_budget_usd),
            action_calls=tuple(self._calls),
            **self._previous_reply_misses(handed_over=False),
        )
        return await self._persist(record, signal, prompt.ref)

    async def _persist(self, record: ReplyRecord, signal: EscalationSignal | None, prompt_ref: str) -> TurnOutcome:
        await self._committed()
        written = time.perf_counter()
        record = replace(record, content=redact_for_storage(self.runtime.settings, record.content))
        try:
            reply_id, escalation, call_ids = await self.runtime.db_threads.run(
                tracing.step(self.span, "supportbot.db.store_reply", self.runtime.log.record_reply), record)
        except IntegrityError:
            # The same message was answered by a concurrent retry; return that answer.
            found, escalation = await self.runtime.db_threads.run(self.runtime.log.find_reply,
                                                                  self.start.user_message.id)
            assert found is not None
            return await self._replayed(found, escalation)
        self.timings["db"] += time.perf_counter() - written
        self._observe(record, reply_id, signal, prompt_ref)
        with tracing.current(self.span):
            log.info("conversation=%s message=%s reply=%s provider=%s status=%s escalation=%s latency_ms=%s",
                     self.start.conversation_id, self.start.user_message.id, reply_id, record.provider, record.status,
                     escalation.reason if escalation else None, record.latency_ms)
        return TurnOutcome(
            conversation_id=self.start.conversation_id, message_id=self.start.user_message.id,
            reply_id=reply_id, reply=record.content, status=record.status, escalation=signal,
            prompt_version=prompt_ref, timings=dict(self.timings), sources=sources_from_json(record.sources),
            language=self.start.language, actions=tuple({"name": c.action, "status": c.status} for c in self._calls),
            confirmation=_waiting(zip(call_ids, self._calls, strict=True)),
        )

    async def _replayed(self, reply: Message, escalation: Escalation | None) -> TurnOutcome:
        """A turn answered before (a resend, or a concurrent retry), with its action calls."""
        calls = await self.runtime.db_threads.run(calls_of_turn, self.runtime.log.sessions, self.start.user_message.id)
        return _stored_outcome(self.start, reply, escalation, calls)

    def _observe(self, record: ReplyRecord, reply_id: int, signal: EscalationSignal | None, prompt_ref: str) -> None:
        """Count the stored reply (service/telemetry/metrics.py) and describe it on the turn's span."""
        outcome = metrics.turn_outcome(record.status, signal is not None)
        metrics.record_turn(outcome, record.provider, prompt_ref, self.start.arm, self._mode,
                            time.perf_counter() - self._began)
        metrics.record_usage(record.model_requested or "none", record.tokens_in, record.tokens_out, record.cost_usd)
        if self.span.is_recording():
            self.span.set_attributes({
                "supportbot.message_id": self.start.user_message.id, "supportbot.reply_id": reply_id,
                "supportbot.outcome": outcome, "supportbot.provider": record.provider,
                "supportbot.prompt_version": prompt_ref, "supportbot.escalation": signal.reason if signal else "",
            })

    def _cost(self, model: str, completion: Completion | None) -> float | None:
        if completion is None or completion.tokens_in is None or completion.tokens_out is None:
            return None
        prices = self.runtime.settings.price_per_token(completion.model_reported or model) \
            or self.runtime.settings.price_per_token(model)
        if prices is None:
            return None
        return round(completion.tokens_in * prices[0] + completion.tokens_out * prices[1], 8)


def redact_for_storage(settings: Settings, text: str) -> str:
    """`text` as it may be written: card numbers (and, with SUPPORTBOT_REDACT_STORED, more) replaced."""
    kinds = stored_kinds(redact_stored=settings.redact_stored, emails=settings.redact_stored_emails,
                         phones=settings.redact_stored_phones, cards=settings.redact_cards)
    return Redactor(kinds).redact(text) if kinds else text


def redact_for_model(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The conversation with personal data replaced by numbered placeholders, the same value the same one
    throughout what the model sees (`[EMAIL_1]` in the third message is the `[EMAIL_1]` of the first)."""
    redactor = Redactor(numbered=True)
    return [{**message, "content": redactor.redact(message["content"])} for message in messages]


def model_history(history: Sequence[Said], max_chars: int) -> list[dict[str, str]]:
    """Earlier messages in the model's format, newest kept first when over `max_chars`.

    Agent replies are shown to the model as the assistant's; failed bot replies are left out.
    """
    kept: list[dict[str, str]] = []
    total = 0
    for message in reversed(history):
        if message.role == Role.ASSISTANT and message.status == FinishStatus.FAILED:
            continue
        if message.role not in (Role.USER, Role.ASSISTANT, Role.AGENT):
            continue
        total += len(message.content)
        if total > max_chars:
            break
        kept.append({"role": "user" if message.role == Role.USER else "assistant", "content": message.content})
    kept.reverse()
    return kept


def _stored_outcome(start: TurnStart, reply: Message, escalation: Escalation | None,
                    calls: Sequence[ActionCall] = ()) -> TurnOutcome:
    signal = EscalationSignal(escalation.reason, escalation.detail, escalation.summary) if escalation else None
    version = f"{reply.prompt_name}@{reply.prompt_version}" if reply.prompt_name else None
    return TurnOutcome(
        conversation_id=start.conversation_id, message_id=start.user_message.id, reply_id=reply.id,
        reply=reply.content, status=reply.status, escalation=signal, prompt_version=version,
        sources=sources_from_json(reply.sources), language=start.language,
        actions=tuple({"name": c.action, "status": c.status} for c in calls),
        confirmation=_waiting((call.id, call) for call in calls),
    )


def _waiting(calls: Iterable[tuple[int, ActionCall | ActionCallRecord]]) -> Confirmation | None:
    """The turn's call left waiting for the visitor's Confirm, by its stored id (at most one per turn; calls the
    model made after it in the same response were not made)."""
    for call_id, call in calls:
        if call.status == ActionStatus.AWAITING_CONFIRMATION:
            return Confirmation(call_id, call.action, call.summary or "")
    return None


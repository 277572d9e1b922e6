"""OpenTelemetry tracing: one trace per turn, off by default, on with the standard OTEL_EXPORTER_OTLP_ENDPOINT.

A turn's trace: `supportbot.turn` with children for the database writes, retrieval, the model call (GenAI
semantic conventions) and, later, the handoff webhook's delivery (its context travels in the outbox row).
Spans are started and ended explicitly rather than made current, because a streamed turn is an async
generator: a context attached before a `yield` cannot be detached safely after it. Off, every helper returns
OpenTelemetry's no-op span and the SDK is never imported. Message text is recorded only with
SUPPORTBOT_TRACE_CONTENT=true.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode, Tracer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from ..providers.base import ChatRequest, Completion

T = TypeVar("T")

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
DEFAULT_SERVICE_NAME = "supportbot"
# The key under which an outbox row carries the trace it belongs to; the webhook sender takes it out of the body.
OUTBOX_TRACE_KEY = "_trace"

_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_record_content = False
_NO_SPAN: AbstractContextManager[Span] = nullcontext(INVALID_SPAN)


def enabled() -> bool:
    """True when spans are recorded."""
    return _tracer is not None


def configure_from_environment(record_content: bool = False) -> bool:
    """Trace to the OTLP endpoint the standard variables name (HTTP/protobuf), once per process; False when off."""
    if _tracer is not None:
        return True
    if not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        return False
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, which win over the default name.
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)  # for any other instrumentation in the process
    install(provider, record_content)
    return True


def install(provider: TracerProvider, record_content: bool = False) -> None:
    """Record turns' spans with `provider` (tests pass one with an in-memory exporter)."""
    global _tracer, _provider, _record_content
    _provider, _record_content = provider, record_content
    _tracer = provider.get_tracer("supportbot")


def flush() -> None:
    """Send the spans still buffered (at the end of a worker's life)."""
    if _provider is not None:
        _provider.force_flush()


def shutdown() -> None:
    """Send what is buffered and stop tracing (at the end of the process, or of a test)."""
    global _tracer, _provider
    provider, _tracer, _provider = _provider, None, None
    if provider is not None:
        provider.shutdown()


def start_turn(conversation_id: str) -> Span:
    """The root span of a turn: always a new trace, whatever the caller's context holds."""
    if _tracer is None:
        return INVALID_SPAN
    return _tracer.start_span("supportbot.turn", context=Context(),
                              attributes={"supportbot.conversation_id": conversation_id})


def start_child(parent: Span, name: str, attributes: Mapping[str, Any] | None = None,
                kind: SpanKind = SpanKind.INTERNAL) -> Span:
    """A span under `parent` (no-op when `parent` is not recorded)."""
    if _tracer is None or not parent.is_recording():
        return INVALID_SPAN
    return _tracer.start_span(name, context=trace.set_span_in_context(parent), kind=kind,
                              attributes=dict(attributes or {}))


def child(parent: Span, name: str, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Span]:
    """A span under `parent` for a block without `yield`, ended (with the error, if any) when the block ends."""
    if _tracer is None or not parent.is_recording():
        return _NO_SPAN
    return _ended(start_child(parent, name, attributes))


@contextmanager
def _ended(span: Span) -> Iterator[Span]:
    try:
        yield span
    except BaseException as error:
        fail(span, error)
        raise
    finally:
        span.end()


def step(parent: Span, name: str, func: Callable[..., T], *, ends_turn_on_error: bool = False) -> Callable[..., T]:
    """`func` for a database thread, run in a child span of `parent` made current there (so a row it queues,
    such as a webhook's, can carry the trace); `func` itself when tracing is off. With `ends_turn_on_error`,
    a failure ends `parent` too: the turn stops there."""
    if _tracer is None or not parent.is_recording():
        return func

    def run(*args: Any) -> T:
        span = start_child(parent, name)
        with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
            try:
                return func(*args)
            except BaseException as error:
                fail(span, error)
                if ends_turn_on_error:
                    fail(parent, error)
                    parent.end()
                raise
    return run


def current(span: Span) -> AbstractContextManager[Any]:
    """`span` as the current one for a block without `yield` (log lines there carry its ids)."""
    if not span.is_recording():
        return _NO_SPAN
    return trace.use_span(span, end_on_exit=False)


def fail(span: Span, error: BaseException) -> None:
    """Mark `span` failed with the error's type (not its message, which may quote what a visitor wrote)."""
    if span.is_recording():
        span.set_attribute("error.type", type(error).__name__)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))


def carrier() -> dict[str, str]:
    """The current trace as W3C headers (`traceparent`), to store with work done later; {} when off."""
    found: dict[str, str] = {}
    if _tracer is not None:
        propagate.inject(found)
    return found


def start_remote_child(stored: Mapping[str, str] | None, name: str, attributes: Mapping[str, Any]) -> Span:
    """A span continuing the trace `stored` by `carrier()` (a new trace when there is none)."""
    if _tracer is None:
        return INVALID_SPAN
    parent = propagate.extract(dict(stored)) if stored else Context()
    return _tracer.start_span(name, context=parent, kind=SpanKind.CLIENT, attributes=dict(attributes))


def inject(span: Span, headers: dict[str, str]) -> None:
    """Add `span`'s `traceparent` to outgoing HTTP headers, so the receiver can continue the trace."""
    if span.is_recording():
        propagate.inject(headers, context=trace.set_span_in_context(span))


def start_model_call(parent: Span, request: ChatRequest, system: str) -> Span:
    """The model call's span, named and described by the OpenTelemetry GenAI semantic conventions."""
    if _tracer is None or not parent.is_recording():
        return INVALID_SPAN
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": system,
        "gen_ai.provider.name": system,
        "gen_ai.request.model": request.model,
        "gen_ai.request.max_tokens": request.max_tokens,
    }
    if request.temperature is not None:
        attributes["gen_ai.request.temperature"] = request.temperature
    if _record_content:
        attributes["gen_ai.input.messages"] = json.dumps(request.messages, ensure_ascii=False)
    return start_child(parent, f"chat {request.model}", attributes, kind=SpanKind.CLIENT)


def end_model_call(span: Span, completion: Completion | None, error: BaseException | None) -> None:
    """Usage, finish reason and (when allowed) the answer on the model call's span; then end it."""
    if not span.is_recording():
        return
    if completion is not None:
        if completion.model_reported:
            span.set_attribute("gen_ai.response.model", completion.model_reported)
        if completion.tokens_in is not None:
            span.set_attribute("gen_ai.usage.input_tokens", completion.tokens_in)
        if completion.tokens_out is not None:
            span.set_attribute("gen_ai.usage.output_tokens", completion.tokens_out)
        reason = completion.finish_reason or ("tool_calls" if completion.tool_calls else None)
        if reason:
            span.set_attribute("gen_ai.response.finish_reasons", [reason])
        if _record_content:
            span.set_attribute("gen_ai.output.messages", json.dumps(
                [{"role": "assistant", "content": completion.text}], ensure_ascii=False))
    if error is not None:
        fail(span, error)
    span.end()

"""Keeping answers flowing when the model does not: a time budget, a circuit breaker, a fallback model.

The circuit breaker is per process on purpose: it is each replica's own view of the upstream's health and
needs no coordination; a replica that has not seen failures keeps trying.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from ..errors import ModelUnavailable
from ..telemetry import metrics
from .base import ChatRequest, Completion, StreamBroken, TextDelta
from .openai_compat import OpenAIProvider

log = logging.getLogger(__name__)

# supportbot_upstream_errors_total kinds of this layer (the HTTP client's are in openai_compat.error_kind).
CIRCUIT_OPEN = "circuit_open"
TURN_TIMEOUT = "turn_timeout"  # SUPPORTBOT_TURN_TIMEOUT ran out


class CircuitOpen(ModelUnavailable):
    """The breaker is open: the model is skipped until the cooldown has passed."""


@dataclass
class CircuitBreaker:
    """Opens after `threshold` consecutive failures; after `cooldown` seconds lets one probe through."""

    threshold: int
    cooldown: float
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    probing: bool = field(default=False)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.clock() - self.opened_at >= self.cooldown else "open"

    def allow(self) -> bool:
        """May a call go upstream now? In half-open state only one probe at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self.probing:
            self.probing = True
            return True
        return False

    def record_success(self) -> None:
        if self.opened_at is not None:
            log.info("circuit closed: upstream answered the probe")
        self.failures, self.opened_at, self.probing = 0, None, False

    def record_failure(self) -> None:
        self.failures += 1
        if self.probing or self.failures >= self.threshold:
            if self.opened_at is None or self.probing:
                log.warning("circuit open after %s consecutive upstream failures", self.failures)
            self.opened_at = self.clock()
        self.probing = False


class ResilientProvider:
    """The hosted model behind a time budget and a circuit breaker, with an optional fallback model."""

    name = "openai"

    def __init__(self, primary: OpenAIProvider, breaker: CircuitBreaker, budget: float,
                 fallback: OpenAIProvider | None = None, fallback_model: str | None = None) -> None:
        self.primary = primary
        self.breaker = breaker
        self.budget = budget
        self.fallback = fallback
        self.fallback_model = fallback_model

    def _fallback_request(self, request: ChatRequest) -> ChatRequest:
        from dataclasses import replace

        return replace(request, model=self.fallback_model) if self.fallback_model else request

    async def complete(self, request: ChatRequest) -> Completion:
        """One answer within the budget: the primary model, else the fallback, else ModelUnavailable."""
        try:
            async with asyncio.timeout(self.budget):
                try:
                    return await self._guarded_complete(request)
                except ModelUnavailable:
                    if self.fallback is None:
                        raise
                    log.warning("primary model failed; trying the fallback model")
                    return await self.fallback.complete(self._fallback_request(request))
        except TimeoutError:
            metrics.record_upstream_error(TURN_TIMEOUT)
            raise

    async def _guarded_complete(self, request: ChatRequest) -> Completion:
        if not self.breaker.allow():
            metrics.record_upstream_error(CIRCUIT_OPEN)
            raise CircuitOpen("circuit open: skipping the model during the cooldown")
        try:
            completion = await self.primary.complete(request)
        except Exception as error:
            self.breaker.record_failure()
            raise error if isinstance(error, ModelUnavailable) else ModelUnavailable(str(error)) from error
        self.breaker.record_success()
        return completion

    async def stream(self, request: ChatRequest) -> AsyncIterator[TextDelta | Completion]:
        """Stream within the budget; before the first text, a failure may still switch to the fallback."""
        deadline = asyncio.get_running_loop().time() + self.budget
        sent_text = False
        try:
            async with asyncio.timeout_at(deadline):
                if not self.breaker.allow():
                    metrics.record_upstream_error(CIRCUIT_OPEN)
                    raise CircuitOpen("circuit open: skipping the model during the cooldown")
                async for event in self.primary.stream(request):
                    sent_text = sent_text or isinstance(event, TextDelta)
                    yield event
            self.breaker.record_success()
            return
        except StreamBroken:
            self.breaker.record_failure()
            raise
        except CircuitOpen:
            if self.fallback is None:
                raise
        except (ModelUnavailable, TimeoutError) as error:
            if isinstance(error, TimeoutError):
                metrics.record_upstream_error(TURN_TIMEOUT)
            self.breaker.record_failure()
            if sent_text or self.fallback is None:
                raise ModelUnavailable(str(error) or "time budget exceeded") from error
        log.warning("primary model failed before any text; streaming from the fallback model")
        async with asyncio.timeout_at(deadline):
            async for event in self.fallback.stream(self._fallback_request(request)):
                yield event

    async def aclose(self) -> None:
        await self.primary.aclose()
        if self.fallback is not None:
            await self.fallback.aclose()

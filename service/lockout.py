"""Guessing protection for the admin token: failed sign-ins and wrong bearer tokens, counted per client IP.

Failures count in the rate-limit storage (memory, or Redis shared by replicas). Past a tier the client's
network is locked out (429 with Retry-After), the right token included, until the tier's window frees;
the tiers make repeated guessing wait longer and longer (a minute, then an hour, then a day). One audit
row is written when a lockout starts, never one per failure, so guessing cannot flood the audit log.

Per IP only, not per account: the one account is the admin token, and locking it for everyone would hand
any outside caller a way to lock the admins out; a generated token cannot be guessed at these rates.
"""

from __future__ import annotations

import logging
import math
import time

from anyio import to_thread
from fastapi import Request

from .errors import RateLimited
from .ratelimit import RateLimits, limit_key, parse_rate
from .review import ReviewDesk

log = logging.getLogger(__name__)

# 10 failures a minute, 30 an hour, 100 a day: each tier passed locks the network out for longer.
FAILURE_LIMITS = "10/minute;30/hour;100/day"
_SCOPE = "admin-failures"


class FailureCounter:
    """Counts failures per key (a client network, an account) in the rate-limit storage; says how long to wait.

    A broken storage fails open, like the other limits: the service keeps answering.
    """

    def __init__(self, limits: RateLimits, rates: str, scope: str, what: str) -> None:
        self._limits = limits
        self._items = parse_rate(rates)
        self._scope = scope
        self._what = what  # for the log: "sign-in failures", "account failures"

    def key(self, who: str) -> str:
        """The storage key for `who`."""
        return limit_key(who)

    def retry_after(self, who: str) -> int | None:
        """Seconds until `who` may try again, or None when it need not wait."""
        key, waits = self.key(who), []
        try:
            for item in self._items:
                if not self._limits.limiter.test(item, self._scope, key):
                    reset = self._limits.limiter.get_window_stats(item, self._scope, key).reset_time
                    waits.append(max(1, math.ceil(reset - time.time())))
        except Exception as error:  # noqa: BLE001 - same as the other limits: a broken store fails open
            log.warning("rate limit storage unavailable (%s); not checking %s", type(error).__name__, self._what)
            return None
        return max(waits) if waits else None

    def count_failure(self, who: str) -> int | None:
        """Count one failure of `who`; the wait when this failure starts one."""
        key = self.key(who)
        try:
            for item in self._items:
                self._limits.limiter.hit(item, self._scope, key)
        except Exception as error:  # noqa: BLE001
            log.warning("rate limit storage unavailable (%s); %s not counted", type(error).__name__, self._what)
            return None
        return self.retry_after(who)

    def clear(self, who: str) -> None:
        """Forget the failures of `who`."""
        key = self.key(who)
        try:
            for item in self._items:
                self._limits.limiter.clear(item, self._scope, key)
        except Exception as error:  # noqa: BLE001
            log.warning("rate limit storage unavailable (%s); %s not cleared", type(error).__name__, self._what)


class SignInGuard(FailureCounter):
    """Counts failed admin credentials per client network and says when it is locked out."""

    def __init__(self, limits: RateLimits, rates: str = FAILURE_LIMITS) -> None:
        super().__init__(limits, rates, _SCOPE, "sign-in failures")


def sign_in_guard(request: Request) -> SignInGuard:
    """This process's guard, over the runtime's rate-limit storage."""
    state = request.app.state
    if not hasattr(state, "sign_in_guard"):
        state.sign_in_guard = SignInGuard(state.runtime.limits)
    guard: SignInGuard = state.sign_in_guard
    return guard


def _refusal(retry_after: int) -> RateLimited:
    return RateLimited(f"too many wrong admin tokens from your network; try again in {retry_after} s", retry_after)


async def refuse_if_locked_out(guard: SignInGuard, limits: RateLimits, ip: str) -> None:
    """Raise RateLimited (429, Retry-After) while `ip` is locked out."""
    wait = guard.retry_after(ip) if limits.in_memory else await to_thread.run_sync(guard.retry_after, ip)
    if wait is not None:
        raise _refusal(wait)


async def count_failure(guard: SignInGuard, limits: RateLimits, review: ReviewDesk, ip: str, via: str) -> None:
    """Count a wrong admin token from `ip`; audit (once) and raise RateLimited when it starts a lockout."""
    wait = guard.count_failure(ip) if limits.in_memory else await to_thread.run_sync(guard.count_failure, ip)
    if wait is not None:
        await to_thread.run_sync(review.record, "anonymous", "admin.locked_out", limit_key(ip)[:100],
                                 {"via": via, "retry_after": wait})
        raise _refusal(wait)

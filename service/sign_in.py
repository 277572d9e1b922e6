"""Signing a person in with e-mail and password: the per-account backoff beside the per-network guard.

service/lockout.py counts failures per client network. A password can be guessed from many networks at
once, so failures are also counted per e-mail address (known or not: the answer must not tell which
addresses have accounts), in the same rate-limit storage: past 5 failures in 15 minutes (or 20 a day) the
account waits, the right password included, and one audit row says so. A successful sign-in clears it.

The price: anyone can make an account wait by guessing wrong. The wait is bounded (15 minutes, a day at
worst) and the shared admin token still signs in.
"""

from __future__ import annotations

import hashlib
import logging

from anyio import to_thread
from fastapi import Request

from .errors import RateLimited
from .lockout import FailureCounter
from .models import User
from .people import People, normal_email
from .ratelimit import RateLimits
from .review import ReviewDesk

log = logging.getLogger(__name__)

ACCOUNT_FAILURE_LIMITS = "5/15 minutes;20/day"
_SCOPE = "account-failures"


class AccountBackoff(FailureCounter):
    """Counts failed password sign-ins per e-mail address and says how long an account must wait."""

    def __init__(self, limits: RateLimits, rates: str = ACCOUNT_FAILURE_LIMITS) -> None:
        super().__init__(limits, rates, _SCOPE, "account failures")

    def key(self, who: str) -> str:
        """A digest of the address: the storage (Redis, maybe shared) never sees it."""
        return hashlib.sha256(normal_email(who).encode("utf-8")).hexdigest()[:32]


def account_backoff(request: Request) -> AccountBackoff:
    """This process's per-account backoff, over the runtime's rate-limit storage."""
    state = request.app.state
    if not hasattr(state, "account_backoff"):
        state.account_backoff = AccountBackoff(state.runtime.limits)
    backoff: AccountBackoff = state.account_backoff
    return backoff


def _waiting(retry_after: int) -> RateLimited:
    return RateLimited(f"too many wrong passwords for this account; try again in {retry_after} s", retry_after)


async def sign_in_with_password(people: People, backoff: AccountBackoff, review: ReviewDesk,
                                email: str, password: str) -> User | None:
    """The enabled person with this e-mail and password, or None (failure counted and audited).

    Raises RateLimited while the account waits, and when this failure starts a wait.
    """
    wait = await to_thread.run_sync(backoff.retry_after, email)
    if wait is not None:
        raise _waiting(wait)
    user = await to_thread.run_sync(people.check_password, email, password)
    if user is not None:
        await to_thread.run_sync(backoff.clear, email)
        return user
    address = normal_email(email)[:100]
    await to_thread.run_sync(review.record, "anonymous", "login.failed", address, {"via": "password"})
    wait = await to_thread.run_sync(backoff.count_failure, email)
    if wait is not None:
        await to_thread.run_sync(review.record, "anonymous", "account.locked_out", address, {"retry_after": wait})
        raise _waiting(wait)
    return None

"""Rate limits per visitor (conversation) and per client IP, with the `limits` library.

In memory by default (each replica counts alone); `SUPPORTBOT_RATE_LIMIT_STORAGE=redis://...` shares the
counts across replicas. When the storage cannot be reached, requests are let through and the failure is
logged: a broken limiter must not take the support chat down.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from .config import Settings
from .errors import RateLimited

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_rate(text: str) -> list[RateLimitItem]:
    """`20/minute` (or several, `;`-separated) -> limit items; `0` or empty -> no limit."""
    return [] if text.strip() in {"", "0"} else parse_many(text)


class RateLimits:
    """The limits of one process, over shared or local storage."""

    def __init__(self, settings: Settings) -> None:
        self.per_visitor = parse_rate(settings.rate_limit_per_visitor)
        self.per_ip = parse_rate(settings.rate_limit_per_ip)
        storage = storage_from_string(settings.rate_limit_storage)
        self.limiter = MovingWindowRateLimiter(storage)
        # Counting in this process's memory never blocks; a network store (Redis) does.
        self.in_memory = isinstance(storage, MemoryStorage)
        self.trusted: list[Network] = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str:
        """The client's address: the peer, unless the peer is a trusted proxy that says who it forwards."""
        address = peer or "unknown"
        if not forwarded_for or not self._is_trusted(address):
            return address
        for hop in reversed([part.strip() for part in forwarded_for.split(",") if part.strip()]):
            if not self._is_trusted(hop):
                return hop
        return address

    def _check(self, items: list[RateLimitItem], scope: str, key: str) -> None:
        for item in items:
            try:
                allowed = self.limiter.hit(item, scope, key)
                if allowed:
                    continue
                reset = self.limiter.get_window_stats(item, scope, key).reset_time
            except Exception as error:  # noqa: BLE001 - fail open when the storage is down
                log.warning("rate limit storage unavailable (%s); letting the request through", type(error).__name__)
                return
            retry_after = max(1, math.ceil(reset - time.time()))
            raise RateLimited(f"too many requests ({item}); try again in {retry_after} s", retry_after)

    def check_ip(self, ip: str) -> None:
        """Count one API request from `ip`; RateLimited (429) past the limit."""
        self._check(self.per_ip, "ip", ip)

    def check_visitor(self, conversation_id: str) -> None:
        """Count one message in a conversation; RateLimited (429) past the limit."""
        self._check(self.per_visitor, "visitor", conversation_id)

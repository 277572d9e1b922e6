"""Rate limits per visitor (conversation) and per client IP, with the `limits` library.

In memory by default (each replica counts alone); `SUPPORTBOT_RATE_LIMIT_STORAGE=redis://...` shares the
counts across replicas. When the storage cannot be reached, requests are let through, the failure is
logged and counted (supportbot_ratelimit_fail_open_total): a broken limiter must not take the support chat down.
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
from .telemetry import metrics

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# One IPv6 customer (a home, a phone, a VM) is normally handed a whole /64; counting each address alone
# would let one client rotate through 2**64 addresses, each with a fresh budget.
IPV6_CLIENT_PREFIX = 64


def _parse_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d: they are IPv4 clients.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def limit_key(address: str) -> str:
    """The key a client's requests count under: its IPv4 address, or its IPv6 /64 network."""
    ip = _parse_ip(address)
    if ip is None:
        return address
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    network = int(ip) >> (128 - IPV6_CLIENT_PREFIX) << (128 - IPV6_CLIENT_PREFIX)
    return str(ipaddress.IPv6Network((network, IPV6_CLIENT_PREFIX)))


def parse_rate(text: str) -> list[RateLimitItem]:
    """`20/minute` (or several, `;`-separated) -> limit items; `0` or empty -> no limit."""
    return [] if text.strip() in {"", "0"} else parse_many(text)


class RateLimits:
    """The limits of one process, over shared or local storage."""

    def __init__(self, settings: Settings) -> None:
        self.per_visitor = parse_rate(settings.rate_limit_per_visitor)
        self.per_ip = parse_rate(settings.rate_limit_per_ip)
        self.conversations_per_ip = parse_rate(settings.rate_limit_conversations_per_ip)
        storage = storage_from_string(settings.rate_limit_storage)
        self.limiter = MovingWindowRateLimiter(storage)
        # Counting in this process's memory never blocks; a network store (Redis) does.
        self.in_memory = isinstance(storage, MemoryStorage)
        self.trusted: list[Network] = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]

    def is_trusted(self, address: str | None) -> bool:
        """True when `address` is one of SUPPORTBOT_TRUSTED_PROXIES (whose forwarded headers are believed)."""
        ip = _parse_ip(address or "")
        return ip is not None and any(ip in network for network in self.trusted)

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str:
        """The client's address: the peer, unless the peer is a trusted proxy that says who it forwards."""
        address = peer or "unknown"
        if not forwarded_for or not self.is_trusted(address):
            return address
        for hop in reversed([part.strip() for part in forwarded_for.split(",") if part.strip()]):
            if not self.is_trusted(hop):
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
                metrics.record_rate_limit_fail_open(scope)
                return
            retry_after = max(1, math.ceil(reset - time.time()))
            metrics.record_rate_limited(scope)
            raise RateLimited(f"too many requests ({item}); try again in {retry_after} s", retry_after)

    def check_ip(self, ip: str) -> None:
        """Count one API request from `ip` (IPv6: its /64); RateLimited (429) past the limit."""
        self._check(self.per_ip, "ip", limit_key(ip))

    def check_conversation_start(self, ip: str) -> None:
        """Count one new conversation from `ip` (IPv6: its /64); RateLimited (429) past the limit."""
        # Its own budget: starting a conversation needs no credential and stores a row each time.
        self._check(self.conversations_per_ip, "conversations", limit_key(ip))

    def check_visitor(self, conversation_id: str) -> None:
        """Count one message in a conversation; RateLimited (429) past the limit."""
        self._check(self.per_visitor, "visitor", conversation_id)

"""The one place imports make outbound HTTP: one site only, checked redirects, timeouts, size caps, a polite pace.

Every hop of a redirect is checked (http(s), the source's own host, no private address unless the source
itself is one), so a help center cannot send the importer to another host or into the local network.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urldefrag, urljoin, urlsplit

import httpx

from .. import __version__
from .errors import ImportCapReached, PageFailed

USER_AGENT = f"supportbot/{__version__} (knowledge import)"
Resolver = Callable[[str], Iterable[str]]
REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class FetchLimits:
    """How an import treats a site: per-request timeout, pause between requests, byte caps, pages."""

    timeout: float = 10.0
    delay: float = 0.5
    max_page_bytes: int = 5 * 1024 * 1024
    max_total_bytes: int = 200 * 1024 * 1024
    max_pages: int = 200
    max_redirects: int = 5


@dataclass(frozen=True)
class Fetched:
    """A response: the final URL after redirects, status, type, body and validators."""

    url: str
    status: int
    content_type: str
    body: bytes
    etag: str | None = None
    last_modified: str | None = None
    location: str | None = None  # where a redirect points


def resolve_host(host: str) -> list[str]:
    """The addresses `host` resolves to."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})


def is_public(address: str) -> bool:
    """True for a global unicast address (not private, loopback, link-local, reserved or multicast)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _port(parts: tuple[str, str | None, int | None]) -> int:
    scheme, _host, port = parts
    return port or (443 if scheme == "https" else 80)


def site_of(url: str) -> tuple[str, str | None, int | None]:
    """(scheme, host, port) of a URL."""
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower() or None, parts.port


def same_site(a: str, b: str) -> bool:
    """One host and port; an http -> https upgrade on the default ports counts as the same site."""
    sa, sb = site_of(a), site_of(b)
    if sa[1] != sb[1]:
        return False
    return _port(sa) == _port(sb) or {(sa[0], _port(sa)), (sb[0], _port(sb))} == {("http", 80), ("https", 443)}


class Fetcher:
    """GETs pages of one site within `limits`; raises PageFailed naming the page and the reason."""

    def __init__(self, start_url: str, limits: FetchLimits, client: httpx.Client | None = None,
                 resolve: Resolver = resolve_host, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.start_url = start_url
        self.limits = limits
        self._client = client or httpx.Client(timeout=limits.timeout, follow_redirects=False,
                                              headers={"User-Agent": USER_AGENT})
        self._owns_client = client is None
        self._resolve = resolve
        self._clock = clock
        self._sleep = sleep
        self._last_request = float("-inf")
        self._lock = threading.Lock()
        self.total_bytes = 0
        self.requests = 0
        host = site_of(start_url)[1]
        if site_of(start_url)[0] not in ("http", "https") or not host:
            raise PageFailed(start_url, "only http(s) URLs with a host can be imported")
        # The source may live in a private network (an intranet help center, a test server); then its own
        # host is allowed there. A public source is never followed into a private address.
        self.allow_private = not all(is_public(a) for a in self._addresses(start_url, host))

    def close(self) -> None:
        """Close the HTTP client (when it is ours)."""
        if self._owns_client:
            self._client.close()

    def _addresses(self, url: str, host: str) -> list[str]:
        try:
            return list(self._resolve(host))
        except (OSError, UnicodeError) as error:
            raise PageFailed(url, f"cannot resolve host {host!r} ({error})") from None

    def check_url(self, url: str) -> None:
        """Refuse a URL that is not http(s), not on the source's host, or resolves to a private address."""
        scheme, host, _ = site_of(url)
        if scheme not in ("http", "https"):
            raise PageFailed(url, f"only http(s) is followed, not {scheme or 'a relative URL'}")
        if not same_site(url, self.start_url):
            raise PageFailed(url, f"not on the source's host {site_of(self.start_url)[1]}")
        if not self.allow_private:
            private = [a for a in self._addresses(url, host or "") if not is_public(a)]
            if private:
                raise PageFailed(url, f"resolves to a private address ({private[0]}), refused")

    def get(self, url: str, etag: str | None = None, last_modified: str | None = None) -> Fetched:
        """GET `url`, following redirects hop by hop; a 304 comes back with an empty body."""
        url = urldefrag(url)[0]
        seen: list[str] = []
        for _hop in range(self.limits.max_redirects + 1):
            self.check_url(url)
            if url in seen:
                raise PageFailed(seen[0], f"redirect loop ({' -> '.join([*seen, url])})")
            seen.append(url)
            fetched = self._get_once(url, etag, last_modified)
            if fetched.location is None:
                return fetched
            url = urldefrag(urljoin(url, fetched.location))[0]
        raise PageFailed(seen[0], f"more than {self.limits.max_redirects} redirects")

    def _pace(self) -> None:
        with self._lock:
            wait = self._last_request + self.limits.delay - self._clock()
            if wait > 0:
                self._sleep(wait)
            self._last_request = self._clock()

    def _get_once(self, url: str, etag: str | None, last_modified: str | None) -> Fetched:
        """One request; a redirect comes back with its Location, for the caller to check and follow."""
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        self._pace()
        self.requests += 1
        deadline = self._clock() + self.limits.timeout
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                if response.status_code in REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise PageFailed(url, f"HTTP {response.status_code} without a Location")
                    return Fetched(url, response.status_code, "", b"", location=location)
                body = self._read(url, response, deadline)
                return Fetched(url, response.status_code, response.headers.get("content-type", ""), body,
                               response.headers.get("etag"), response.headers.get("last-modified"))
        except httpx.TimeoutException:
            raise PageFailed(url, f"timed out after {self.limits.timeout:g} s") from None
        except httpx.HTTPError as error:
            raise PageFailed(url, f"unreachable ({type(error).__name__}: {error})") from None

    def _read(self, url: str, response: httpx.Response, deadline: float) -> bytes:
        cap = self.limits.max_page_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise PageFailed(url, f"too large ({int(declared)} bytes; the limit is {cap} per page)")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            self.total_bytes += len(chunk)
            if size > cap:
                raise PageFailed(url, f"too large (over {cap} bytes per page)")
            if self.total_bytes > self.limits.max_total_bytes:
                raise ImportCapReached(f"stopped after {self.limits.max_total_bytes} bytes in all (the import cap)")
            if self._clock() > deadline:
                raise PageFailed(url, f"timed out after {self.limits.timeout:g} s (the body came too slowly)")
            chunks.append(chunk)
        return b"".join(chunks)

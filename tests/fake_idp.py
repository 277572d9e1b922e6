"""A small OpenID Connect provider over real HTTP: discovery, keys, /authorize, /token, with knobs to misbehave.

It signs its ID tokens itself with `cryptography` (RS256 by hand), so the service's verification (joserfc) is
checked against an independent implementation, not against itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from html import escape
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .upstream_server import serving


def b64url(data: bytes) -> str:
    """Base64url without padding, as JOSE writes it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(number: int) -> bytes:
    return number.to_bytes((number.bit_length() + 7) // 8, "big")


@cache
def test_run_key() -> rsa.RSAPrivateKey:
    """The provider's RSA key, made once per test run (2048 bits take a moment)."""
    return rsa.generate_private_key(65537, 2048)


@dataclass
class SigningKey:
    """An RSA key with its kid and public JWK."""

    private: rsa.RSAPrivateKey = field(default_factory=test_run_key)
    kid: str = field(default_factory=lambda: secrets.token_hex(8))

    def jwk(self) -> dict[str, str]:
        numbers = self.private.public_key().public_numbers()
        return {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                "n": b64url(_int_bytes(numbers.n)), "e": b64url(_int_bytes(numbers.e))}

    def sign(self, claims: dict[str, Any]) -> str:
        header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": self.kid}).encode())
        payload = b64url(json.dumps(claims).encode())
        signature = self.private.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{payload}.{b64url(signature)}"


@dataclass
class Grant:
    """A code handed out by /authorize, with what it was asked for."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str
    used: bool = False


@dataclass
class FakeIdP:
    """Auto-approves `email` at /authorize; the knobs below make its ID tokens wrong in one way each."""

    client_id: str = "supportbot-test"
    client_secret: str = "idp-client-secret"
    email: str = "ana@example.com"
    name: str = "Ana Agent"
    email_verified: bool | None = True
    audience: str | None = None  # another client's id in `aud`
    expired: bool = False  # `exp` ten minutes ago
    wrong_nonce: bool = False
    foreign_key: bool = False  # signed with a key that is not in the JWKS
    deny: bool = False  # /authorize answers error=access_denied
    # A page where the person presses "Continue", as a real provider's sign-in form: the way back is then a
    # navigation started on the provider's site (cross-site), not a redirect within one started here.
    consent_page: bool = False
    issuer: str = ""  # set when served
    key: SigningKey = field(default_factory=SigningKey)
    grants: dict[str, Grant] = field(default_factory=dict)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    discovery_requests: int = 0

    def reset(self) -> None:
        """Behave again and forget what was asked (one provider serves a module's tests)."""
        self.email, self.email_verified, self.audience = "ana@example.com", True, None
        self.expired = self.wrong_nonce = self.foreign_key = self.deny = self.consent_page = False
        self.client_secret = "idp-client-secret"
        self.grants.clear()
        self.authorize_requests.clear()
        self.token_requests.clear()
        self.discovery_requests = 0

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/.well-known/openid-configuration", self._discovery),
            Route("/jwks", self._jwks),
            Route("/authorize", self._authorize),
            Route("/token", self._token, methods=["POST"]),
        ])

    async def _discovery(self, _request: Request) -> Response:
        self.discovery_requests += 1
        return JSONResponse({
            "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        })

    async def _jwks(self, _request: Request) -> Response:
        return JSONResponse({"keys": [self.key.jwk()]})

    async def _authorize(self, request: Request) -> Response:
        query = dict(request.query_params)
        self.authorize_requests.append(query)
        redirect_uri = query.get("redirect_uri", "")
        if (query.get("client_id") != self.client_id or query.get("response_type") != "code"
                or "openid" not in query.get("scope", "").split() or query.get("code_challenge_method") != "S256"
                or not query.get("code_challenge") or not redirect_uri):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        if self.deny:
            back = {"error": "access_denied", "error_description": "the user said no", "state": query.get("state", "")}
            return RedirectResponse(f"{redirect_uri}?{urlencode(back)}", status_code=302)
        code = secrets.token_urlsafe(24)
        self.grants[code] = Grant(self.client_id, redirect_uri, query["code_challenge"], query.get("nonce", ""))
        back = f"{redirect_uri}?{urlencode({'code': code, 'state': query.get('state', '')})}"
        if self.consent_page:
            return HTMLResponse(f'<!doctype html><title>Example ID</title><p>Sign in to supportbot as {self.email}?</p>'
                                f'<a id="continue" href="{escape(back)}">Continue</a>')
        return RedirectResponse(back, status_code=302)

    async def _token(self, request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        self.token_requests.append({**form, "authorization": request.headers.get("authorization", "")})
        if not self._client_authenticated(request, form):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self.grants.get(form.get("code", ""))
        if form.get("grant_type") != "authorization_code" or grant is None or grant.used:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        grant.used = True
        challenge = b64url(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
        if challenge != grant.code_challenge or form.get("redirect_uri") != grant.redirect_uri:
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE or redirect_uri"},
                                status_code=400)
        return JSONResponse({"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": 300,
                             "id_token": self._id_token(grant)}, headers={"Cache-Control": "no-store"})

    def _client_authenticated(self, request: Request, form: dict[str, str]) -> bool:
        basic = request.headers.get("authorization", "")
        if not self.client_secret:  # a public client: PKCE alone binds the code
            return not basic and form.get("client_id") == self.client_id and "client_secret" not in form
        if basic.lower().startswith("basic "):
            expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
            return secrets.compare_digest(basic[6:].strip(), expected)
        return form.get("client_id") == self.client_id and form.get("client_secret") == self.client_secret

    def _id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": f"user-{self.email}", "aud": self.audience or grant.client_id,
            "iat": now - 700 if self.expired else now, "exp": now - 600 if self.expired else now + 300,
            "nonce": "not-the-nonce" if self.wrong_nonce else grant.nonce, "email": self.email, "name": self.name,
        }
        if self.email_verified is not None:
            claims["email_verified"] = self.email_verified
        # Same kid, other key material: only the signature tells it apart.
        signer = SigningKey(rsa.generate_private_key(65537, 2048), self.key.kid) if self.foreign_key else self.key
        return signer.sign(claims)


@contextmanager
def running_idp(host: str = "127.0.0.1", **knobs: Any) -> Iterator[FakeIdP]:
    """A fake identity provider on a free port; its issuer is its base URL (`host` names it: a second site)."""
    idp = FakeIdP(**knobs)
    with serving(idp.app(), lifespan="off") as base:
        idp.issuer = base.replace("127.0.0.1", host)
        yield idp

"""Single sign-on with OpenID Connect: the one boundary to the identity provider.

The authorization code flow with PKCE (authlib's httpx client), the ID token verified against the issuer's
published keys (joserfc, which authlib recommends over its deprecated `authlib.jose`): signature, `iss`,
`aud`, `exp` and the `nonce` of this sign-in. The verified e-mail must belong to an enabled person of the
team; nobody is created by signing in. The state, nonce and PKCE verifier of a sign-in in progress travel
in a short-lived cookie signed with the service secret, so no server-side session store is needed.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from anyio import to_thread
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError  # type: ignore[import-untyped]
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, InvalidClaimError, JoseError, MissingClaimError
from joserfc.jwk import KeySet

from .config import Settings, secret_key
from .errors import ServiceUnavailable, Unauthorized
from .models import User
from .people import People, normal_email

log = logging.getLogger(__name__)

# authlib's httpx client is built on httpx2 where that is installed (the openai package brings it), else on
# httpx: a provider that cannot be reached raises the one or the other.
try:
    import httpx2

    CLIENT_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, httpx2.HTTPError)
except ImportError:  # pragma: no cover - depends on what else is installed
    CLIENT_ERRORS = (httpx.HTTPError,)

CALLBACK_PATH = "/admin/login/sso/callback"
PENDING_COOKIE = "sb_sso"  # the sign-in in progress: state, nonce, PKCE verifier, where to go after
PENDING_MAX_AGE = 600  # seconds a person has to finish at the identity provider
DISCOVERY_TTL = 3600.0  # seconds the provider's metadata and keys are reused
CLOCK_LEEWAY = 60  # seconds of clock difference tolerated on exp, iat and nbf
UNVERIFIABLE = "id_token signature or format invalid"
ANONYMOUS = "anonymous"  # the audit actor of a refused sign-in: nobody has been recognised

Recorder = Callable[[str, str, str | None, dict[str, Any] | None], None]


class SsoRefused(Unauthorized):
    """A single sign-on that does not sign anyone in; `email` is the provider's claim, when one was verified."""

    code = "sso_refused"

    def __init__(self, message: str, reason: str, email: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.email = email


class SsoUnavailable(ServiceUnavailable):
    """The identity provider cannot be reached or answers nonsense."""

    code = "sso_unavailable"


@dataclass(frozen=True, slots=True)
class Provider:
    """What the issuer's discovery document says, with its keys."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    keys: KeySet


@dataclass(frozen=True, slots=True)
class Pending:
    """A sign-in started here and not finished yet."""

    state: str
    nonce: str
    verifier: str
    next_url: str


class SingleSignOn:
    """Starts and finishes OpenID Connect sign-ins against `SUPPORTBOT_OIDC_ISSUER`."""

    def __init__(self, settings: Settings, people: People, record: Recorder, timeout: float = 10.0) -> None:
        self.settings = settings
        self.people = people
        self.record = record
        self.timeout = timeout
        self._pending = URLSafeTimedSerializer(secret_key(settings), salt="supportbot.sso")
        self._provider: Provider | None = None
        self._fetched_at = 0.0

    @property
    def configured(self) -> bool:
        """An issuer and a client id are set."""
        return bool(self.settings.oidc_issuer and self.settings.oidc_client_id)

    @property
    def redirect_uri(self) -> str:
        """The callback URL to register with the identity provider."""
        return self.settings.public_url.rstrip("/") + CALLBACK_PATH

    async def begin(self, next_url: str) -> tuple[str, str]:
        """The identity provider's authorization URL for a new sign-in, and the signed cookie that remembers it."""
        provider = await self.provider()
        pending = Pending(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48), next_url)
        async with self._client() as client:
            url, _ = client.create_authorization_url(provider.authorization_endpoint, state=pending.state,
                                                     nonce=pending.nonce, code_verifier=pending.verifier)
        cookie = str(self._pending.dumps([pending.state, pending.nonce, pending.verifier, pending.next_url]))
        return str(url), cookie

    async def complete(self, cookie: str | None, params: dict[str, str]) -> tuple[User, str]:
        """The enabled person the provider vouches for, and where to send them; refusals are audited."""
        try:
            user, next_url = await self._complete(cookie, params)
        except SsoRefused as refused:
            log.info("single sign-on refused: %s", refused.reason)
            await to_thread.run_sync(self.record, ANONYMOUS, "sso_refused", refused.email, {"reason": refused.reason})
            raise
        except SsoUnavailable as error:
            log.warning("single sign-on failed: %s", error.message)
            raise
        await to_thread.run_sync(self.record, user.email, "login", None, {"method": "sso"})
        return user, next_url

    async def _complete(self, cookie: str | None, params: dict[str, str]) -> tuple[User, str]:
        pending = self._read_pending(cookie)
        if "error" in params:
            # The provider's own words stay out of the log and the page: they may carry anything.
            raise SsoRefused("The identity provider did not sign you in.", f"provider error {params['error'][:40]}")
        # As bytes: compare_digest raises on a str that is not ASCII, and the state comes from the address bar.
        if not hmac.compare_digest(params.get("state", "").encode(), pending.state.encode()):
            raise SsoRefused("This sign-in was not started here. Please start again.", "state mismatch")
        code = params.get("code", "")
        if not code:
            raise SsoRefused("The identity provider sent no sign-in code.", "no code")
        claims = await self._id_token_claims(code, pending)
        return await self._person(claims), pending.next_url

    def _read_pending(self, cookie: str | None) -> Pending:
        if not cookie:
            raise SsoRefused("This sign-in was not started here, or cookies are blocked. Please start again.",
                             "no sign-in in progress")
        try:
            state, nonce, verifier, next_url = self._pending.loads(cookie, max_age=PENDING_MAX_AGE)
        except SignatureExpired:
            raise SsoRefused("The sign-in took too long. Please start again.", "sign-in expired") from None
        except (BadSignature, ValueError, TypeError):
            raise SsoRefused("This sign-in was not started here. Please start again.", "bad sign-in cookie") from None
        return Pending(str(state), str(nonce), str(verifier), str(next_url))

    async def _id_token_claims(self, code: str, pending: Pending) -> dict[str, Any]:
        provider = await self.provider()
        try:
            async with self._client() as client:
                token = await client.fetch_token(provider.token_endpoint, code=code, code_verifier=pending.verifier)
        except OAuthError as error:
            raise SsoRefused("The identity provider would not confirm the sign-in.",
                             f"token endpoint refused: {str(error.error)[:40]}") from None
        except CLIENT_ERRORS as error:
            raise SsoUnavailable(f"the identity provider cannot be reached ({type(error).__name__})") from None
        except ValueError:
            raise SsoUnavailable("the identity provider's token endpoint did not answer JSON") from None
        id_token = token.get("id_token") if isinstance(token, dict) else None
        if not isinstance(id_token, str):
            raise SsoRefused("The identity provider sent no ID token.", "no id_token")
        try:
            return self._verify(id_token, provider.keys, pending.nonce, provider.issuer)
        except SsoRefused as refused:
            if refused.reason != UNVERIFIABLE:
                raise
        # The provider may have rotated its keys since they were fetched: read them again, once.
        self._provider = None
        provider = await self.provider()
        return self._verify(id_token, provider.keys, pending.nonce, provider.issuer)

    def _verify(self, id_token: str, keys: KeySet, nonce: str, issuer: str) -> dict[str, Any]:
        try:
            decoded = jwt.decode(id_token, keys, algorithms=["RS256", "ES256", "PS256", "EdDSA"])
            jwt.JWTClaimsRegistry(
                leeway=CLOCK_LEEWAY, iss={"essential": True, "value": issuer},
                aud={"essential": True, "value": self.settings.oidc_client_id or ""}, exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(decoded.claims)
        except ExpiredTokenError:
            raise SsoRefused("The identity provider's sign-in has expired. Please start again.",
                             "id_token expired") from None
        except (InvalidClaimError, MissingClaimError) as error:
            raise SsoRefused("The identity provider's answer was not for this sign-in.",
                             f"id_token claim {error.claim} wrong or missing") from None
        except (JoseError, ValueError):
            raise SsoRefused("The identity provider's answer could not be verified.", UNVERIFIABLE) from None
        return dict(decoded.claims)

    async def _person(self, claims: dict[str, Any]) -> User:
        email = claims.get("email")
        if not isinstance(email, str) or not email.strip():
            raise SsoRefused("The identity provider did not share your e-mail address.", "no email claim")
        email = normal_email(email)
        # Absent means the provider does not say; false means the address is unproven and proves nobody.
        if claims.get("email_verified") is False:
            raise SsoRefused("Your e-mail address is not verified at the identity provider.",
                             "email not verified", email)
        user = await to_thread.run_sync(self.people.by_email, email)
        if user is None or user.disabled_at is not None:
            # One message for both: a refused page never tells who has an account.
            raise SsoRefused(f"{email} has no enabled account here. Ask an admin to add you.",
                             "unknown user" if user is None else "disabled user", email)
        return user

    async def provider(self) -> Provider:
        """The issuer's endpoints and keys, from its discovery document (fetched at most once an hour)."""
        if self._provider is None or time.monotonic() - self._fetched_at > DISCOVERY_TTL:
            self._provider = await self._discover()
            self._fetched_at = time.monotonic()
        return self._provider

    async def _discover(self) -> Provider:
        issuer = self.settings.oidc_issuer or ""
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                found = await _json(client, issuer.rstrip("/") + "/.well-known/openid-configuration")
                if found.get("issuer") != issuer:
                    # OpenID Connect Discovery 4.3: a document naming another issuer must not be used.
                    raise SsoUnavailable(f"the discovery document names issuer {str(found.get('issuer'))[:100]!r}, "
                                         f"not {issuer!r}")
                endpoints = [found.get(name) for name in ("authorization_endpoint", "token_endpoint", "jwks_uri")]
                if not all(isinstance(url, str) and url for url in endpoints):
                    raise SsoUnavailable("the discovery document lacks an authorization, token or jwks endpoint")
                keys = KeySet.import_key_set(await _json(client, str(endpoints[2])))  # type: ignore[arg-type]
        except httpx.HTTPError as error:
            raise SsoUnavailable(f"the identity provider cannot be reached ({type(error).__name__})") from None
        except (JoseError, ValueError, TypeError):
            raise SsoUnavailable("the identity provider's keys (jwks_uri) could not be read") from None
        return Provider(issuer, str(endpoints[0]), str(endpoints[1]), str(endpoints[2]), keys)

    def _client(self) -> AsyncOAuth2Client:
        secret = self.settings.oidc_client_secret
        return AsyncOAuth2Client(
            client_id=self.settings.oidc_client_id, client_secret=secret, scope="openid email profile",
            redirect_uri=self.redirect_uri, code_challenge_method="S256", timeout=self.timeout,
            # Without a secret the client is public and PKCE alone binds the code to this sign-in.
            token_endpoint_auth_method="client_secret_basic" if secret else "none",
        )


async def _json(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await client.get(url, headers={"Accept": "application/json"})
    response.raise_for_status()
    body = response.json()
    if not isinstance(body, dict):
        raise ValueError(f"{url} did not answer a JSON object")
    return body

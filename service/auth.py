"""Visitor tokens: a signed bearer token that grants access to one conversation only."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .errors import Unauthorized

_SALT = "supportbot.conversation"


class VisitorTokens:
    """Issues and checks conversation tokens (HMAC-SHA1 via itsdangerous, with an issue time)."""

    def __init__(self, secret: str, max_age_seconds: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=_SALT)
        self._max_age = max_age_seconds

    def issue(self, conversation_id: str) -> str:
        """A token for `conversation_id`."""
        return str(self._serializer.dumps(conversation_id))

    def conversation_id(self, token: str) -> str:
        """The conversation a token grants; Unauthorized when it is tampered, expired or malformed."""
        try:
            value = self._serializer.loads(token, max_age=self._max_age)
        except SignatureExpired:
            raise Unauthorized("token expired; start a new conversation", code="token_expired") from None
        except BadSignature:
            raise Unauthorized("invalid token", code="invalid_token") from None
        if not isinstance(value, str):
            raise Unauthorized("invalid token", code="invalid_token")
        return value


def user_hash(secret: str, user_id: str) -> str:
    """The HMAC-SHA256 (hex) of a signed-in user's id, computed by the customer's backend for the widget."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def verified_visitor(metadata: dict[str, str] | None, secret: str | None) -> dict[str, Any] | None:
    """Visitor metadata with `verified` set: a `user_id` is trusted only with a valid `user_hash`.

    A user_id with a wrong hash is refused (401); without a configured secret, user ids are kept but
    marked unverified.
    """
    if not metadata:
        return None
    visitor: dict[str, Any] = {k: v for k, v in metadata.items() if k != "user_hash"}
    user_id = metadata.get("user_id")
    if user_id is None:
        return visitor
    given = metadata.get("user_hash")
    if secret is None or given is None:
        visitor["verified"] = False
        return visitor
    if not hmac.compare_digest(user_hash(secret, user_id), given.lower()):
        raise Unauthorized("user_hash does not match user_id", code="invalid_user_hash")
    visitor["verified"] = True
    return visitor


class AdminSessions:
    """Signed session cookies for the admin pages, and CSRF tokens tied to a per-browser nonce."""

    COOKIE = "sb_admin"
    CSRF_COOKIE = "sb_csrf"

    def __init__(self, secret: str, max_age_seconds: int = 12 * 3600) -> None:
        self._secret = secret.encode()
        self._serializer = URLSafeTimedSerializer(secret, salt="supportbot.admin-session")
        self.max_age = max_age_seconds

    def issue(self, actor: str) -> str:
        """A session cookie value for `actor`."""
        return str(self._serializer.dumps({"actor": actor}))

    def actor(self, cookie: str | None) -> str | None:
        """The signed-in actor, or None for a missing, tampered or expired cookie."""
        if not cookie:
            return None
        try:
            value = self._serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        actor = value.get("actor") if isinstance(value, dict) else None
        return actor if isinstance(actor, str) else None

    def csrf_token(self, nonce: str) -> str:
        """The hidden form field value for a browser's CSRF nonce."""
        return hmac.new(self._secret, f"csrf:{nonce}".encode(), hashlib.sha256).hexdigest()

    def csrf_valid(self, nonce: str | None, token: str | None) -> bool:
        """True when the form's token matches the browser's nonce cookie."""
        return bool(nonce and token) and hmac.compare_digest(self.csrf_token(nonce or ""), token or "")

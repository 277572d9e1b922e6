"""Visitor tokens (one conversation each), widget identity hashes, and admin sessions with their CSRF tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import delete, update
from sqlalchemy.orm import Session, sessionmaker

from .db import transaction
from .errors import Unauthorized
from .models import AdminSession, StaffRole, User, utcnow
from .people import ADMIN_TOKEN_ACTOR, Principal, principal_of

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
    """Admin sessions kept in the database (revocable, shared by replicas) and CSRF tokens bound to them.

    The cookie carries only a signed random session id. A session counts while its row is unrevoked and
    unexpired, and: for a person, while the person is enabled (their role is read at every request, so a
    changed role applies at once); for a sign-in with the shared admin token, while that token is the
    current one (compared by fingerprint, never by the token itself).
    """

    COOKIE = "sb_admin"
    CSRF_COOKIE = "sb_csrf"

    def __init__(self, secret: str, admin_token: str, sessions: sessionmaker[Session],
                 max_age_seconds: int = 12 * 3600) -> None:
        self._secret = secret.encode()
        self._serializer = URLSafeTimedSerializer(secret, salt="supportbot.admin-session")
        self._fingerprint = self.fingerprint(admin_token)
        self._sessions = sessions
        self.max_age = max_age_seconds

    def fingerprint(self, admin_token: str) -> str:
        """The HMAC-SHA256 of an admin token under the service secret: stored instead of the token."""
        return hmac.new(self._secret, f"admin-token:{admin_token}".encode(), hashlib.sha256).hexdigest()

    def issue(self, user: User | None = None) -> str:
        """Start a session for `user` (None: signed in with the shared admin token); returns the cookie value."""
        session_id = secrets.token_urlsafe(32)
        now = utcnow()
        with transaction(self._sessions) as db:
            # Sign-ins are rare: sweeping expired rows here keeps the table to live sessions without a job.
            db.execute(delete(AdminSession).where(AdminSession.expires_at < now))
            db.add(AdminSession(
                id=session_id, actor=user.email if user else ADMIN_TOKEN_ACTOR, user_id=user.id if user else None,
                token_fingerprint=None if user else self._fingerprint, created_at=now,
                expires_at=now + timedelta(seconds=self.max_age)))
        return str(self._serializer.dumps(session_id))

    def signed_in(self, cookie: str | None) -> Principal | None:
        """Who a cookie's live session belongs to, or None (missing, tampered, expired, revoked, disabled
        person, or a cookie made with an admin token that has since changed)."""
        session_id = self._session_id(cookie)
        if session_id is None:
            return None
        with self._sessions() as db:
            row = db.get(AdminSession, session_id)
            if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
                return None
            if row.user_id is not None:
                user = db.get(User, row.user_id)
                if user is None or user.disabled_at is not None:
                    return None
                return principal_of(user, row.id)
            if row.token_fingerprint is None or not hmac.compare_digest(row.token_fingerprint, self._fingerprint):
                return None
            return Principal(ADMIN_TOKEN_ACTOR, StaffRole.ADMIN, session_id=row.id)

    def revoke_all(self, user_id: int) -> int:
        """End every session of a person (disabled, password changed, or on request); how many were live."""
        with transaction(self._sessions) as db:
            result = db.execute(update(AdminSession).where(AdminSession.user_id == user_id,
                                                           AdminSession.revoked_at.is_(None))
                                .values(revoked_at=utcnow()))
            return int(getattr(result, "rowcount", 0) or 0)

    def revoke(self, cookie: str | None) -> None:
        """End the session a cookie names, for every replica (logout)."""
        session_id = self._session_id(cookie)
        if session_id is None:
            return
        with transaction(self._sessions) as db:
            db.execute(update(AdminSession).where(AdminSession.id == session_id, AdminSession.revoked_at.is_(None))
                       .values(revoked_at=utcnow()))

    def _session_id(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            value = self._serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None

    def csrf_token(self, binding: str) -> str:
        """The hidden form field value bound to a session id (signed in) or to the browser's nonce (sign-in form)."""
        return hmac.new(self._secret, f"csrf:{binding}".encode(), hashlib.sha256).hexdigest()

    def csrf_valid(self, binding: str | None, token: str | None) -> bool:
        """True when the form's token was made for this session (or, before sign-in, this browser's nonce)."""
        return bool(binding and token) and hmac.compare_digest(self.csrf_token(binding or ""), token or "")

"""Visitor tokens: a signed bearer token that grants access to one conversation only."""

from __future__ import annotations

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

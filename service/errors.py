"""Domain errors: each carries an HTTP status and a stable code, rendered as one JSON shape."""

from __future__ import annotations


class SupportbotError(Exception):
    """Base of every error the service reports to a client."""

    status_code = 400
    code = "bad_request"
    headers: dict[str, str] | None = None

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, dict[str, str]]:
        """The error in the service's one JSON shape."""
        return {"error": {"code": self.code, "message": self.message}}


class Unauthorized(SupportbotError):
    status_code = 401
    code = "unauthorized"


class Forbidden(SupportbotError):
    status_code = 403
    code = "forbidden"


class NotFound(SupportbotError):
    status_code = 404
    code = "not_found"


class Conflict(SupportbotError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(SupportbotError):
    status_code = 413
    code = "payload_too_large"


class Unprocessable(SupportbotError):
    status_code = 422
    code = "validation_error"


class ConfigError(Exception):
    """A prompt, knowledge or settings file is invalid; names the file, line and reason."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


class ModelUnavailable(Exception):
    """The hosted model could not produce an answer (after the one retry layer)."""


class ServiceUnavailable(SupportbotError):
    status_code = 503
    code = "service_unavailable"


class RateLimited(SupportbotError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}

"""The team's passwords: argon2id hashes (argon2-cffi), rehashed at sign-in when the parameters change."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .errors import Unprocessable

MIN_PASSWORD_LENGTH = 12
# Hashing is deliberately slow; a megabyte "password" must not buy an attacker more of it than a short one.
MAX_PASSWORD_LENGTH = 1024

HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against when the e-mail is unknown or has no password, so that answer takes as long as a wrong
# password does and the timing does not tell which addresses have accounts. One per hasher (parameters).
_DUMMY_HASHES: dict[PasswordHasher, str] = {}


def check_password_rules(password: str) -> None:
    """Raise Unprocessable (422) for a password that is too short or too long."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Unprocessable(f"the password must be at least {MIN_PASSWORD_LENGTH} characters long",
                            code="password_too_short")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise Unprocessable(f"the password must be at most {MAX_PASSWORD_LENGTH} characters long",
                            code="password_too_long")


def hash_password(password: str, hasher: PasswordHasher | None = None) -> str:
    """The argon2id hash of a password that passes the rules (Unprocessable otherwise)."""
    check_password_rules(password)
    return (hasher or HASHER).hash(password)


def verify_password(stored: str | None, password: str,
                    hasher: PasswordHasher | None = None) -> tuple[bool, str | None]:
    """Whether `password` matches `stored`, and a new hash to store when `stored` used older parameters."""
    hasher = hasher or HASHER
    if stored is None or len(password) > MAX_PASSWORD_LENGTH:
        _burn_time(hasher, password)
        return False, None
    try:
        hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False, None
    return True, hasher.hash(password) if hasher.check_needs_rehash(stored) else None


def _burn_time(hasher: PasswordHasher, password: str) -> None:
    if hasher not in _DUMMY_HASHES:
        _DUMMY_HASHES[hasher] = hasher.hash("not-a-password-of-anyone")
    try:
        hasher.verify(_DUMMY_HASHES[hasher], password[:MAX_PASSWORD_LENGTH])
    except VerificationError:
        pass

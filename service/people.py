"""The support team's people: who is acting (a Principal), what each role may do, and looking people up.

Every admin route declares the roles it admits (`service/api/deps.py: requires`), picked from the role sets
here, so the API, the pages and the role table test read one definition:

| set          | roles                   | for                                                                  |
|--------------|-------------------------|----------------------------------------------------------------------|
| `STAFF`      | admin, agent, reviewer  | reading conversations, escalations, prompts, the report; live events |
| `ANSWERING`  | admin, agent            | writing to a visitor, claiming, assigning, resolving                 |
| `CORRECTING` | admin, agent, reviewer  | writing a correction of a bot reply                                  |
| `REVIEWING`  | admin, reviewer         | verdicts on misses, excluding from training, exporting training data |
| `ADMINS`     | admin                   | people, tokens, canned replies, knowledge promotion, the audit log   |

A caller is the shared admin token (`token:admin` in the audit log, role admin), a person's personal API
token, or a person's browser session. Personal tokens and sign-in links are random strings of which only
the SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from .db import transaction
from .models import ApiToken, StaffRole, User, utcnow

ADMIN_TOKEN_ACTOR = "token:admin"  # how the shared SUPPORTBOT_ADMIN_TOKEN appears in the audit log

STAFF = frozenset(StaffRole)
ANSWERING = frozenset({StaffRole.ADMIN, StaffRole.AGENT})
CORRECTING = frozenset(StaffRole)
REVIEWING = frozenset({StaffRole.ADMIN, StaffRole.REVIEWER})
ADMINS = frozenset({StaffRole.ADMIN})

TOKEN_PREFIX = "sbp_"  # a personal API token; tells it apart from the shared admin token at a glance
API_TOKEN = "api"
SIGN_IN_LINK = "sign_in_link"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting: `actor` is what the audit log records (the person's e-mail, or `token:admin`)."""

    actor: str
    role: StaffRole
    user_id: int | None = None  # None for the shared admin token
    name: str | None = None
    session_id: str | None = None  # set for a browser session (CSRF tokens are bound to it)

    @property
    def display_name(self) -> str:
        """What a visitor sees over this person's reply."""
        return self.name or ("Support team" if self.user_id is None else self.actor)


ADMIN_TOKEN = Principal(ADMIN_TOKEN_ACTOR, StaffRole.ADMIN)


def token_sha256(token: str) -> str:
    """What is stored of a personal token or sign-in link."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh personal API token (256 random bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def normal_email(email: str) -> str:
    """E-mail addresses compare without case and surrounding space."""
    return email.strip().lower()


def principal_of(user: User, session_id: str | None = None) -> Principal:
    """The acting principal for an enabled user."""
    return Principal(user.email, StaffRole(user.role), user.id, user.name, session_id)


class People:
    """Looks up who a credential belongs to; enabled users only, tokens unrevoked and unexpired."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def by_api_token(self, token: str) -> Principal | None:
        """The person a personal API token belongs to (its last use recorded), or None."""
        digest = token_sha256(token)
        now = utcnow()
        with transaction(self.sessions) as db:
            row = db.execute(
                select(ApiToken, User).join(User, User.id == ApiToken.user_id)
                .where(ApiToken.token_sha256 == digest, ApiToken.kind == API_TOKEN)
            ).first()
            if row is None:
                return None
            token_row, user = row
            if token_row.revoked_at is not None or user.disabled_at is not None:
                return None
            if token_row.expires_at is not None and token_row.expires_at <= now:
                return None
            # One write per minute at most: a busy automation does not turn every read into a write.
            if token_row.last_used_at is None or (now - token_row.last_used_at).total_seconds() > 60:
                db.execute(update(ApiToken).where(ApiToken.id == token_row.id).values(last_used_at=now))
            return principal_of(user)

    def by_id(self, user_id: int) -> User | None:
        """The user with this id, enabled or not."""
        with self.sessions() as db:
            return db.get(User, user_id)

    def by_email(self, email: str) -> User | None:
        """The user with this e-mail, enabled or not."""
        with self.sessions() as db:
            return db.scalars(select(User).where(User.email == normal_email(email))).first()

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
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .db import transaction
from .errors import Conflict, NotFound, Unprocessable
from .models import AdminSession, ApiToken, AuditEntry, StaffRole, User, utcnow
from .passwords import hash_password, verify_password
from .review import audit

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


# Deliberately loose: one @, a dot in the domain, no spaces. Whether the mailbox exists is not ours to judge.
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")


def valid_email(email: str) -> str:
    """The normalised e-mail address, or Unprocessable (422) when it does not look like one."""
    address = normal_email(email)
    if len(address) > 254 or not _EMAIL.fullmatch(address):
        raise Unprocessable(f"not an e-mail address: {email[:100]!r}", code="invalid_email")
    return address


def valid_role(role: str) -> StaffRole:
    """The role named `role`, or Unprocessable (422)."""
    try:
        return StaffRole(role.strip().lower())
    except ValueError:
        raise Unprocessable(f"unknown role {role[:30]!r}; expected one of: admin, agent, reviewer",
                            code="invalid_role") from None


def valid_name(name: str | None, email: str) -> str:
    """The display name (default: the e-mail's local part), at most 100 characters."""
    text = (name or "").strip() or email.split("@", 1)[0]
    if len(text) > 100:
        raise Unprocessable("the name must be at most 100 characters long", code="invalid_name")
    return text


def principal_of(user: User, session_id: str | None = None) -> Principal:
    """The acting principal for an enabled user."""
    return Principal(user.email, StaffRole(user.role), user.id, user.name, session_id)


@dataclass(frozen=True, slots=True)
class UserChange:
    """The fields a PATCH may change; None leaves a field as it is."""

    name: str | None = None
    role: str | None = None
    disabled: bool | None = None
    available: bool | None = None
    password: str | None = None


class People:
    """Who a credential belongs to, and the team's writes (people, tokens, sign-in links, passwords), audited."""

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


    def add(self, actor: str, email: str, role: str, name: str | None = None,
            password: str | None = None) -> User:
        """A new person (Conflict when the e-mail is taken); the password, if any, at least 12 characters."""
        address = valid_email(email)
        user = User(email=address, name=valid_name(name, address), role=valid_role(role).value,
                    password_hash=hash_password(password) if password is not None else None, available=False)
        try:
            with transaction(self.sessions) as db:
                if db.scalars(select(User.id).where(User.email == address)).first() is not None:
                    raise Conflict(f"{address} already has an account", code="duplicate_email")
                db.add(user)
                db.flush()
                audit(db, actor, "user.add", address, {"role": user.role, "password": password is not None})
        except IntegrityError:  # two adds of one address at once: the unique index decides
            raise Conflict(f"{address} already has an account", code="duplicate_email") from None
        return user

    def everyone(self) -> list[User]:
        """Every person, enabled or not, by e-mail."""
        with self.sessions() as db:
            return list(db.scalars(select(User).order_by(User.email)))

    def get(self, email: str) -> User:
        """The person with this e-mail, or NotFound."""
        user = self.by_email(email)
        if user is None:
            raise NotFound(f"no person with the e-mail {normal_email(email)[:254]!r}", code="unknown_user")
        return user

    def last_sign_ins(self) -> dict[int, datetime]:
        """When each person last signed in, by user id (from the audit log: sessions are swept when they expire)."""
        with self.sessions() as db:
            rows = db.execute(select(User.id, func.max(AuditEntry.created_at))
                              .join(AuditEntry, AuditEntry.actor == User.email)
                              .where(AuditEntry.action == "login").group_by(User.id))
            return {int(user_id): _aware(at) for user_id, at in rows if at is not None}

    def enabled_admins(self) -> int:
        """How many enabled people have the admin role (the shared admin token not counted)."""
        with self.sessions() as db:
            return int(db.scalar(select(func.count(User.id)).where(
                User.role == StaffRole.ADMIN.value, User.disabled_at.is_(None))) or 0)

    def change(self, actor: str, email: str, change: UserChange) -> User:
        """Apply `change` (disabling ends the person's sessions and revokes their tokens); all or nothing."""
        role = valid_role(change.role) if change.role is not None else None
        name = valid_name(change.name, email) if change.name is not None else None
        new_hash = hash_password(change.password) if change.password is not None else None
        with transaction(self.sessions) as db:
            user = self._locked(db, email)
            details: dict[str, object] = {}
            if name is not None and name != user.name:
                user.name, details["name"] = name, name
            if role is not None and role.value != user.role:
                details["role"] = [user.role, role.value]
                user.role = role.value
            if change.available is not None and change.available != user.available:
                user.available = details["available"] = change.available
            if change.disabled is not None and change.disabled != (user.disabled_at is not None):
                details["disabled"] = change.disabled
                user.disabled_at = utcnow() if change.disabled else None
                if change.disabled:
                    details["sessions_ended"] = _end_sessions(db, user.id)
                    details["tokens_revoked"] = _revoke_tokens(db, user.id)
            if new_hash is not None:
                user.password_hash, details["password"] = new_hash, "set"
                details["sessions_ended"] = _end_sessions(db, user.id)
            if details:
                audit(db, actor, "user.change", user.email, details)
            return user

    def disable(self, actor: str, email: str) -> User:
        """Disable a person: their sessions end and every token of theirs is revoked."""
        return self.change(actor, email, UserChange(disabled=True))

    def new_api_token(self, actor: str, email: str, label: str | None = None) -> tuple[ApiToken, str]:
        """A new personal API token for an enabled person: its row and the token (shown once, never stored)."""
        token, label = new_token(), (label or "").strip()[:100] or None
        with transaction(self.sessions) as db:
            user = self._locked(db, email)
            if user.disabled_at is not None:
                raise Unprocessable(f"{user.email} is disabled; enable them first", code="user_disabled")
            row = ApiToken(user_id=user.id, kind=API_TOKEN, token_sha256=token_sha256(token), label=label)
            db.add(row)
            db.flush()
            audit(db, actor, "token.add", user.email, {"token_id": row.id, "label": label})
        return row, token

    def api_tokens(self, email: str) -> list[ApiToken]:
        """A person's personal API tokens (revoked ones too), newest first; never the secret."""
        user = self.get(email)
        with self.sessions() as db:
            return list(db.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.kind == API_TOKEN)
                                   .order_by(ApiToken.id.desc())))

    def revoke_api_token(self, actor: str, token_id: int) -> ApiToken:
        """Revoke a personal API token by id (NotFound for an unknown id); revoking twice changes nothing."""
        with transaction(self.sessions) as db:
            row = db.get(ApiToken, token_id)
            if row is None or row.kind != API_TOKEN:
                raise NotFound(f"no personal API token with id {token_id}", code="unknown_token")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                owner = db.get(User, row.user_id)
                audit(db, actor, "token.revoke", owner.email if owner else None, {"token_id": row.id})
            return row

    def new_sign_in_link(self, actor: str, email: str, minutes: int, base_url: str) -> str:
        """A one-time sign-in link for an enabled person, valid for `minutes`; only its SHA-256 is kept."""
        token = secrets.token_urlsafe(32)
        with transaction(self.sessions) as db:
            user = self._locked(db, email)
            if user.disabled_at is not None:
                raise Unprocessable(f"{user.email} is disabled; enable them first", code="user_disabled")
            db.add(ApiToken(user_id=user.id, kind=SIGN_IN_LINK, token_sha256=token_sha256(token),
                            expires_at=utcnow() + timedelta(minutes=minutes)))
            audit(db, actor, "user.sign_in_link", user.email, {"minutes": minutes})
        return f"{(base_url or 'http://127.0.0.1:8000').rstrip('/')}/admin/login/link?token={token}"

    def sign_in_link_owner(self, token: str) -> User | None:
        """The enabled person an unused, unexpired sign-in link is for (the link left unused), or None."""
        with self.sessions() as db:
            row = db.execute(self._link_query(token)).first()
            if row is None:
                return None
            _, user = row
            return user

    def use_sign_in_link(self, token: str) -> User | None:
        """Spend a sign-in link: its enabled person, or None (unknown, expired, used, person disabled)."""
        with transaction(self.sessions) as db:
            row = db.execute(self._link_query(token)).first()
            if row is None:
                return None
            link, user = row
            # A conditional update: of two uses racing (two replicas), exactly one sees a row change.
            spent = db.execute(update(ApiToken).where(ApiToken.id == link.id, ApiToken.revoked_at.is_(None))
                               .values(revoked_at=utcnow(), last_used_at=utcnow()))
            if not getattr(spent, "rowcount", 0):
                return None
            audit(db, user.email, "user.sign_in_link_used", user.email, {"token_id": link.id})
            return user

    def check_password(self, email: str, password: str) -> User | None:
        """The enabled person whose password this is (its hash renewed if the parameters changed), or None."""
        user = self.by_email(email)
        usable = user is not None and user.disabled_at is None
        ok, new_hash = verify_password(user.password_hash if user is not None and usable else None, password)
        if not ok or user is None:
            return None
        if new_hash is not None:
            with transaction(self.sessions) as db:
                db.execute(update(User).where(User.id == user.id).values(password_hash=new_hash))
        return user

    def set_own_password(self, who: Principal, password: str) -> int:
        """A signed-in person sets their password; their other sessions end (how many)."""
        if who.user_id is None:
            raise Unprocessable("signed in with the shared admin token: there is no password to set",
                                code="no_account")
        new_hash = hash_password(password)
        with transaction(self.sessions) as db:
            user = db.get(User, who.user_id)
            if user is None or user.disabled_at is not None:
                raise NotFound("your account no longer exists or is disabled", code="unknown_user")
            user.password_hash = new_hash
            ended = _end_sessions(db, user.id, keep=who.session_id)
            audit(db, who.actor, "user.password_set", user.email, {"sessions_ended": ended})
            return ended

    def end_sessions(self, actor: str, email: str, keep: str | None = None) -> int:
        """End every session of a person, but `keep`; how many were live (NotFound for an unknown e-mail)."""
        with transaction(self.sessions) as db:
            user = self._locked(db, email)
            ended = _end_sessions(db, user.id, keep=keep)
            audit(db, actor, "user.sessions_ended", user.email, {"sessions_ended": ended})
            return ended

    @staticmethod
    def _locked(db: Session, email: str) -> User:
        user = db.scalars(select(User).where(User.email == normal_email(email)).with_for_update()).first()
        if user is None:
            raise NotFound(f"no person with the e-mail {normal_email(email)[:254]!r}", code="unknown_user")
        return user

    @staticmethod
    def _link_query(token: str) -> Select[ApiToken, User]:
        return (select(ApiToken, User).join(User, User.id == ApiToken.user_id)
                .where(ApiToken.token_sha256 == token_sha256(token), ApiToken.kind == SIGN_IN_LINK,
                       ApiToken.revoked_at.is_(None), ApiToken.expires_at > utcnow(), User.disabled_at.is_(None)))


def _end_sessions(db: Session, user_id: int, keep: str | None = None) -> int:
    # In the caller's transaction (service/auth.py's AdminSessions.revoke_all opens its own): a disabled
    # person and their sessions change together or not at all.
    query = update(AdminSession).where(AdminSession.user_id == user_id, AdminSession.revoked_at.is_(None))
    if keep is not None:
        query = query.where(AdminSession.id != keep)
    return int(getattr(db.execute(query.values(revoked_at=utcnow())), "rowcount", 0) or 0)


def _revoke_tokens(db: Session, user_id: int) -> int:
    result = db.execute(update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
                        .values(revoked_at=utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)


def _aware(at: datetime) -> datetime:
    # func.max bypasses the column type's conversion: SQLite hands back a naive (UTC) datetime or a string.
    value = datetime.fromisoformat(at) if isinstance(at, str) else at
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

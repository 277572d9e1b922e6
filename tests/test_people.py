"""The team's people (service/people.py, service/passwords.py) and `supportbot user ...` (service/user_cli.py)."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from service import cli, passwords
from service.config import Settings
from service.db import transaction
from service.errors import Conflict, NotFound, Unprocessable
from service.models import AdminSession, ApiToken, AuditEntry, User, utcnow
from service.people import SIGN_IN_LINK, People, UserChange, token_sha256
from service.runtime import Runtime

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real argon2id with small parameters: the service's cost (~0.1-0.4 s a hash) would make these tests slow."""
    monkeypatch.setattr(passwords, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def people(runtime: Runtime) -> People:
    return runtime.people


def audit_rows(runtime: Runtime) -> list[tuple[str, str, str | None]]:
    with runtime.log.sessions() as db:
        return [(e.actor, e.action, e.target) for e in db.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def users_count(runtime: Runtime) -> int:
    with runtime.log.sessions() as db:
        return len(list(db.scalars(select(User))))


def live_sessions(runtime: Runtime, user_id: int) -> int:
    with runtime.log.sessions() as db:
        return len(list(db.scalars(select(AdminSession).where(AdminSession.user_id == user_id,
                                                              AdminSession.revoked_at.is_(None)))))


def start_session(runtime: Runtime, user: User) -> str:
    from service.auth import AdminSessions

    helper = AdminSessions("test-secret-key-0123456789", runtime.admin_token, runtime.log.sessions)
    helper.issue(user)
    with runtime.log.sessions() as db:
        return db.scalars(select(AdminSession.id).where(AdminSession.user_id == user.id)
                          .order_by(AdminSession.created_at.desc())).first() or ""


def test_add_normalises_the_email_hashes_the_password_and_audits_the_actor(people: People, runtime: Runtime) -> None:
    user = people.add("boss@example.com", "  Ana@Example.COM ", "agent", "Ana", PASSWORD)

    assert user.email == "ana@example.com" and user.role == "agent" and user.name == "Ana"
    assert user.password_hash and user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    assert people.check_password("ANA@example.com", PASSWORD) is not None
    assert people.check_password("ana@example.com", PASSWORD + "x") is None
    assert audit_rows(runtime) == [("boss@example.com", "user.add", "ana@example.com")]
    with runtime.log.sessions() as db:
        details = db.scalars(select(AuditEntry.details)).one()
    assert PASSWORD not in str(details), "the audit log never holds a password"


@pytest.mark.parametrize(("email", "role", "password", "code"), [
    ("not-an-address", "agent", None, "invalid_email"),
    ("a@b", "agent", None, "invalid_email"),
    ("two@@example.com", "agent", None, "invalid_email"),
    ("ok@example.com", "boss", None, "invalid_role"),
    ("ok@example.com", "agent", "eleven char", "password_too_short"),
])
def test_bad_input_is_refused_and_changes_nothing(people: People, runtime: Runtime, email: str, role: str,
                                                  password: str | None, code: str) -> None:
    with pytest.raises(Unprocessable) as refused:
        people.add("cli", email, role, None, password)

    assert refused.value.code == code
    assert users_count(runtime) == 0 and audit_rows(runtime) == []


def test_a_second_account_for_one_address_is_a_conflict(people: People, runtime: Runtime) -> None:
    people.add("cli", "ana@example.com", "agent")
    with pytest.raises(Conflict):
        people.add("cli", "ANA@example.com", "admin")
    assert [u.role for u in people.everyone()] == ["agent"]


def test_disable_ends_sessions_and_revokes_tokens_and_enable_does_not_bring_them_back(
        people: People, runtime: Runtime) -> None:
    user = people.add("cli", "ana@example.com", "agent", password=PASSWORD)
    start_session(runtime, user)
    _, token = people.new_api_token("cli", "ana@example.com", "zapier")
    assert people.by_api_token(token) is not None and live_sessions(runtime, user.id) == 1

    people.disable("boss@example.com", "ana@example.com")

    assert people.by_api_token(token) is None and live_sessions(runtime, user.id) == 0
    assert people.check_password("ana@example.com", PASSWORD) is None, "a disabled person cannot sign in"
    people.change("boss@example.com", "ana@example.com", UserChange(disabled=False))
    assert people.by_api_token(token) is None, "re-enabling does not revive a revoked token"
    assert people.check_password("ana@example.com", PASSWORD) is not None
    assert ("boss@example.com", "user.change", "ana@example.com") in audit_rows(runtime)


def test_change_applies_every_field_or_none(people: People, runtime: Runtime) -> None:
    people.add("cli", "ana@example.com", "agent", "Ana")
    with pytest.raises(Unprocessable):
        people.change("cli", "ana@example.com", UserChange(name="Ana B", role="admin", password="short"))
    assert people.get("ana@example.com").role == "agent" and people.get("ana@example.com").name == "Ana"

    changed = people.change("cli", "ana@example.com", UserChange(name="Ana B", role="reviewer", available=True))
    assert (changed.name, changed.role, changed.available) == ("Ana B", "reviewer", True)
    with pytest.raises(NotFound):
        people.change("cli", "nobody@example.com", UserChange(role="admin"))


def test_tokens_are_stored_as_sha256_listed_without_secret_and_revocable(people: People, runtime: Runtime) -> None:
    people.add("cli", "ana@example.com", "agent")
    row, token = people.new_api_token("cli", "ana@example.com", "zapier")

    with runtime.log.sessions() as db:
        stored = db.get(ApiToken, row.id)
    assert stored is not None and stored.token_sha256 == token_sha256(token) and token not in stored.token_sha256
    assert [(t.id, t.label) for t in people.api_tokens("ana@example.com")] == [(row.id, "zapier")]
    who = people.by_api_token(token)
    assert who is not None and who.actor == "ana@example.com"

    people.revoke_api_token("boss@example.com", row.id)
    assert people.by_api_token(token) is None
    with pytest.raises(NotFound):
        people.revoke_api_token("cli", row.id + 100)
    assert ("boss@example.com", "token.revoke", "ana@example.com") in audit_rows(runtime)


def test_a_sign_in_link_works_once_and_not_after_it_expires(people: People, runtime: Runtime) -> None:
    people.add("cli", "ana@example.com", "agent")
    link = people.new_sign_in_link("cli", "ana@example.com", 60, "https://help.example.com/")
    assert link.startswith("https://help.example.com/admin/login/link?token=")
    token = link.split("token=", 1)[1]

    assert people.sign_in_link_owner(token) is not None, "looking does not spend it"
    used = people.use_sign_in_link(token)
    assert used is not None and used.email == "ana@example.com"
    assert people.use_sign_in_link(token) is None, "single use"
    assert people.by_api_token(token) is None, "a sign-in link is not an API token"

    late = people.new_sign_in_link("cli", "ana@example.com", 60, "").split("token=", 1)[1]
    with transaction(runtime.log.sessions) as db:
        db.execute(update(ApiToken).where(ApiToken.kind == SIGN_IN_LINK, ApiToken.revoked_at.is_(None))
                   .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert people.use_sign_in_link(late) is None


def test_a_hash_made_with_older_parameters_is_renewed_at_sign_in(people: People, runtime: Runtime) -> None:
    people.add("cli", "ana@example.com", "agent")
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    with transaction(runtime.log.sessions) as db:
        db.execute(update(User).values(password_hash=weak))

    assert people.check_password("ana@example.com", PASSWORD) is not None
    renewed = people.get("ana@example.com").password_hash
    assert renewed and renewed != weak and not passwords.HASHER.check_needs_rehash(renewed)
    assert people.check_password("ana@example.com", PASSWORD) is not None


def test_setting_ones_password_ends_ones_other_sessions(people: People, runtime: Runtime) -> None:
    from service.people import principal_of

    user = people.add("cli", "ana@example.com", "agent")
    first, _second = start_session(runtime, user), start_session(runtime, user)
    with runtime.log.sessions() as db:
        ids = list(db.scalars(select(AdminSession.id).where(AdminSession.user_id == user.id)))
    keep = ids[0]

    assert people.set_own_password(principal_of(user, keep), PASSWORD) == 1
    assert live_sessions(runtime, user.id) == 1 and first
    assert people.check_password("ana@example.com", PASSWORD) is not None


# --- the command line --------------------------------------------------------------------------------------

@pytest.fixture
def run_cli(settings: Settings, runtime: Runtime, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(cli, "get_settings", lambda: settings)

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = cli.main(["user", *args])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_cli_add_without_password_prints_a_one_time_link(run_cli, people: People, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run_cli("add", "Ana@Example.com", "--role", "admin", "--name", "Ana")

    assert code == 0 and "added ana@example.com (Ana) as admin" in out
    link = re.search(r"http://127\.0\.0\.1:8000/admin/login/link\?token=(\S+)", out)
    assert link, out
    assert people.use_sign_in_link(link.group(1)) is not None
    assert ("cli", "user.add", "ana@example.com") in audit_rows(runtime)


def test_cli_add_reads_the_password_from_stdin(run_cli, people: People) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run_cli("add", "bo@example.com", "--role", "agent", "--password-stdin", stdin=PASSWORD + "\n")

    assert code == 0 and "sign-in link" not in out
    assert people.check_password("bo@example.com", PASSWORD) is not None


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (("add", "nope", "--role", "agent"), "", "not an e-mail address"),
    (("add", "bo@example.com", "--role", "boss"), "", "unknown role"),
    (("add", "bo@example.com", "--role", "agent", "--password-stdin"), "short\n", "at least 12 characters"),
    (("disable", "nobody@example.com"), "", "no person with the e-mail"),
    (("token", "nobody@example.com"), "", "no person with the e-mail"),
    (("revoke-token", "42"), "", "no personal API token with id 42"),
])
def test_cli_bad_input_exits_1_with_a_clear_error_and_changes_nothing(  # type: ignore[no-untyped-def]
        run_cli, runtime: Runtime, args: tuple[str, ...], stdin: str, message: str) -> None:
    code, out, err = run_cli(*args, stdin=stdin)

    assert code == 1 and message in err and out == ""
    assert users_count(runtime) == 0 and audit_rows(runtime) == []


def test_cli_token_list_revoke_and_disable(run_cli, people: People) -> None:  # type: ignore[no-untyped-def]
    run_cli("add", "ana@example.com", "--role", "admin")
    run_cli("add", "bo@example.com", "--role", "agent")
    code, out, _ = run_cli("token", "bo@example.com", "--label", "zapier")
    token = out.strip().splitlines()[-1]
    assert code == 0 and token.startswith("sbp_") and people.by_api_token(token) is not None

    code, out, _ = run_cli("tokens", "bo@example.com")
    lines = out.strip().splitlines()
    assert code == 0 and lines[0].split()[:2] == ["ID", "LABEL"] and "zapier" in lines[1] and "active" in lines[1]
    assert token not in out
    token_id = lines[1].split()[0]

    assert run_cli("revoke-token", token_id)[0] == 0
    assert people.by_api_token(token) is None
    assert "revoked" in run_cli("tokens", "bo@example.com")[1]

    code, out, err = run_cli("disable", "ana@example.com")
    assert code == 0 and "disabled ana@example.com" in out and "no enabled admin is left" in err
    code, out, _ = run_cli("list")
    rows = {line.split()[0]: line.split() for line in out.strip().splitlines()[1:]}
    assert rows["ana@example.com"][2:4] == ["admin", "disabled"]
    assert rows["bo@example.com"][2:4] == ["agent", "enabled"]

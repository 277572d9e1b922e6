"""People through the admin API and the pages: sign-in by password and by one-time link, tokens, sessions,
bad input refused (error shape, nothing changed), failures locked out per network and per account."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from service.api import create_app
from service.models import AuditEntry, User, utcnow
from service.runtime import Runtime

from .test_admin_pages import csrf_of, sign_in
from .test_admin_sessions import client_at
from .test_people import fast_hashing  # noqa: F401 - autouse: cheap argon2 parameters

PASSWORD = "correct horse battery"


def admin(runtime: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {runtime.admin_token}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def audit_rows(runtime: Runtime) -> list[tuple[str, str, str | None]]:
    with runtime.log.sessions() as db:
        return [(e.actor, e.action, e.target) for e in db.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def snapshot(runtime: Runtime) -> list[tuple[Any, ...]]:
    with runtime.log.sessions() as db:
        return [(u.email, u.name, u.role, u.disabled_at, u.available, u.password_hash)
                for u in db.scalars(select(User).order_by(User.id))]


async def add(client: httpx.AsyncClient, runtime: Runtime, email: str, role: str = "agent",
              password: str | None = PASSWORD, headers: dict[str, str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"email": email, "role": role, "name": email.split("@")[0].title()}
    if password is not None:
        body["password"] = password
    response = await client.post("/admin/api/users", json=body, headers=headers or admin(runtime))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def personal_token(client: httpx.AsyncClient, runtime: Runtime, email: str) -> str:
    response = await client.post(f"/admin/api/users/{email}/tokens", json={"label": "tests"}, headers=admin(runtime))
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


async def password_sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    form = await client.get("/admin/login")
    return await client.post("/admin/login", data={"email": email, "password": password, "csrf": csrf_of(form.text),
                                                   "next": "/admin"})


async def test_an_admin_adds_lists_reads_and_changes_people_audited_as_themselves(
        client: httpx.AsyncClient, runtime: Runtime) -> None:
    await add(client, runtime, "lead@example.com", role="admin")
    lead = bearer(await personal_token(client, runtime, "lead@example.com"))

    created = await add(client, runtime, "Ana@Example.com", password=None, headers=lead)
    assert created["email"] == "ana@example.com" and created["role"] == "agent" and created["disabled"] is False
    assert created["sign_in_link"].startswith("http://127.0.0.1:8000/admin/login/link?token=")
    listed = (await client.get("/admin/api/users", headers=lead)).json()
    assert [u["email"] for u in listed] == ["ana@example.com", "lead@example.com"]
    assert all(u["sign_in_link"] is None for u in listed), "a link is shown once, at creation"

    patched = await client.patch("/admin/api/users/ana@example.com", headers=lead,
                                 json={"role": "reviewer", "name": "Ana B", "available": True})
    assert patched.status_code == 200
    assert (await client.get("/admin/api/users/ANA@example.com", headers=lead)).json() | {"created_at": None} == {
        "id": created["id"], "email": "ana@example.com", "name": "Ana B", "role": "reviewer", "disabled": False,
        "available": True, "created_at": None, "sign_in_link": None}
    rows = audit_rows(runtime)
    assert ("lead@example.com", "user.add", "ana@example.com") in rows
    assert ("lead@example.com", "user.change", "ana@example.com") in rows
    assert ("token:admin", "user.add", "lead@example.com") in rows


BAD_INPUT: list[tuple[str, str, dict[str, Any] | None, int, str]] = [
    ("post", "/admin/api/users", {"email": "ana@example.com", "role": "agent"}, 409, "duplicate_email"),
    ("post", "/admin/api/users", {"email": "not-an-address", "role": "agent"}, 422, "invalid_email"),
    ("post", "/admin/api/users", {"email": "new@example.com", "role": "boss"}, 422, "validation_error"),
    ("post", "/admin/api/users", {"email": "new@example.com", "role": "agent", "password": "too short"}, 422,
     "password_too_short"),
    ("post", "/admin/api/users", {"email": "new@example.com", "role": "agent", "admin": True}, 422,
     "validation_error"),
    ("patch", "/admin/api/users/ana@example.com", {"role": "owner"}, 422, "validation_error"),
    ("patch", "/admin/api/users/ana@example.com", {"role": "admin", "password": "short"}, 422, "password_too_short"),
    ("patch", "/admin/api/users/nobody@example.com", {"role": "admin"}, 404, "unknown_user"),
    ("get", "/admin/api/users/nobody@example.com", None, 404, "unknown_user"),
    ("post", "/admin/api/users/nobody@example.com/tokens", {}, 404, "unknown_user"),
    ("delete", "/admin/api/tokens/999", None, 404, "unknown_token"),
    ("delete", "/admin/api/users/nobody@example.com/sessions", None, 404, "unknown_user"),
]


async def test_bad_input_is_refused_with_the_error_shape_and_changes_nothing(
        client: httpx.AsyncClient, runtime: Runtime) -> None:
    await add(client, runtime, "ana@example.com")
    before, audited = snapshot(runtime), audit_rows(runtime)

    for method, path, body, status, code in BAD_INPUT:
        kwargs: dict[str, Any] = {"headers": admin(runtime)} | ({"json": body} if body is not None else {})
        response = await client.request(method, path, **kwargs)

        assert response.status_code == status, (method, path, body, response.text)
        assert response.json()["error"]["code"] == code and response.json()["error"]["message"], (method, path)
        assert snapshot(runtime) == before and audit_rows(runtime) == audited, (method, path, body)


async def test_agents_and_reviewers_may_not_manage_people(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await add(client, runtime, "agent@example.com", role="agent")
    await add(client, runtime, "rev@example.com", role="reviewer")
    before = snapshot(runtime)
    for email in ["agent@example.com", "rev@example.com"]:
        token = bearer(await personal_token(client, runtime, email))
        refused = await client.post("/admin/api/users", headers=token, json={"email": "x@example.com", "role": "admin"})
        listing = await client.get("/admin/api/users", headers=token)
        assert refused.status_code == listing.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden_role"
        assert (email, "forbidden", "POST /admin/api/users") in audit_rows(runtime)
    assert snapshot(runtime) == before


async def test_a_revoked_token_and_a_disabled_persons_token_are_refused(
        client: httpx.AsyncClient, runtime: Runtime) -> None:
    await add(client, runtime, "lead@example.com", role="admin")
    token = await personal_token(client, runtime, "lead@example.com")
    spare = await personal_token(client, runtime, "lead@example.com")
    listed = (await client.get("/admin/api/users/lead@example.com/tokens", headers=admin(runtime))).json()
    assert len(listed) == 2 and all("token" not in t for t in listed), "the secret is never listed"
    assert token not in str(listed) and (await client.get("/admin/api/users", headers=bearer(token))).status_code == 200

    revoked = await client.delete(f"/admin/api/tokens/{listed[1]['id']}", headers=admin(runtime))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    refused = await client.get("/admin/api/users", headers=bearer(token))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_admin_token"
    assert (await client.get("/admin/api/users", headers=bearer(spare))).status_code == 200

    assert (await password_sign_in(client, "lead@example.com", PASSWORD)).status_code == 303
    assert (await client.get("/admin/users")).status_code == 200

    disabled = await client.patch("/admin/api/users/lead@example.com", json={"disabled": True}, headers=admin(runtime))
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    assert (await client.get("/admin/api/users", headers=bearer(spare))).status_code == 401
    assert (await client.get("/admin/api/escalations", headers=bearer(spare))).status_code == 401
    gone = await client.get("/admin/users")
    assert gone.status_code == 303 and gone.headers["location"].startswith("/admin/login"), "their session ended"
    assert ("token:admin", "token.revoke", "lead@example.com") in audit_rows(runtime)


async def test_password_sign_in_through_the_form_opens_the_pages_as_that_person(
        client: httpx.AsyncClient, runtime: Runtime) -> None:
    await add(client, runtime, "ana@example.com", role="agent")

    response = await password_sign_in(client, " Ana@Example.com", PASSWORD)

    assert response.status_code == 303 and response.headers["location"] == "/admin"
    inbox = await client.get("/admin")
    assert inbox.status_code == 200 and "Ana · agent" in inbox.text
    assert (await client.get("/admin/users")).status_code == 403, "an agent does not manage people"
    assert ("ana@example.com", "login", None) in audit_rows(runtime)
    ana = runtime.people.get("ana@example.com")
    last = runtime.people.last_sign_ins()
    assert list(last) == [ana.id] and abs((utcnow() - last[ana.id]).total_seconds()) < 60


async def test_wrong_password_unknown_address_and_disabled_person_get_one_answer(
        client: httpx.AsyncClient, runtime: Runtime) -> None:
    await add(client, runtime, "ana@example.com")
    await add(client, runtime, "gone@example.com")
    await client.patch("/admin/api/users/gone@example.com", json={"disabled": True}, headers=admin(runtime))

    answers = [await password_sign_in(client, email, password) for email, password in [
        ("ana@example.com", PASSWORD + "!"), ("nobody@example.com", PASSWORD), ("gone@example.com", PASSWORD)]]

    assert [a.status_code for a in answers] == [401, 401, 401]
    assert all("Wrong e-mail or password." in a.text for a in answers)
    assert "sb_admin" not in client.cookies
    assert [r for r in audit_rows(runtime) if r[1] == "login.failed"] == [
        ("anonymous", "login.failed", "ana@example.com"), ("anonymous", "login.failed", "nobody@example.com"),
        ("anonymous", "login.failed", "gone@example.com")]


async def test_an_account_waits_after_five_wrong_passwords_from_any_network(runtime: Runtime) -> None:
    app = create_app(runtime=runtime)
    async with client_at(app, "127.0.0.1") as setup:
        await add(setup, runtime, "ana@example.com")
    wrong = []
    for n in range(6):  # each from its own network: the per-IP guard never trips
        async with client_at(app, f"203.0.113.{n + 10}") as guesser:
            wrong.append(await password_sign_in(guesser, "ana@example.com", f"guess number {n}"))
    async with client_at(app, "198.51.100.9") as owner:
        right = await password_sign_in(owner, "ana@example.com", PASSWORD)
        other = await add(owner, runtime, "bo@example.com")
        assert (await password_sign_in(owner, other["email"], PASSWORD)).status_code == 303, "others unaffected"

    assert [w.status_code for w in wrong] == [401, 401, 401, 401, 429, 429]
    assert int(wrong[-1].headers["retry-after"]) >= 1
    assert right.status_code == 429 and int(right.headers["retry-after"]) >= 1, "the right password waits too"
    assert [r[1] for r in audit_rows(runtime)].count("account.locked_out") == 1


async def test_one_network_guessing_many_accounts_is_locked_out(runtime: Runtime) -> None:
    app = create_app(runtime=runtime)
    async with client_at(app, "203.0.113.7") as guesser:
        answers = [await password_sign_in(guesser, f"user{n}@example.com", PASSWORD) for n in range(12)]
    assert answers[0].status_code == 401 and answers[-1].status_code == 429
    assert "admin.locked_out" in [r[1] for r in audit_rows(runtime)]


async def test_a_sign_in_link_signs_in_once_then_the_person_sets_a_password(
        client: httpx.AsyncClient, runtime: Runtime) -> None:
    link = (await add(client, runtime, "ana@example.com", password=None))["sign_in_link"]
    path = link.removeprefix("http://127.0.0.1:8000")

    landing = await client.get(path)
    assert landing.status_code == 200 and "ana@example.com" in landing.text
    token = path.split("token=", 1)[1]
    used = await client.post("/admin/login/link", data={"token": token, "csrf": csrf_of(landing.text)})
    assert used.status_code == 303 and used.headers["location"] == "/admin/account"
    account = await client.get("/admin/account")
    assert account.status_code == 200 and "Set a password" in account.text

    again = await client.post("/admin/login/link", data={"token": token, "csrf": csrf_of(landing.text)})
    assert again.status_code == 400 and "expired or was already used" in again.text
    assert (await client.get(path)).status_code == 400

    csrf = csrf_of(account.text)
    differ = await client.post("/admin/account/password", data={"csrf": csrf, "password": PASSWORD,
                                                                "password_again": PASSWORD + "?"})
    short = await client.post("/admin/account/password", data={"csrf": csrf, "password": "short",
                                                               "password_again": "short"})
    assert differ.status_code == 422 and short.status_code == 422 and "at least 12" in short.text
    assert snapshot(runtime)[0][5] is None, "nothing stored for refused passwords"
    saved = await client.post("/admin/account/password", data={"csrf": csrf, "password": PASSWORD,
                                                               "password_again": PASSWORD})
    assert saved.status_code == 303 and (await client.get("/admin/account")).status_code == 200, "still signed in"

    async with client_at(create_app(runtime=runtime), "127.0.0.1") as fresh:
        assert (await password_sign_in(fresh, "ana@example.com", PASSWORD)).status_code == 303
    rows = audit_rows(runtime)
    assert ("ana@example.com", "user.password_set", "ana@example.com") in rows
    assert ("ana@example.com", "login", None) in rows


async def test_a_password_change_and_a_sessions_delete_end_other_sessions(
        client: httpx.AsyncClient, runtime: Runtime) -> None:
    await add(client, runtime, "ana@example.com")
    app = create_app(runtime=runtime)
    async with client_at(app, "127.0.0.1") as laptop, client_at(app, "127.0.0.1") as phone:
        for device in (laptop, phone):
            assert (await password_sign_in(device, "ana@example.com", PASSWORD)).status_code == 303
        page = await laptop.get("/admin/account")
        changed = await laptop.post("/admin/account/password", data={
            "csrf": csrf_of(page.text), "password": PASSWORD + " 2", "password_again": PASSWORD + " 2"})
        assert changed.status_code == 303
        assert (await laptop.get("/admin")).status_code == 200
        assert (await phone.get("/admin")).status_code == 303, "the other session ended"

        ended = await client.delete("/admin/api/users/ana@example.com/sessions", headers=admin(runtime))
        assert ended.status_code == 200 and ended.json() == {"sessions_ended": 1}
        assert (await laptop.get("/admin")).status_code == 303


async def test_the_people_page_adds_changes_and_disables_people(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await sign_in(client, runtime)
    page = await client.get("/admin/users")
    assert page.status_code == 200 and "Add a person" in page.text

    added = await client.post("/admin/users", data={"csrf": csrf_of(page.text), "email": "Ana@Example.com",
                                                    "name": "Ana", "role": "agent"})
    assert added.status_code == 201 and "/admin/login/link?token=" in added.text and "ana@example.com" in added.text
    csrf = csrf_of(added.text)
    duplicate = await client.post("/admin/users", data={"csrf": csrf, "email": "ana@example.com", "role": "agent"})
    assert duplicate.status_code == 409 and "already has an account" in duplicate.text

    for action, data in [("role", {"role": "reviewer"}), ("available", {"available": "true"}),
                         ("disabled", {"disabled": "true"})]:
        response = await client.post(f"/admin/users/ana%40example.com/{action}", data={"csrf": csrf, **data})
        assert response.status_code == 303, (action, response.text)
    bad = await client.post("/admin/users/ana%40example.com/role", data={"csrf": csrf, "role": "owner"})
    assert bad.status_code == 422 and "unknown role" in bad.text
    forged = await client.post("/admin/users/ana%40example.com/role", data={"csrf": "0" * 64, "role": "admin"})
    assert forged.status_code == 401

    ana = (await client.get("/admin/api/users/ana@example.com", headers=admin(runtime))).json()
    assert (ana["role"], ana["available"], ana["disabled"]) == ("reviewer", True, True)
    assert "disabled" in (await client.get("/admin/users")).text
    assert ("token:admin", "user.change", "ana@example.com") in audit_rows(runtime)

"""In a real browser: an admin adds a person, who signs in once by the link, sets a password, signs in with it,
and is shut out when disabled."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from service.api import create_app
from service.runtime import Runtime

from .conftest import make_settings
from .upstream_server import serving

PASSWORD = "a long enough passphrase"


def new_tab(browser: Browser) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    return context.new_page()


def test_a_new_person_signs_in_by_link_sets_a_password_and_is_shut_out_when_disabled(
        browser: Browser, tmp_path: Path, sqlite_url: str) -> None:
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url, language_detection="fast"))
    with serving(create_app(runtime=runtime)) as base:
        runtime.settings.public_url = base  # the port is known only now
        lead, ana = new_tab(browser), new_tab(browser)
        lead.goto(f"{base}/admin/login?next=/admin/users")
        lead.get_by_label("Admin token").fill(runtime.admin_token)
        lead.get_by_role("button", name="Sign in").click()
        expect(lead.get_by_role("heading", name="People")).to_be_visible()

        lead.get_by_label("E-mail").fill("Ana@Example.com")
        lead.get_by_label("Name").fill("Ana Agent")
        lead.get_by_role("button", name="Add").click()
        link = lead.locator("#sign-in-link code").inner_text()
        assert link.startswith(f"{base}/admin/login/link?token=")

        ana.goto(link)
        expect(ana.get_by_text("Sign in as ana@example.com")).to_be_visible()
        ana.get_by_role("button", name="Continue").click()
        expect(ana).to_have_url(f"{base}/admin/account")
        ana.get_by_label("New password").fill(PASSWORD)
        ana.get_by_label("The same again").fill(PASSWORD)
        ana.get_by_role("button", name="Save password").click()
        expect(ana.get_by_text("Password saved.")).to_be_visible()

        ana.get_by_role("button", name="Sign out").click()
        ana.get_by_label("E-mail").fill("ana@example.com")
        ana.get_by_label("Password").fill(PASSWORD)
        ana.get_by_role("button", name="Sign in").click()
        expect(ana.locator(".who")).to_have_text("Ana Agent · agent")

        lead.goto(f"{base}/admin/users")
        row = lead.locator("tr", has_text="ana@example.com")
        expect(row.get_by_text("never")).to_have_count(0)  # signed in: a time, not "never"
        row.get_by_role("button", name="Disable").click()
        expect(lead.locator("tr", has_text="ana@example.com").get_by_text("disabled")).to_be_visible()

        ana.reload()
        expect(ana.get_by_label("E-mail")).to_be_visible()
        assert "/admin/login" in ana.url
        lead.context.close()
        ana.context.close()
    runtime.log.engine.dispose()

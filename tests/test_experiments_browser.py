"""In a real browser: a reviewer signs in, opens Experiments from the menu and reads the arms, figures and charts;
the page runs under the admin CSP with nothing refused."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from service.api import create_app
from service.experiments import BASE_METRICS
from service.models import StaffRole
from service.runtime import Runtime

from .test_experiments_page import QUESTION, arms_settings, split_prompts
from .upstream_server import serving

PASSWORD = "a long enough passphrase"


def serve_both_arms(base: str, per_arm: int = 6) -> dict[str, int]:
    """Real HTTP turns until each arm has `per_arm` conversations; every v3 reply gets a thumbs-down."""
    arms = {"support@v2": 0, "support@v3": 0}
    with httpx.Client(base_url=base, timeout=20) as client:
        for _ in range(20 * per_arm):  # a coin flip per conversation: running out is (1/2)**100 unlikely
            if min(arms.values()) >= per_arm:
                break
            started = client.post("/api/conversations").json()
            auth = {"Authorization": f"Bearer {started['token']}"}
            path = f"/api/conversations/{started['conversation_id']}/messages"
            body = client.post(path, headers=auth, json={"content": QUESTION}).json()
            arms[body["prompt_version"]] += 1
            if body["prompt_version"] == "support@v3":
                feedback = client.post(f"{path}/{body['reply']['message_id']}/feedback", headers=auth,
                                       json={"rating": "down"})
                assert feedback.status_code == 200, feedback.text
    assert min(arms.values()) >= per_arm, arms
    return arms


def test_a_reviewer_reads_the_experiment_in_a_browser(page: Page, tmp_path: Path, sqlite_url: str) -> None:
    runtime = Runtime.build(arms_settings(tmp_path, sqlite_url, split_prompts(tmp_path)))
    runtime.people.add("test", "rita@team.example", StaffRole.REVIEWER, "Rita Reviewer", password=PASSWORD)
    tab, refused = page, list[str]()
    tab.on("console", lambda message: refused.append(message.text)
           if "Content Security Policy" in message.text else None)
    with serving(create_app(runtime=runtime)) as base:
        arms = serve_both_arms(base)
        tab.goto(f"{base}/admin/login")
        tab.get_by_label("E-mail").fill("rita@team.example")
        tab.get_by_label("Password").fill(PASSWORD)
        tab.get_by_role("button", name="Sign in").click()
        tab.get_by_role("link", name="Experiments").click()

        expect(tab.get_by_role("heading", name="Experiments", exact=True)).to_be_visible()
        expect(tab.get_by_role("heading", name="support@production: v2 50 % / v3 50 %")).to_be_visible()
        arms_table = tab.get_by_role("table", name="Arms of support@production")
        expect(arms_table.get_by_role("row", name=f"v3 default 50 {arms['support@v3']} in traffic")).to_be_visible()
        figures = tab.get_by_role("table", name="Figures of support@production with 95 % intervals")
        resolution = figures.get_by_role("row").filter(has_text="Resolution rate")
        expect(resolution).to_contain_text("vs control: -100.0 points")
        expect(resolution.get_by_text("significantly worse")).to_be_visible()
        expect(tab.get_by_text("v3 resolves less: -100.0 points")).to_be_visible()
        chart = tab.get_by_role("img", name="Resolution rate per arm over time, with 95 % intervals")
        expect(chart).to_be_visible()
        box = chart.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 150, "the chart is drawn, not collapsed"
        charts = tab.get_by_role("img", name="per arm over time, with 95 % intervals", exact=False)
        expect(charts).to_have_count(len(BASE_METRICS))
    runtime.log.engine.dispose()
    assert refused == [], f"refused by the page's Content Security Policy: {refused}"

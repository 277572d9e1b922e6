"""The experiments API: the reports as JSON, clear errors for labels without a split, stops and resumes by admins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from service.api import create_app
from service.runtime import Runtime

from .test_experiments import experiment_settings, simulate


@pytest.fixture
async def served(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    settings = experiment_settings(tmp_path, database_url, labels="production: {v2: 50, v3: 50}\nstaging: v2\n")
    runtime = Runtime.build(settings)
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://supportbot.test",
                                 headers={"Authorization": f"Bearer {runtime.admin_token}"}) as client:
        yield client, runtime
    await runtime.aclose()


async def test_reports_come_as_json_with_every_arm_and_metric(served: tuple[httpx.AsyncClient, Runtime]) -> None:
    client, runtime = served
    await simulate(runtime, 40, seed=5)

    response = await client.get("/admin/api/experiments", params={"label": "production", "effect": 0.1})

    assert response.status_code == 200, response.text
    (experiment,) = response.json()["experiments"]
    assert (experiment["prompt"], experiment["label"], experiment["control"]) == ("support", "production", "v2")
    assert experiment["effect"] == 0.1 and experiment["needed_per_arm"] > 0
    v2, v3 = experiment["arms"]
    assert v2["control"] and not v3["control"] and v2["differences"] == {}
    assert v2["conversations"] + v3["conversations"] == 40
    resolution = v3["estimates"]["resolution"]
    assert set(resolution) == {"value", "low", "high", "n"} and resolution["n"] == v3["conversations"]
    assert set(v3["differences"]["resolution"]) == {"value", "low", "high", "significant"}
    assert [m["key"] for m in experiment["metrics"]][:4] == ["resolution", "miss", "escalation", "thumbs_down"]
    assert experiment["verdicts"]


@pytest.mark.parametrize(("label", "code", "message"), [
    ("nightly", "unknown_label", "no prompt has a label 'nightly'"),
    ("staging", "no_split", "label 'staging' serves one version"),
])
async def test_a_label_without_an_experiment_is_a_clear_404(served: tuple[httpx.AsyncClient, Runtime], label: str,
                                                            code: str, message: str) -> None:
    client, _ = served

    response = await client.get("/admin/api/experiments", params={"label": label})

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == code and error["message"].startswith(message)


async def test_admins_stop_and_resume_an_arm(served: tuple[httpx.AsyncClient, Runtime]) -> None:
    client, runtime = served
    arm = {"label": "production", "version": "v3"}

    stopped = await client.post("/admin/api/experiments/stop", json=arm)
    again = await client.post("/admin/api/experiments/stop", json=arm)
    control = await client.post("/admin/api/experiments/stop", json={**arm, "version": "v2"})
    report = (await client.get("/admin/api/experiments")).json()["experiments"][0]
    resumed = await client.post("/admin/api/experiments/resume", json=arm)
    twice = await client.post("/admin/api/experiments/resume", json=arm)

    assert stopped.status_code == 200 and stopped.json() == {"prompt": "support", "label": "production",
                                                             "version": "v3", "stopped": True}
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_stopped"
    assert control.status_code == 422 and control.json()["error"]["code"] == "control_arm"
    assert report["arms"][1]["stopped"]["stopped_by"] == "token:admin"
    assert resumed.status_code == 200 and resumed.json()["stopped"] is False
    assert twice.status_code == 404 and twice.json()["error"]["code"] == "not_stopped"
    assert runtime.arm_stops.active() == []

"""Live arms: a label splitting traffic over prompt versions, one arm per conversation for its life."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import respx

from service.api import create_app
from service.config import PROJECT_ROOT, Settings
from service.errors import ConfigError
from service.prompt_tools import list_prompts
from service.prompts import PromptRegistry, Split, parse_labels_file
from service.runtime import Runtime

from . import fake_model
from .conftest import MODEL_BASE_URL, make_settings
from .factories import send, start_conversation

PINNED_V3 = "---\ndescription: v2's words on a larger model\nmodel: gpt-4o\n---\n"


@pytest.fixture
def prompts_dir(tmp_path: Path) -> Path:
    """The shipped prompts plus a v3 pinned to another model."""
    target = tmp_path / "prompts"
    shutil.copytree(PROJECT_ROOT / "prompts", target)
    v2 = (target / "support" / "v2.md.j2").read_text(encoding="utf-8")
    body = v2.split("---\n", 2)[2] if v2.startswith("---") else v2
    (target / "support" / "v3.md.j2").write_text(PINNED_V3 + body, encoding="utf-8")
    return target


_stamp = [10**9]


def _write_labels(prompts_dir: Path, text: str) -> Path:
    """Rewrite labels.yaml with a fresh mtime, so the watcher sees the change at once."""
    path = prompts_dir / "support" / "labels.yaml"
    path.write_text(text, encoding="utf-8")
    _stamp[0] += 10**9
    os.utime(path, ns=(_stamp[0], _stamp[0]))
    return path


@asynccontextmanager
async def _client(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    runtime = Runtime.build(settings)
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://supportbot.test") as client:
        yield client, runtime
    await runtime.aclose()


async def _first_turn(client: httpx.AsyncClient, text: str = "hi") -> tuple[str, dict[str, str], dict[str, object]]:
    conversation_id, auth = await start_conversation(client)
    response = await send(client, conversation_id, auth, text)
    assert response.status_code == 200, response.text
    return conversation_id, auth, response.json()


def _stored_arm(runtime: Runtime, conversation_id: str) -> str | None:
    return runtime.log.get_conversation(conversation_id).arm


# Parsing


def test_split_and_plain_labels_parse_side_by_side(prompts_dir: Path) -> None:
    path = _write_labels(prompts_dir, "production: {v2: 90, v3: 10}\nstaging: v2\nbaseline: v1\n")

    labels = parse_labels_file(path)

    assert labels == {"production": Split((("v2", 90), ("v3", 10))), "staging": "v2", "baseline": "v1"}
    registry = PromptRegistry(prompts_dir, interval=0)
    assert registry.errors() == []
    assert registry.resolve("support@production").ref == "support@v2", "a split resolves to its control"
    assert registry.resolve("support@staging").ref == "support@v2"
    assert registry.labels()["support"] == {"production": "v2", "staging": "v2", "baseline": "v1"}
    assert registry.arm("support@staging", "any-id") is None, "no split, no arm"


@pytest.mark.parametrize(("text", "line", "reason"), [
    ("staging: v2\nproduction: {v2: 90, v3: 0}\n", 2, "the weight of 'v3' must be a positive whole number, not 0"),
    ("production: {v2: 90, v3: -5}\n", 1, "the weight of 'v3' must be a positive whole number, not -5"),
    ("production: {v2: 9.5, v3: 1}\n", 1, "the weight of 'v2' must be a positive whole number, not 9.5"),
    ("production: {v2: 'ninety'}\n", 1, "the weight of 'v2' must be a positive whole number, not 'ninety'"),
    ("production: {v2: true}\n", 1, "the weight of 'v2' must be a positive whole number, not True"),
    ("production:\n  v2: 90\n  v3: [10]\n", 3, "the weight of 'v3' must be a positive whole number, not [10]"),
    ("staging: v2\nproduction: {}\n", 2, "label 'production' splits traffic over no versions"),
    ("production: [v2, v3]\n", 1, "label 'production' must name a version ('production: v2') or split traffic"),
    ("production: {v2: 90\n", 2, "not valid YAML"),
])
def test_bad_split_is_refused_with_file_line_and_reason(prompts_dir: Path, text: str, line: int,
                                                        reason: str) -> None:
    path = _write_labels(prompts_dir, text)

    with pytest.raises(ConfigError) as raised:
        parse_labels_file(path)

    assert raised.value.path == str(path)
    assert raised.value.line == line
    assert reason in raised.value.reason


def test_split_over_a_missing_version_is_a_problem(prompts_dir: Path) -> None:
    path = _write_labels(prompts_dir, "production: {v2: 90, v9: 10}\n")

    (error,) = PromptRegistry(prompts_dir, interval=0).errors()

    assert error.path == str(path) and error.reason == "label 'production' points to missing version 'v9'"


def test_broken_labels_keep_the_last_good_split(prompts_dir: Path) -> None:
    _write_labels(prompts_dir, "production: {v2: 90, v3: 10}\n")
    registry = PromptRegistry(prompts_dir, interval=0)
    good = registry.splits()["support"]["production"]

    path = _write_labels(prompts_dir, "production: {v2: 90, v3: 0}\n")

    assert registry.splits()["support"]["production"] == good
    (error,) = registry.errors()
    assert error.path == str(path) and "positive whole number" in error.reason


# Assignment


def test_assignment_is_deterministic_across_registries(prompts_dir: Path) -> None:
    _write_labels(prompts_dir, "production: {v2: 50, v3: 50}\n")
    first, second = PromptRegistry(prompts_dir, interval=0), PromptRegistry(prompts_dir, interval=0)
    ids = [f"conv-{i:05d}" for i in range(200)]

    arms = [first.arm("support@production", i) for i in ids]

    assert arms == [second.arm("support", i) for i in ids]
    assert set(arms) == {"support@v2", "support@v3"}
    _write_labels(prompts_dir, "production: {v3: 50, v2: 50}\n")
    assert [first.arm("support@production", i) for i in ids] == arms, "reordering the lines moves no one"


@pytest.mark.parametrize("weights", [{"v2": 90, "v3": 10}, {"v1": 50, "v2": 30, "v3": 20}])
def test_split_proportions_hold_over_many_conversations(prompts_dir: Path, weights: dict[str, int]) -> None:
    _write_labels(prompts_dir, "production: " + json.dumps(weights) + "\n")
    registry = PromptRegistry(prompts_dir, interval=0)
    n, total = 4000, sum(weights.values())

    counts = Counter(registry.arm("support@production", f"c{i:04d}{i * 7919 % 1000:03d}") for i in range(n))

    for version, weight in weights.items():
        p = weight / total
        # Four standard deviations of a binomial count: a sound split passes, a skewed hash does not.
        assert abs(counts[f"support@{version}"] - n * p) <= 4 * math.sqrt(n * p * (1 - p)), counts


def test_missing_arm_version_falls_back_to_control(prompts_dir: Path) -> None:
    _write_labels(prompts_dir, "production: {v2: 50, v9: 50}\n")
    registry = PromptRegistry(prompts_dir, interval=0)

    arms = {registry.arm("support@production", f"conv-{i}") for i in range(50)}

    assert arms == {"support@v2"}


# Turns


async def test_conversation_keeps_its_arm_while_new_ones_follow_a_new_split(
    tmp_path: Path, database_url: str, prompts_dir: Path
) -> None:
    _write_labels(prompts_dir, "production: {v2: 50, v3: 50}\n")
    settings = make_settings(tmp_path, database_url, prompts_dir=prompts_dir)
    async with _client(settings) as (client, runtime):
        old = [await _first_turn(client) for _ in range(12)]
        for conversation_id, _, body in old:
            expected = runtime.prompts.arm("support@production", conversation_id)
            assert _stored_arm(runtime, conversation_id) == expected == body["prompt_version"]

        _write_labels(prompts_dir, "production: {v1: 50, v2: 50}\n")

        for conversation_id, auth, body in old:
            again = (await send(client, conversation_id, auth, "thanks")).json()
            assert again["prompt_version"] == body["prompt_version"], "the arm is kept for life"
            assert _stored_arm(runtime, conversation_id) == body["prompt_version"]
        new = [await _first_turn(client) for _ in range(12)]
        for conversation_id, _, body in new:
            assert body["prompt_version"] in {"support@v1", "support@v2"}
            assert _stored_arm(runtime, conversation_id) == body["prompt_version"]


async def test_deleted_arm_falls_back_to_the_label_and_is_logged(
    tmp_path: Path, database_url: str, prompts_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write_labels(prompts_dir, "production: {v3: 1}\n")
    settings = make_settings(tmp_path, database_url, prompts_dir=prompts_dir)
    async with _client(settings) as (client, runtime):
        conversation_id, auth, body = await _first_turn(client)
        assert body["prompt_version"] == "support@v3"
        (prompts_dir / "support" / "v3.md.j2").unlink()
        _write_labels(prompts_dir, "production: v2\n")

        with caplog.at_level(logging.WARNING, logger="service.turns"):
            again = (await send(client, conversation_id, auth, "thanks")).json()

        assert again["prompt_version"] == "support@v2"
        assert f"conversation={conversation_id} arm support@v3 no longer exists" in caplog.text
        assert _stored_arm(runtime, conversation_id) == "support@v3", "the record of what it was assigned stays"


async def test_without_a_split_no_arm_is_stored(client: httpx.AsyncClient, runtime: Runtime) -> None:
    conversation_id, _, body = await _first_turn(client, "My dashboard takes forever to load")

    assert body["prompt_version"] == "support@v2"
    assert _stored_arm(runtime, conversation_id) is None
    admin = {"Authorization": f"Bearer {runtime.admin_token}"}
    detail = (await client.get(f"/admin/api/conversations/{conversation_id}", headers=admin)).json()
    assert detail["arm"] is None


async def test_a_conversation_started_before_the_split_gets_no_arm(
    tmp_path: Path, database_url: str, prompts_dir: Path
) -> None:
    settings = make_settings(tmp_path, database_url, prompts_dir=prompts_dir)
    async with _client(settings) as (client, runtime):
        conversation_id, auth, _ = await _first_turn(client)
        _write_labels(prompts_dir, "production: {v2: 1, v3: 99}\n")

        again = (await send(client, conversation_id, auth, "thanks")).json()

        assert again["prompt_version"] == "support@v2", "only new conversations join the split; others get control"
        assert _stored_arm(runtime, conversation_id) is None


async def test_offline_provider_serves_every_arm(tmp_path: Path, database_url: str, prompts_dir: Path) -> None:
    _write_labels(prompts_dir, "production: {v3: 1}\n")
    settings = make_settings(tmp_path, database_url, prompts_dir=prompts_dir)
    async with _client(settings) as (client, runtime):
        conversation_id, _, body = await _first_turn(client, "My dashboard takes forever to load")

        assert body["prompt_version"] == "support@v3"
        assert body["reply"]["content"], "the offline provider answers whatever model the arm pins"
        admin = {"Authorization": f"Bearer {runtime.admin_token}"}
        detail = (await client.get(f"/admin/api/conversations/{conversation_id}", headers=admin)).json()
        assert detail["arm"] == "support@v3"


async def test_pinned_model_is_what_the_hosted_request_is_sent_with(
    tmp_path: Path, database_url: str, prompts_dir: Path, model_mock: respx.MockRouter
) -> None:
    route = model_mock.post("/chat/completions").mock(return_value=fake_model.completion("Clear your cache."))
    _write_labels(prompts_dir, "production: {v2: 50, v3: 50}\n")
    settings = make_settings(tmp_path, database_url, prompts_dir=prompts_dir, openai_api_key="sk-test-key",
                             openai_base_url=MODEL_BASE_URL, model="gpt-4o-mini")
    sent: dict[str, str] = {}
    async with _client(settings) as (client, _runtime):
        for _ in range(40):  # until both arms were seen: 2**-39 odds of needing more
            _, _, body = await _first_turn(client, "My dashboard takes forever to load")
            sent[str(body["prompt_version"])] = json.loads(route.calls.last.request.content)["model"]
            if len(sent) == 2:
                break

    assert sent == {"support@v2": "gpt-4o-mini", "support@v3": "gpt-4o"}


def test_prompt_list_shows_the_split(tmp_path: Path, prompts_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_labels(prompts_dir, "production: {v2: 90, v3: 10}\nstaging: v2\n")
    settings = make_settings(tmp_path, "sqlite://", prompts_dir=prompts_dir)

    assert list_prompts(settings) == 0

    out = capsys.readouterr().out
    assert "support production: v2 90 % / v3 10 %" in out
    v3 = next(line for line in out.splitlines() if line.startswith("support@v3"))
    assert "[production] (served)" in v3

"""The review API: inbox filters, search and keyset pages, misses, verdicts, prompt figures."""

from __future__ import annotations

import httpx
import pytest

from service.runtime import Runtime

from .factories import build_logged_dataset, send, start_conversation


@pytest.fixture
def admin(runtime: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {runtime.admin_token}"}


@pytest.fixture
async def dataset(client: httpx.AsyncClient, runtime: Runtime) -> dict[str, dict[str, object]]:
    return await build_logged_dataset(client, runtime.admin_token)


async def _ids(client: httpx.AsyncClient, admin: dict[str, str], **params: str) -> set[str]:
    response = await client.get("/admin/api/conversations", params=params, headers=admin)
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()["items"]}


async def test_inbox_filters(
    client: httpx.AsyncClient, admin: dict[str, str], dataset: dict[str, dict[str, object]]
) -> None:
    ids = {name: entry["id"] for name, entry in dataset.items()}

    assert await _ids(client, admin) == set(ids.values())
    assert await _ids(client, admin, view="misses") == {ids["disliked"], ids["unknown"], ids["unhelped"]}
    assert await _ids(client, admin, view="escalated") == {ids["unknown"], ids["unhelped"]}
    assert await _ids(client, admin, view="thumbs_down") == {ids["disliked"]}
    assert await _ids(client, admin, view="unreviewed") == {ids["unhelped"]}, "corrected misses are reviewed"
    assert await _ids(client, admin, prompt_version="support@v2") == set(ids.values())
    assert await _ids(client, admin, prompt_version="support@v1") == set()
    assert await _ids(client, admin, q="NONPROFITS") == {ids["unknown"]}
    assert await _ids(client, admin, until="2000-01-01") == set()


async def test_inbox_keyset_pages_cover_everything_once(
    client: httpx.AsyncClient, admin: dict[str, str], dataset: dict[str, dict[str, object]]
) -> None:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/admin/api/conversations", params=params, headers=admin)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert len(seen) == len(set(seen)) == len(dataset)


@pytest.mark.parametrize(("params", "code"), [
    ({"view": "nope"}, "validation_error"), ({"cursor": "garbage"}, "invalid_cursor"),
    ({"prompt_version": "v2"}, "invalid_prompt_version"), ({"since": "yesterday"}, "validation_error"),
])
async def test_inbox_bad_parameters(
    client: httpx.AsyncClient, admin: dict[str, str], params: dict[str, str], code: str
) -> None:
    response = await client.get("/admin/api/conversations", params=params, headers=admin)

    assert response.status_code == 422 and response.json()["error"]["code"] == code


@pytest.mark.parametrize("path", ["/admin/api/conversations", "/admin/api/misses"])
@pytest.mark.parametrize("cursor", [":", "%", "fA", "eHx5", "MjAyNnwx", "OTk5OTk5OTk5OTk5OTk5OTk5OTk5", "LTE"])
async def test_a_forged_cursor_is_a_clear_422_never_a_500(
    client: httpx.AsyncClient, admin: dict[str, str], path: str, cursor: str
) -> None:
    # ":" decodes to nothing (schemathesis found the 500), "eHx5" to "x|y", "MjAyNnwx" to "2026|1" (no date),
    # the long one to an id past 64 bits, "LTE" to "-1".
    response = await client.get(path, params={"cursor": cursor}, headers=admin)

    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_cursor", response.text


async def test_misses_by_reason_and_review_state(
    client: httpx.AsyncClient, admin: dict[str, str], dataset: dict[str, dict[str, object]]
) -> None:
    async def misses(**params: str) -> list[dict[str, object]]:
        return (await client.get("/admin/api/misses", params=params, headers=admin)).json()["items"]  # type: ignore[no-any-return]

    everything = await misses()
    by_reason = {r: {m["conversation_id"] for m in await misses(reason=r)}
                 for r in ("thumbs_down", "escalated", "did_not_help")}
    unreviewed = await misses(review="unreviewed")

    assert len(everything) == 4
    assert by_reason == {
        "thumbs_down": {dataset["disliked"]["id"]},
        "escalated": {dataset["unknown"]["id"], dataset["unhelped"]["id"]},
        "did_not_help": {dataset["unhelped"]["id"]},
    }
    assert {m["conversation_id"] for m in unreviewed} == {dataset["unhelped"]["id"]}
    assert all(m["corrected"] for m in await misses(review="corrected"))
    first = next(m for m in everything if m["conversation_id"] == dataset["unhelped"]["id"]
                 and "did_not_help" in m["reasons"])  # type: ignore[operator]
    assert first["question"] == "Charts show yesterday's data, not today's"


async def test_flagging_a_reply_makes_it_a_miss_and_good_clears_review_need(
    client: httpx.AsyncClient, runtime: Runtime, admin: dict[str, str]
) -> None:
    conversation_id, auth = await start_conversation(client)
    turn = (await send(client, conversation_id, auth, "How do I reset my password?")).json()
    reply_id = turn["reply"]["message_id"]

    flagged = await client.post(f"/admin/api/messages/{reply_id}/review", headers=admin, json={"verdict": "flagged"})
    assert flagged.json()["miss_reasons"] == "flagged"
    assert await _ids(client, admin, view="misses") == {conversation_id}
    assert await _ids(client, admin, view="unreviewed") == set(), "a reviewer's flag is a review"

    cleared = await client.post(f"/admin/api/messages/{reply_id}/review", headers=admin, json={"verdict": "clear"})
    assert cleared.json()["miss_reasons"] is None and cleared.json()["review"] is None
    assert await _ids(client, admin, view="misses") == set()


async def test_review_actions_refuse_non_bot_messages_and_bad_verdicts(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    conversation_id, auth = await start_conversation(client)
    turn = (await send(client, conversation_id, auth, "How do I reset my password?")).json()

    on_user = await client.post(f"/admin/api/messages/{turn['message_id']}/correction", headers=admin,
                                json={"content": "x"})
    unknown = await client.post("/admin/api/messages/999999/review", headers=admin, json={"verdict": "good"})
    bad = await client.post(f"/admin/api/messages/{turn['reply']['message_id']}/review", headers=admin,
                            json={"verdict": "great"})

    assert (on_user.status_code, on_user.json()["error"]["code"]) == (422, "not_a_bot_reply")
    assert unknown.status_code == 404
    assert bad.status_code == 422


async def test_prompt_versions_with_figures_text_and_diff(
    client: httpx.AsyncClient, admin: dict[str, str], dataset: dict[str, dict[str, object]]
) -> None:
    versions = {v["ref"]: v for v in (await client.get("/admin/api/prompts", headers=admin)).json()}
    text = (await client.get("/admin/api/prompts/support@v1", headers=admin)).json()
    diff = (await client.get("/admin/api/prompts/diff", params={"a": "support@v1", "b": "support@v2"},
                             headers=admin)).json()
    missing = await client.get("/admin/api/prompts/support@v9", headers=admin)

    v2 = versions["support@v2"]
    assert v2["served"] is True and "production" in v2["labels"]
    assert v2["conversations"] == len(dataset)
    assert v2["turns"] == 9
    assert v2["miss_rate"] == pytest.approx(4 / 9)
    assert v2["thumbs_down_rate"] == pytest.approx(1 / 9)
    assert v2["escalation_rate"] == pytest.approx(2 / 9)
    assert versions["support@v1"]["turns"] == 0 and versions["support@v1"]["miss_rate"] is None
    first, second = text["text"].splitlines()[:2]
    assert first.startswith("Internal reference sbc-")
    assert second == "You are a helpful support agent for Acme Analytics."
    assert diff["diff"].startswith("--- support@v1\n+++ support@v2\n")
    assert missing.status_code == 404

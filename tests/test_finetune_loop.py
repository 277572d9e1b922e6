"""The fine-tune loop closed: start, status, held-out cases, eval, promote, then serving the promoted arm.

Real HTTP on both sides: the fake fine-tuning provider, and a fake chat model that answers well only as a
fine-tuned model and grades like the rubric grader. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from service.api import create_app
from service.config import PROJECT_ROOT, Settings
from service.errors import Conflict, Unprocessable
from service.finetuning.comparison import comparison_columns
from service.finetuning.heldout import held_out_lines
from service.finetuning.promotion import set_split, split_with, write_version
from service.grading import RUBRIC
from service.models import AuditEntry, Conversation
from service.prompts import Split, parse_labels_file, parse_prompt_file
from service.runtime import Runtime

from .conftest import FinetuneCli, make_settings
from .factories import build_logged_dataset, send, start_conversation
from .fake_finetune_server import API_KEY, FakeFineTuning, running_fine_tuning
from .upstream_server import serving

FT_MODEL = "ft:gpt-4o-mini:acme:acme:000001"
SHORT_OPENING = "You are the support agent for"
LATER = {  # misses corrected after the job started: question -> the person's answer
    "Charts show yesterday's data, not today's": "Dashboards refresh hourly; press Refresh to load today's data.",
    "Can I export a report to Excel?": "Yes: Reports > Export > XLSX downloads it for Excel.",
}
LABELS = "# Which version each label serves.\nproduction: v2\nstaging: v2\nbaseline: v1\n"


@dataclass
class FakeChat:
    """A chat model: a fine-tuned model knows the corrected answers, the base model does not; grades contain-wise."""

    answers: dict[str, str]
    requests: list[dict[str, Any]] = field(default_factory=list)  # {"model", "kind": reply|grade, "system"}

    def reply(self, body: dict[str, Any]) -> str:
        system = body["messages"][0]["content"]
        if system == RUBRIC:
            graded = json.loads(body["messages"][-1]["content"])
            right = graded["reference"].lower() in graded["reply"].lower()
            self.requests.append({"model": body["model"], "kind": "grade", "system": system})
            return json.dumps({"score": 1.0 if right else 0.0, "reason": "same facts" if right else "different"})
        self.requests.append({"model": body["model"], "kind": "reply", "system": system})
        question = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        if body["model"].startswith("ft:"):
            return self.answers.get(question, "Happy to help with that.")
        return "Clear your browser cache, then reload the page."

    def app(self) -> Starlette:
        """POST /v1/chat/completions, JSON or SSE."""

        async def completions(request: Request) -> Response:
            body = await request.json()
            text = self.reply(body)
            usage = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
            base = {"id": "chatcmpl-ft", "created": 1, "model": body["model"]}
            if not body.get("stream"):
                return JSONResponse({**base, "object": "chat.completion", "usage": usage, "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})
            chunks = [{**base, "object": "chat.completion.chunk",
                       "choices": [{"index": 0, "delta": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}]},
                      {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}]
            lines = [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]
            return StreamingResponse(iter(lines), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


@pytest.fixture
def provider() -> FakeFineTuning:
    return FakeFineTuning()


@pytest.fixture
def chat() -> FakeChat:
    return FakeChat(dict(LATER))


@pytest.fixture
def prompts_dir(tmp_path: Path) -> Path:
    target = tmp_path / "prompts"
    shutil.copytree(PROJECT_ROOT / "prompts", target)
    (target / "support" / "labels.yaml").write_text(LABELS, encoding="utf-8")
    return target


@pytest.fixture
def settings(tmp_path: Path, database_url: str, provider: FakeFineTuning, prompts_dir: Path) -> Iterator[Settings]:
    """Offline chat (the dataset's handovers need it), the fake fine-tuning provider."""
    with running_fine_tuning(provider) as url:
        yield make_settings(tmp_path, database_url, prompts_dir=prompts_dir, fine_tune_base_url=url,
                            fine_tune_api_key=API_KEY)


@pytest.fixture
def hosted(settings: Settings, chat: FakeChat) -> Iterator[Settings]:
    """The same, with the fake chat model as the hosted model (gpt-4o-mini in production)."""
    with serving(chat.app(), lifespan="off") as base:
        yield settings.model_copy(update={"openai_api_key": "sk-chat-test", "openai_base_url": f"{base}/v1",
                                          "model": "gpt-4o-mini"})


def through_api(settings: Settings, work: Callable[[httpx.AsyncClient, Runtime], Any]) -> Any:
    """FinetuneCli `work(client, runtime)` against the app, in its own event loop (the CLI runs its own too)."""

    async def go() -> Any:
        runtime = Runtime.build(settings)
        transport = httpx.ASGITransport(app=create_app(runtime=runtime))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://supportbot.test") as client:
                return await work(client, runtime)
        finally:
            await runtime.aclose()

    return asyncio.run(go())


async def correct_new_misses(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """Each LATER question in a new conversation, its reply corrected by a reviewer."""
    admin = {"Authorization": f"Bearer {runtime.admin_token}"}
    for question, answer in LATER.items():
        conversation_id, auth = await start_conversation(client)
        reply = (await send(client, conversation_id, auth, question)).json()["reply"]
        response = await client.post(f"/admin/api/messages/{reply['message_id']}/correction", headers=admin,
                                     json={"content": answer})
        assert response.status_code == 201, response.text


def audited(settings: Settings) -> list[str]:
    runtime = Runtime.build(settings)
    with runtime.log.sessions() as session:
        actions = [f"{e.actor} {e.action} {e.target}" for e in session.scalars(
            select(AuditEntry).where(AuditEntry.action.startswith("finetune")).order_by(AuditEntry.id))]
    asyncio.run(runtime.aclose())
    return actions


def drive_to(run_cli: FinetuneCli, job: str, final: str) -> list[str]:
    """`status` until the job reaches `final` (the fake moves one state per look); the states seen."""
    seen: list[str] = []
    while not seen or seen[-1] != final:
        assert len(seen) < 6, f"the job never reached {final}: {seen}"
        code, out, err = run_cli("status", job)
        assert code == 0, err
        seen.append(out.split("\n", 1)[0].rsplit(": ", 1)[1])
    return seen


def test_round_trip_start_status_eval_promote_serve(
    run_cli: FinetuneCli, settings: Settings, hosted: Settings, chat: FakeChat, provider: FakeFineTuning,
    prompts_dir: Path,
) -> None:
    through_api(settings, lambda client, runtime: build_logged_dataset(client, runtime.admin_token))
    code, out, err = run_cli("start", "--base-model", "gpt-4o-mini", "--suffix", "acme")
    assert code == 0 and "ftjob-000001" in out, err

    code, out, err = run_cli("eval", "ftjob-000001", using=hosted)
    assert code == 2 and out == ""
    assert "job ftjob-000001 is validating_files, so there is no fine-tuned model to evaluate" in err
    assert "`supportbot finetune status ftjob-000001`" in err

    through_api(settings, correct_new_misses)
    assert drive_to(run_cli, "ftjob-000001", "succeeded") == ["validating_files", "queued", "running", "succeeded"]
    code, out, _ = run_cli("status", "ftjob-000001")
    assert f"fine-tuned model: {FT_MODEL}" in out
    # The duplicate the training export skipped is no held-out case; the two corrected since are.
    assert "held out: 2 corrected misses not trained on" in out

    code, out, err = run_cli("eval", "ftjob-000001", using=hosted)
    assert code == 0, err
    table = {line.split(" x ")[0]: line for line in out.splitlines() if " x " in line and "%" in line}
    assert set(table) == {"support@v2-ft", "support@short-ft", "support@v2"}
    assert f"support@v2-ft x {FT_MODEL}" in table["support@v2-ft"] and " 100% " in table["support@v2-ft"]
    assert f"support@short-ft x {FT_MODEL}" in table["support@short-ft"] and " 100% " in table["support@short-ft"]
    assert "support@v2 x gpt-4o-mini" in table["support@v2"] and "  0% " in table["support@v2"]
    replies = [(r["model"], SHORT_OPENING in r["system"]) for r in chat.requests if r["kind"] == "reply"]
    assert sorted(replies) == sorted([(FT_MODEL, False)] * 2 + [(FT_MODEL, True)] * 2 + [("gpt-4o-mini", False)] * 2)
    assert [r["model"] for r in chat.requests if r["kind"] == "grade"] == ["gpt-4o-mini"] * 6, "one grader for all"
    kept = json.loads((settings.data_dir / "finetune" / "ftjob-000001" / "eval.json").read_text(encoding="utf-8"))
    assert kept["held_out"] == 2 and kept["fine_tuned_model"] == FT_MODEL
    assert [c["pass_rate"] for c in kept["columns"]] == [1.0, 1.0, 0.0]
    assert "last eval (" in run_cli("status", "ftjob-000001")[1]

    code, out, err = run_cli("eval", "ftjob-000001", "--json", using=hosted)
    assert code == 0, err
    assert [(c["prompt"], c["model"]) for c in json.loads(out)["columns"]] == [
        ("support@v2-ft", FT_MODEL), ("support@short-ft", FT_MODEL), ("support@v2", "gpt-4o-mini")]

    code, out, err = run_cli("promote", "ftjob-000001", "--version", "v9")
    assert code == 0, err
    assert "production: {v2: 90, v9: 10}" in out
    promoted = parse_prompt_file(prompts_dir / "support" / "v9.md.j2")
    v2 = parse_prompt_file(prompts_dir / "support" / "v2.md.j2")
    assert (promoted.model, promoted.source, promoted.temperature, promoted.max_tokens) == (
        FT_MODEL, v2.source, v2.temperature, v2.max_tokens)
    assert "job ftjob-000001" in promoted.description and v2.description in promoted.description
    assert (prompts_dir / "support" / "labels.yaml").read_text(encoding="utf-8") == LABELS, "no --share: untouched"
    code, _, err = run_cli("promote", "ftjob-000001", "--version", "v9", "--short")
    assert code == 2 and "already exists" in err
    assert parse_prompt_file(prompts_dir / "support" / "v9.md.j2").source == v2.source

    code, out, err = run_cli("promote", "ftjob-000001", "--version", "v9s", "--short", "--share", "50")
    assert code == 0, err
    assert parse_prompt_file(prompts_dir / "support" / "v9s.md.j2").source.startswith(SHORT_OPENING)
    assert (prompts_dir / "support" / "labels.yaml").read_text(encoding="utf-8") == LABELS.replace(
        "production: v2", "production: {v2: 50, v9s: 50}")
    assert audited(settings)[-4:] == [
        "cli finetune.eval finetune:ftjob-000001", "cli finetune.promote finetune:ftjob-000001",
        "cli finetune.promote finetune:ftjob-000001", "cli finetune.split finetune:ftjob-000001"]

    async def serve(client: httpx.AsyncClient, runtime: Runtime) -> dict[str, tuple[str, str | None]]:
        drawn: dict[str, tuple[str, str | None]] = {}
        for _ in range(40):  # until both arms were drawn: 2**-39 odds of needing more
            conversation_id, auth = await start_conversation(client)
            body = (await send(client, conversation_id, auth, "My dashboard takes forever to load")).json()
            with runtime.log.sessions() as session:
                arm = session.get(Conversation, conversation_id).arm  # type: ignore[union-attr]
            drawn[str(body["prompt_version"])] = (chat.requests[-1]["model"], arm)
            if len(drawn) == 2:
                break
        return drawn

    chat.requests.clear()
    assert through_api(hosted, serve) == {"support@v9s": (FT_MODEL, "support@v9s"),
                                          "support@v2": ("gpt-4o-mini", "support@v2")}


def test_failed_and_cancelled_jobs_show_why_and_cannot_be_evaluated_or_promoted(
    run_cli: FinetuneCli, settings: Settings, hosted: Settings, provider: FakeFineTuning, prompts_dir: Path,
    tmp_path: Path,
) -> None:
    examples = tmp_path / "examples.jsonl"
    examples.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi?"},
                                                 {"role": "assistant", "content": "Hello."}]}) + "\n")
    provider.fail_with = "Training file has 1 example, but at least 10 are required"
    assert run_cli("start", "--base-model", "gpt-4o-mini", "--file", str(examples))[0] == 0
    assert drive_to(run_cli, "ftjob-000001", "failed") == ["validating_files", "queued", "running", "failed"]
    out = run_cli("status", "ftjob-000001")[1]
    assert "failed: Training file has 1 example, but at least 10 are required" in out
    assert "held out: 0 corrected misses not trained on (it trained on a given file" in out

    for command in (("eval", "ftjob-000001"), ("promote", "ftjob-000001", "--version", "v9")):
        code, out, err = run_cli(*command, using=hosted)
        assert (code, out) == (2, "")
        assert "job ftjob-000001 is failed" in err and "at least 10 are required" in err
        assert "`supportbot finetune start`" in err
    assert not (prompts_dir / "support" / "v9.md.j2").exists()

    provider.fail_with = None
    assert run_cli("start", "--base-model", "gpt-4o-mini", "--file", str(examples))[0] == 0
    assert run_cli("cancel", "ftjob-000002")[0] == 0
    assert "Fine-tuning job cancelled" in run_cli("status", "ftjob-000002")[1]
    code, _, err = run_cli("eval", "ftjob-000002", using=hosted)
    assert code == 2 and "job ftjob-000002 is cancelled, so there is no fine-tuned model to evaluate" in err
    assert run_cli("promote", "ftjob-000002", "--version", "v9")[0] == 2
    assert not (prompts_dir / "support" / "v9.md.j2").exists()


def test_a_succeeded_job_with_nothing_held_out_exits_2(
    run_cli: FinetuneCli, settings: Settings, hosted: Settings, chat: FakeChat
) -> None:
    through_api(settings, lambda client, runtime: build_logged_dataset(client, runtime.admin_token))
    assert run_cli("start", "--base-model", "gpt-4o-mini", "--suffix", "acme")[0] == 0
    drive_to(run_cli, "ftjob-000001", "succeeded")

    code, out, err = run_cli("eval", "ftjob-000001", using=hosted)

    assert (code, out) == (2, "")
    assert "job ftjob-000001 has no held-out cases: every corrected miss was trained on" in err
    assert chat.requests == []
    code, _, err = run_cli("eval", "ftjob-000001")
    assert code == 2 and "SUPPORTBOT_OPENAI_API_KEY" in err, "without a hosted model there is nothing to call"


def test_held_out_cases_are_the_corrected_misses_not_trained_on(settings: Settings) -> None:
    through_api(settings, correct_new_misses)
    runtime = Runtime.build(settings)
    everything = [json.loads(line) for line in held_out_lines(runtime.log.sessions, [])]
    assert sorted(case["expect"]["reference"] for case in everything) == sorted(LATER.values())
    assert all(case["messages"][-1]["content"] in LATER for case in everything)
    first = int(everything[0]["id"].rsplit("-", 1)[1])
    rest = [json.loads(line) for line in held_out_lines(runtime.log.sessions, [first])]
    asyncio.run(runtime.aclose())
    assert [case["id"] for case in rest] == [everything[1]["id"]]


def test_set_split_rewrites_only_its_label(tmp_path: Path) -> None:
    (tmp_path / "support").mkdir()
    labels = tmp_path / "support" / "labels.yaml"
    labels.write_text("# note\nproduction:\n  v2: 90\n  v3: 10\n# keep me\nstaging: v2\n", encoding="utf-8")

    split = split_with(Split((("v2", 90), ("v3", 10))), "v9", 10)
    set_split(tmp_path, "support", "production", split)

    assert labels.read_text(encoding="utf-8") == "# note\nproduction: {v2: 81, v3: 9, v9: 10}\n# keep me\nstaging: v2\n"
    assert parse_labels_file(labels) == {"production": split, "staging": "v2"}
    assert split_with("v2", "v9", 25) == Split((("v2", 75), ("v9", 25)))
    assert split_with(Split((("v2", 2), ("v3", 1))), "v9", 10) == Split((("v2", 60), ("v3", 30), ("v9", 10)))
    with pytest.raises(Unprocessable):
        split_with("v2", "v9", 100)


def test_write_version_refuses_overwrites_and_unloadable_files(tmp_path: Path) -> None:
    good = "---\nmodel: ft:x\n---\nHello {{ company }}.\n"
    path = write_version(tmp_path, "support", "v9", good)
    assert path.read_text(encoding="utf-8") == good
    with pytest.raises(Conflict):
        write_version(tmp_path, "support", "v9", good)
    with pytest.raises(Unprocessable, match="would not load"):
        write_version(tmp_path, "support", "v10", "---\nmodel: ft:x\n---\nHello {{ nobody }}.\n")
    with pytest.raises(Unprocessable):
        write_version(tmp_path, "support", "../v11", good)
    assert sorted(p.name for p in (tmp_path / "support").iterdir()) == ["v9.md.j2"]


def test_every_production_arm_is_a_column_with_its_own_model(prompts_dir: Path) -> None:
    v2 = (prompts_dir / "support" / "v2.md.j2").read_text(encoding="utf-8")
    (prompts_dir / "support" / "v3.md.j2").write_text(v2.replace("max_tokens: 400", "model: gpt-4o"), encoding="utf-8")
    (prompts_dir / "support" / "v2-ft.md.j2").write_text(v2, encoding="utf-8")  # a name the eval must not clobber
    (prompts_dir / "support" / "labels.yaml").write_text("production: {v2: 50, v3: 50}\n", encoding="utf-8")

    columns = comparison_columns(prompts_dir, "support@production", "gpt-4o-mini", FT_MODEL, "ftjob-7")

    assert [(c.prompt, c.model) for c in columns] == [
        ("support@v2-ft2", FT_MODEL), ("support@short-ft", FT_MODEL),
        ("support@v2", "gpt-4o-mini"), ("support@v3", "gpt-4o")]
    assert (prompts_dir / "support" / "v2-ft.md.j2").read_text(encoding="utf-8") == v2
    pinned = parse_prompt_file(prompts_dir / "support" / "v2-ft2.md.j2")
    assert pinned.model == FT_MODEL and "job ftjob-7, with the words of support@v2" in pinned.description
    with pytest.raises(Unprocessable, match="no production prompt"):
        comparison_columns(prompts_dir, "support@nowhere", "gpt-4o-mini", FT_MODEL, "ftjob-7")

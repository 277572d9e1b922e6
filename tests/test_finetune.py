"""`supportbot finetune`: start, status through every state, cancel and list against a local fake provider,
and the command backend, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from service.api import create_app
from service.config import Settings
from service.export import Exporter, ExportOptions
from service.models import AuditEntry, FineTuneJob
from service.runtime import Runtime

from .conftest import FinetuneCli, make_settings
from .factories import build_logged_dataset
from .fake_finetune_server import API_KEY, MESSAGES, FakeFineTuning, running_fine_tuning

GOOD = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
                     {"role": "assistant", "content": "Hello."}]}


@pytest.fixture
def provider() -> FakeFineTuning:
    return FakeFineTuning()


@pytest.fixture
def provider_url(provider: FakeFineTuning) -> Iterator[str]:
    with running_fine_tuning(provider) as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, database_url: str, provider_url: str) -> Settings:
    return make_settings(tmp_path, database_url, fine_tune_base_url=provider_url, fine_tune_api_key=API_KEY)


@pytest.fixture
def dataset(runtime: Runtime) -> dict[str, dict[str, object]]:
    """The shared realistic log, built through the API (its own event loop: the CLI runs its own too)."""

    async def build() -> dict[str, dict[str, object]]:
        transport = httpx.ASGITransport(app=create_app(runtime=runtime))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://supportbot.test") as client:
                return await build_logged_dataset(client, runtime.admin_token)
        finally:
            await runtime.aclose()

    return asyncio.run(build())


def jobs(runtime: Runtime) -> list[FineTuneJob]:
    with runtime.log.sessions() as session:
        return list(session.scalars(select(FineTuneJob).order_by(FineTuneJob.created_at)))


def audits(runtime: Runtime) -> list[tuple[str, str, str | None]]:
    with runtime.log.sessions() as session:
        return [(e.actor, e.action, e.target) for e in session.scalars(
            select(AuditEntry).where(AuditEntry.action.startswith("finetune")).order_by(AuditEntry.id))]


def exported_reply_ids(runtime: Runtime) -> list[int]:
    """The bot replies the corrected export stands for (which twin is the duplicate follows the random ids)."""
    return sorted(line.reply_id or 0 for line in Exporter(runtime.log.sessions, ExportOptions()).lines())


def reply_ids(dataset: dict[str, dict[str, object]], names: tuple[str, ...]) -> list[int]:
    return sorted(dataset[name]["replies"][0] for name in names)  # type: ignore[index]


def test_start_uploads_the_exported_examples_and_records_the_job(
    run_cli: FinetuneCli, runtime: Runtime, dataset: dict[str, dict[str, object]], provider: FakeFineTuning
) -> None:
    code, out, err = run_cli("start", "--base-model", "gpt-4o-mini-2024-07-18", "--suffix", "acme")

    assert code == 0, err
    assert "started fine-tuning job ftjob-000001 (openai, base gpt-4o-mini-2024-07-18, 3 training examples" in out
    assert provider.created == [{"model": "gpt-4o-mini-2024-07-18", "training_file": "file-1", "suffix": "acme"}]
    assert provider.files["file-1"]["purpose"] == "fine-tune"
    expected = [line.text for line in Exporter(runtime.log.sessions, ExportOptions(select="corrected")).lines()]
    assert provider.uploaded("file-1") == expected and len(expected) == 3
    [job] = jobs(runtime)
    assert (job.id, job.backend, job.status, job.suffix, job.training_file, job.created_by) == (
        "ftjob-000001", "openai", "validating_files", "acme", "file-1", "cli")
    assert sorted(job.trained_message_ids) == exported_reply_ids(runtime)
    assert set(reply_ids(dataset, ("disliked", "unknown"))) < set(job.trained_message_ids)
    assert audits(runtime) == [("cli", "finetune.start", "finetune:ftjob-000001")]


def test_validation_split_uploads_held_conversations_apart(
    run_cli: FinetuneCli, runtime: Runtime, dataset: dict[str, dict[str, object]], provider: FakeFineTuning
) -> None:
    code, _, err = run_cli("start", "--base-model", "gpt-4o-mini", "--select", "all", "--validation-split", "0.5")

    exported = list(Exporter(runtime.log.sessions, ExportOptions(select="all", validation_split=0.5)).lines())
    # Which side a conversation falls on hashes its (random) id: both sides are checked, whichever is empty.
    held = [line for line in exported if line.validation]
    trained = [line for line in exported if not line.validation]
    assert len(exported) == 5
    if not trained:  # every conversation fell on the validation side (a few runs in a hundred)
        assert code == 1 and "put all 5 examples (select all) in the validation file" in err, err
        assert provider.created == [] and jobs(runtime) == []
        return
    assert code == 0, err
    [created] = provider.created
    assert provider.uploaded(created["training_file"]) == [line.text for line in trained]
    if held:
        assert provider.uploaded(created["validation_file"]) == [line.text for line in held]
    else:
        assert "validation_file" not in created
    [job] = jobs(runtime)
    assert sorted(job.trained_message_ids) == sorted(line.reply_id for line in trained)
    assert job.validation_file == created.get("validation_file")


def test_a_split_that_leaves_nothing_to_train_on_says_so(
    run_cli: FinetuneCli, runtime: Runtime, dataset: dict[str, dict[str, object]], provider: FakeFineTuning
) -> None:
    # 0.9999999 puts every conversation on the validation side but for a chance of about one in a million.
    code, _, err = run_cli("start", "--base-model", "gpt-4o-mini", "--select", "all",
                           "--validation-split", "0.9999999")

    assert code == 1
    assert "--validation-split 0.9999999 put all 5 examples (select all) in the validation file" in err
    assert "lower it" in err and provider.created == [] and jobs(runtime) == []
    assert not list((runtime.settings.data_dir / "finetune").glob("*.jsonl")), "no half-written files left"


def test_status_shows_every_state_then_the_fine_tuned_model_and_list_every_job(
    run_cli: FinetuneCli, runtime: Runtime, dataset: dict[str, dict[str, object]]
) -> None:
    assert run_cli("start", "--base-model", "gpt-4o-mini", "--suffix", "acme")[0] == 0
    seen = []
    for _ in range(5):
        code, out, err = run_cli("status")  # the latest job
        assert code == 0, err
        seen.append(jobs(runtime)[0].status)
        assert out.startswith(f"job ftjob-000001 (openai, base gpt-4o-mini, suffix acme): {seen[-1]}\n")
        latest_event = [line for line in out.split("events:\n")[1].splitlines() if line.startswith("  ")][-1]
        assert latest_event.endswith(MESSAGES[seen[-1]]), out

    assert seen == ["validating_files", "queued", "running", "succeeded", "succeeded"]
    events = [line.split("info  ")[1] for line in out.split("events:\n")[1].splitlines() if "info  " in line]
    assert events == ["Created fine-tuning job", *(MESSAGES[state] for state in seen[:4])]
    assert "trained on 3 logged bot replies; started by cli" in out
    assert "fine-tuned model: ft:gpt-4o-mini:acme:acme:000001" in out
    assert jobs(runtime)[0].fine_tuned_model == "ft:gpt-4o-mini:acme:acme:000001"

    assert run_cli("start", "--base-model", "gpt-4.1-mini", "--select", "misses")[0] == 0
    code, out, _ = run_cli("list")
    header, newest, oldest = out.splitlines()
    assert code == 0 and header.startswith("JOB")
    assert newest.startswith("ftjob-000002  openai   validating_files         2") and "gpt-4.1-mini -> -" in newest
    assert oldest.startswith("ftjob-000001  openai   succeeded                3")
    assert oldest.endswith("gpt-4o-mini -> ft:gpt-4o-mini:acme:acme:000001")


def given_file(tmp_path: Path) -> tuple[str, str]:
    """`--file` with a one-example valid file: for tests about the job rather than the export."""
    examples = tmp_path / "examples.jsonl"
    examples.write_text(json.dumps(GOOD) + "\n", encoding="utf-8")
    return "--file", str(examples)


def test_a_failed_job_keeps_the_providers_error(
    run_cli: FinetuneCli, runtime: Runtime, provider: FakeFineTuning, tmp_path: Path
) -> None:
    provider.fail_with = "Training file has 1 example, but at least 10 are required"
    assert run_cli("start", "--base-model", "gpt-4o-mini", *given_file(tmp_path))[0] == 0
    out = ""
    while "failed" not in jobs(runtime)[0].status:
        assert provider.retrieves < 5, "the job never failed"
        code, out, _ = run_cli("status", "ftjob-000001")
        assert code == 0

    assert "failed: Training file has 1 example, but at least 10 are required" in out
    [job] = jobs(runtime)
    assert job.error == provider.fail_with and job.fine_tuned_model is None


def test_cancel_stops_a_running_job_once(
    run_cli: FinetuneCli, runtime: Runtime, provider: FakeFineTuning, tmp_path: Path
) -> None:
    assert run_cli("start", "--base-model", "gpt-4o-mini", *given_file(tmp_path))[0] == 0
    assert run_cli("status")[0] == 0

    code, out, err = run_cli("cancel", "ftjob-000001")
    assert (code, out) == (0, "job ftjob-000001: cancelled\n"), err
    assert provider.jobs["ftjob-000001"]["status"] == "cancelled" and jobs(runtime)[0].status == "cancelled"
    assert ("cli", "finetune.cancel", "finetune:ftjob-000001") in audits(runtime)

    code, _, err = run_cli("cancel", "ftjob-000001")
    assert code == 1 and "already cancelled" in err
    assert "Fine-tuning job cancelled" in run_cli("status")[1]


def test_the_command_backend_trains_with_the_operators_script(
    run_cli: FinetuneCli, runtime: Runtime, settings: Settings, dataset: dict[str, dict[str, object]], tmp_path: Path
) -> None:
    script = tmp_path / "train.py"
    script.write_text("import shutil, sys\nshutil.copy(sys.argv[1], sys.argv[0] + '.seen')\n"
                      "print('training...')\nprint('acme-support-7b-v1')\n", encoding="utf-8")
    command = settings.model_copy(update={"fine_tune_backend": "command",
                                          "fine_tune_command": f"{sys.executable} {script}"})

    code, out, err = run_cli("start", "--base-model", "llama-3.1-8b", using=command)

    assert code == 0, err
    assert "fine-tuned model: acme-support-7b-v1" in out
    expected = [line.text for line in Exporter(runtime.log.sessions, ExportOptions()).lines()]
    assert Path(str(script) + ".seen").read_text(encoding="utf-8").splitlines() == expected
    [job] = jobs(runtime)
    assert (job.backend, job.status, job.fine_tuned_model) == ("command", "succeeded", "acme-support-7b-v1")
    assert sorted(job.trained_message_ids) == exported_reply_ids(runtime)
    assert set(reply_ids(dataset, ("disliked", "unknown"))) < set(job.trained_message_ids)
    status = run_cli("status", job.id, using=command)[1]
    assert ": succeeded" in status and "fine-tuned model: acme-support-7b-v1" in status


def test_a_failing_command_is_recorded_with_its_stderr(
    run_cli: FinetuneCli, runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    script = tmp_path / "train.py"
    script.write_text("import sys\nprint('loading', file=sys.stderr)\nprint('CUDA out of memory', file=sys.stderr)\n"
                      "sys.exit(3)\n", encoding="utf-8")
    command = settings.model_copy(update={"fine_tune_backend": "command",
                                          "fine_tune_command": f"{sys.executable} {script}"})

    code, _, err = run_cli("start", "--base-model", "llama-3.1-8b", *given_file(tmp_path), using=command)

    assert code == 1 and "exit status 3" in err and "CUDA out of memory" in err
    [job] = jobs(runtime)
    assert job.status == "failed" and job.error is not None and job.error.endswith("CUDA out of memory")


def test_no_examples_is_refused_before_anything_is_uploaded(
    run_cli: FinetuneCli, runtime: Runtime, provider: FakeFineTuning
) -> None:
    code, out, err = run_cli("start", "--base-model", "gpt-4o-mini")

    assert (code, out) == (1, "") and "no examples to train on" in err
    assert provider.files == {} and jobs(runtime) == []


def test_a_given_file_is_validated_then_uploaded_as_is(
    run_cli: FinetuneCli, runtime: Runtime, provider: FakeFineTuning, tmp_path: Path
) -> None:
    good = GOOD
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(good) + "\n" + json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n")
    code, _, err = run_cli("start", "--base-model", "gpt-4o-mini", "--file", str(bad))
    assert code == 1 and f"{bad}:2:" in err and provider.files == {}

    fine = tmp_path / "fine.jsonl"
    fine.write_text(json.dumps(good) + "\n", encoding="utf-8")
    code, out, err = run_cli("start", "--base-model", "gpt-4o-mini", "--file", str(fine))
    assert code == 0, err
    assert provider.uploaded("file-1") == [json.dumps(good)]
    assert jobs(runtime)[0].trained_message_ids == []


def test_unknown_jobs_and_refusals_exit_1_with_the_reason(
    run_cli: FinetuneCli, runtime: Runtime, provider: FakeFineTuning, settings: Settings, tmp_path: Path
) -> None:
    given = given_file(tmp_path)
    assert run_cli("status")[2] == "error: no fine-tuning job yet; start one with `supportbot finetune start`\n"
    code, _, err = run_cli("cancel", "ftjob-nope")
    assert code == 1 and "no fine-tuning job 'ftjob-nope'" in err

    provider.refuse = "Model gpt-2 is not available for fine-tuning"
    code, _, err = run_cli("start", "--base-model", "gpt-2", *given)
    assert code == 1 and "the provider refused (400): Model gpt-2 is not available for fine-tuning" in err
    assert jobs(runtime) == []

    wrong_key = settings.model_copy(update={"fine_tune_api_key": "sk-wrong"})
    code, _, err = run_cli("start", "--base-model", "gpt-4o-mini", *given, using=wrong_key)
    assert code == 1 and "(401): Incorrect API key provided" in err
    no_script = settings.model_copy(update={"fine_tune_backend": "command"})
    code, _, err = run_cli("start", "--base-model", "x", *given, using=no_script)
    assert code == 1 and "SUPPORTBOT_FINE_TUNE_COMMAND" in err
    code, _, err = run_cli("start", "--base-model", "x", "--validation-split", "1.5")
    assert code == 1 and "below 1" in err
    code, _, err = run_cli("start", "--base-model", "x", "--validation-split", "0.1", *given)
    assert code == 1 and "not to --file" in err
    assert jobs(runtime) == []

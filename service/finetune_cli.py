"""`supportbot finetune start|status|list|cancel`: fine-tuning jobs from the command line (actor "cli")."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .config import Settings
from .errors import SupportbotError, Unprocessable
from .finetuning import FineTuneBackend, JobState, backend_for
from .finetuning.jobs import FineTuneJobs, TrainingFiles, checked_file, export_training_files
from .models import FineTuneJob

ACTOR = "cli"


@contextmanager
def _jobs(settings: Settings) -> Iterator[FineTuneJobs]:
    from .db import create_db_engine, make_session_factory

    engine = create_db_engine(settings.resolved_database_url)
    try:
        yield FineTuneJobs(make_session_factory(engine))
    finally:
        engine.dispose()


async def _call(backend: FineTuneBackend, job_id: str, cancel: bool = False) -> JobState:
    try:
        return await (backend.cancel(job_id) if cancel else backend.status(job_id))
    finally:
        await backend.aclose()


async def _start_job(backend: FineTuneBackend, args: argparse.Namespace, files: TrainingFiles) -> JobState:
    try:
        return await backend.start(args.base_model, files.training, files.validation, args.suffix)
    finally:
        await backend.aclose()


def _start(jobs: FineTuneJobs, args: argparse.Namespace, settings: Settings) -> int:
    if args.file and args.validation_split:
        raise Unprocessable("--validation-split applies to exported data, not to --file", code="invalid_split")
    if not 0 <= args.validation_split < 1:
        raise Unprocessable("--validation-split must be at least 0 and below 1", code="invalid_split")
    backend = backend_for(settings)  # refuse a missing key or command before exporting anything
    try:
        if args.file:
            files = checked_file(Path(args.file))
        else:
            files = export_training_files(jobs.sessions, settings.data_dir / "finetune",
                                          args.select or "corrected", args.validation_split)
    except SupportbotError:
        asyncio.run(backend.aclose())
        raise
    state = asyncio.run(_start_job(backend, args, files))
    job = jobs.record(ACTOR, backend.name, args.base_model, args.suffix, state, files.trained_message_ids)
    print(f"started fine-tuning job {job.id} ({backend.name}, base {job.base_model}, {files.examples} training "
          f"example{'' if files.examples == 1 else 's'} from {files.training}): {job.status}")
    if state.status == "failed":
        print(f"error: the job failed: {state.error}", file=sys.stderr)
        return 1
    if state.fine_tuned_model:
        print(f"fine-tuned model: {state.fine_tuned_model}")
    return 0


def _show(job: FineTuneJob, events: list[str]) -> None:
    print(f"job {job.id} ({job.backend}, base {job.base_model}"
          + (f", suffix {job.suffix}" if job.suffix else "") + f"): {job.status}")
    source = (f"{len(job.trained_message_ids)} logged bot replies" if job.trained_message_ids
              else "a given file (no logged replies)")
    print(f"trained on {source}; started by {job.created_by} at {job.created_at:%Y-%m-%d %H:%M} UTC")
    if events:
        print("events:")
        for event in events:
            print(f"  {event}")
    if job.status == "failed":
        print(f"failed: {job.error or 'the provider gave no reason'}")
    if job.fine_tuned_model:
        print(f"fine-tuned model: {job.fine_tuned_model}")


def _status(jobs: FineTuneJobs, job_id: str | None, settings: Settings) -> int:
    job = jobs.get(job_id)
    events: list[str] = []
    if job.backend != "command":  # a command job ended when it was recorded
        state = asyncio.run(_call(backend_for(settings, job.backend), job.id))
        job = jobs.update(state)
        events = state.events
    _show(job, events)
    return 0


def _cancel(jobs: FineTuneJobs, job_id: str, settings: Settings) -> int:
    job = jobs.get(job_id)
    if job.status in ("succeeded", "failed", "cancelled"):
        raise Unprocessable(f"job {job.id} has already {job.status}; there is nothing to cancel",
                            code="job_finished")
    state = asyncio.run(_call(backend_for(settings, job.backend), job.id, cancel=True))
    job = jobs.update(state, ACTOR, "finetune.cancel")
    print(f"job {job.id}: {job.status}")
    return 0


def _list(jobs: FineTuneJobs) -> int:
    everyone = jobs.everyone()
    if not everyone:
        print("no fine-tuning jobs yet; start one with `supportbot finetune start --base-model MODEL`")
        return 0
    width = max(len(j.id) for j in everyone)
    print(f"{'JOB':<{width}}  {'BACKEND':<7}  {'STATUS':<16}  {'EXAMPLES':>8}  {'CREATED (UTC)':<16}  "
          "BASE MODEL -> FINE-TUNED MODEL")
    for j in everyone:
        print(f"{j.id:<{width}}  {j.backend:<7}  {j.status:<16}  {len(j.trained_message_ids):>8}  "
              f"{j.created_at:%Y-%m-%d %H:%M}  {j.base_model} -> {j.fine_tuned_model or '-'}")
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Dispatch a `finetune` subcommand; exit 1 on bad input or a provider's refusal (the message says why)."""
    with _jobs(settings) as jobs:
        try:
            if args.finetune_command == "start":
                return _start(jobs, args, settings)
            if args.finetune_command == "status":
                return _status(jobs, args.job, settings)
            if args.finetune_command == "cancel":
                return _cancel(jobs, args.job, settings)
            return _list(jobs)
        except SupportbotError as error:
            print(f"error: {error.message}", file=sys.stderr)
            return 1


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `finetune` subcommand and its own subcommands."""
    finetune = commands.add_parser("finetune", help="fine-tune a model on corrected replies: start, status, list, "
                                                    "cancel")
    sub = finetune.add_subparsers(dest="finetune_command", required=True)
    start = sub.add_parser("start", help="export (or take) a training file, upload it, create the job")
    start.add_argument("--base-model", required=True, help="the model to fine-tune, e.g. gpt-4o-mini-2024-07-18")
    source = start.add_mutually_exclusive_group()
    source.add_argument("--select", choices=["corrected", "misses", "all"], default=None,
                        help="which examples to export (default: corrected)")
    source.add_argument("--file", help="an existing openai-chat JSONL file instead of the export")
    start.add_argument("--validation-split", type=float, default=0.0, help="share of conversations held for "
                                                                           "validation, e.g. 0.1")
    start.add_argument("--suffix", default=None, help="added to the fine-tuned model's name")
    status = sub.add_parser("status", help="a job's status, events and, when done, its fine-tuned model")
    status.add_argument("job", nargs="?", default=None, help="job id (default: the latest)")
    sub.add_parser("list", help="every fine-tuning job, newest first")
    cancel = sub.add_parser("cancel", help="cancel a running job")
    cancel.add_argument("job")

"""`supportbot finetune start|status|list|cancel|eval|promote`: fine-tuning jobs from the command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .actions.files import ActionFiles
from .cases import load_cases
from .config import Settings
from .errors import ConfigError, NotFound, SupportbotError, Unprocessable
from .evals import format_table
from .finetuning import FineTuneBackend, JobState, backend_for
from .finetuning.comparison import CASES_FILE, JobEval, evaluate_job, production_arms, save_eval, saved_eval
from .finetuning.heldout import held_out_lines, job_dir, write_held_out
from .finetuning.jobs import FineTuneJobs, TrainingFiles, checked_file, export_training_files
from .finetuning.promotion import (
    current_label,
    label_line,
    pinned_text,
    set_split,
    short_prompt,
    split_with,
    write_version,
)
from .models import FineTuneJob
from .prompts import LABELS_FILE, PromptRegistry

ACTOR = "cli"
DEFAULT_SHARE = 10
# eval and promote exit 2 when refused, as `supportbot eval` does on bad input; the job commands exit 1.
REFUSED_EXIT = {"eval": 2, "promote": 2}


@contextmanager
def _jobs(settings: Settings) -> Iterator[FineTuneJobs]:
    from .db import command_sessions

    with command_sessions(settings.resolved_database_url) as sessions:
        yield FineTuneJobs(sessions)


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
                                          args.select or "corrected", args.validation_split,
                                          ActionFiles(settings.actions_dir, interval=0).current().tools())
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


def _show_held_out(jobs: FineTuneJobs, job: FineTuneJob, data_dir: Path) -> None:
    held = len(held_out_lines(jobs.sessions, job.trained_message_ids))
    caveat = "" if job.trained_message_ids else " (it trained on a given file: some may be among its examples)"
    print(f"held out: {held} corrected miss{'' if held == 1 else 'es'} not trained on{caveat}, the cases of "
          f"`supportbot finetune eval {job.id}`")
    last = saved_eval(job_dir(data_dir, job.id))
    if last is not None:
        rates = ", ".join(f"{c['prompt']} x {c['model']} {c['pass_rate']:.0%}" for c in last.get("columns", []))
        print(f"last eval ({last.get('ran_at', '?')[:16]}, {last.get('held_out', '?')} cases): {rates}")


def _status(jobs: FineTuneJobs, job_id: str | None, settings: Settings) -> int:
    job = jobs.get(job_id)
    events: list[str] = []
    if job.backend != "command":  # a command job ended when it was recorded
        state = asyncio.run(_call(backend_for(settings, job.backend), job.id))
        job = jobs.update(state)
        events = state.events
    _show(job, events)
    _show_held_out(jobs, job, settings.data_dir)
    return 0


def _succeeded(job: FineTuneJob, doing: str) -> str:
    """The job's fine-tuned model; refused, with what to do, unless the job succeeded."""
    if job.status == "succeeded" and job.fine_tuned_model:
        return job.fine_tuned_model
    todo = {"failed": f"it failed ({job.error or 'the provider gave no reason'}): start a new job with "
                      "`supportbot finetune start`",
            "cancelled": "start a new job with `supportbot finetune start`"}.get(
        job.status, f"wait for it to finish: `supportbot finetune status {job.id}` shows where it is")
    raise Unprocessable(f"job {job.id} is {job.status}, so there is no fine-tuned model to {doing}; {todo}",
                        code="job_not_succeeded")


def _eval(jobs: FineTuneJobs, args: argparse.Namespace, settings: Settings) -> int:
    from .eval_cli import progress

    job = jobs.get(args.job)
    model = _succeeded(job, "evaluate")
    if not settings.hosted_model_configured:
        raise Unprocessable("finetune eval calls the fine-tuned model through the chat API: set "
                            "SUPPORTBOT_OPENAI_API_KEY (and SUPPORTBOT_OPENAI_BASE_URL for another provider)",
                            code="no_hosted_model")
    lines = held_out_lines(jobs.sessions, job.trained_message_ids)
    if not lines:
        raise Unprocessable(f"job {job.id} has no held-out cases: every corrected miss was trained on; correct "
                            "new misses on the review page, then run this again", code="nothing_held_out")
    directory = job_dir(settings.data_dir, job.id)
    cases_file = write_held_out(directory / CASES_FILE, lines)
    cases = load_cases(cases_file)
    arms = len(production_arms(settings.prompts_dir, settings.prompt))
    with progress(settings, len(cases) * (2 + arms)) as step:
        result: JobEval = asyncio.run(evaluate_job(settings, job.id, model, cases, cases_file, on_progress=step))
    saved = save_eval(result, directory)
    jobs.note(ACTOR, "finetune.eval", job.id, {
        "held_out": len(cases), "file": str(saved),
        "pass_rates": {f"{c.prompt} x {c.model}": round(c.pass_rate, 4) for c in result.report.columns}})
    if args.json:
        print(json.dumps(result.as_json(), indent=2, ensure_ascii=False))
        return 0
    print(f"job {job.id}: {len(cases)} held-out case{'' if len(cases) == 1 else 's'} ({cases_file})")
    print(format_table(result.report))
    print(f"result kept in {saved}")
    return 0


def _promote(jobs: FineTuneJobs, args: argparse.Namespace, settings: Settings) -> int:
    job = jobs.get(args.job)
    model = _succeeded(job, "promote")
    prompt = args.prompt or settings.prompt.partition("@")[0]
    registry = PromptRegistry(settings.prompts_dir, interval=3600.0)
    if args.short:
        base, origin = short_prompt(), "the built-in short prompt"
    else:
        try:
            base = registry.resolve(f"{prompt}@{args.from_version or args.label}")
        except LookupError as error:
            raise NotFound(f"{error} (in {settings.prompts_dir})", code="unknown_prompt") from None
        origin = base.ref
    path = write_version(settings.prompts_dir, prompt, args.version, pinned_text(base, model, job.id, origin))
    jobs.note(ACTOR, "finetune.promote", job.id, {"prompt": f"{prompt}@{args.version}", "model": model,
                                                  "from": origin, "file": str(path)})
    print(f"wrote {path}: {prompt}@{args.version}, {origin}'s words pinned to {model}")
    labels = settings.prompts_dir / prompt / LABELS_FILE
    current = current_label(settings.prompts_dir, prompt, args.label)
    if current is None:
        print(f"{labels} has no '{args.label}' label; to serve the new version add: {args.label}: {args.version}")
        return 0
    split = split_with(current, args.version, args.share or DEFAULT_SHARE)
    if args.share:
        set_split(settings.prompts_dir, prompt, args.label, split)
        jobs.note(ACTOR, "finetune.split", job.id, {"labels": str(labels), "line": label_line(args.label, split)})
        print(f"{labels}: {label_line(args.label, split)} (new conversations only; each keeps its arm)")
    else:
        print(f"to give it {DEFAULT_SHARE} % of new conversations, set this line in {labels}:")
        print(f"  {label_line(args.label, split)}")
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
            if args.finetune_command == "eval":
                return _eval(jobs, args, settings)
            if args.finetune_command == "promote":
                return _promote(jobs, args, settings)
            return _list(jobs)
        except SupportbotError as error:
            print(f"error: {error.message}", file=sys.stderr)
            return REFUSED_EXIT.get(args.finetune_command, 1)
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `finetune` subcommand and its own subcommands."""
    finetune = commands.add_parser("finetune", help="fine-tune a model on corrected replies: start, status, list, "
                                                    "cancel, eval, promote")
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
    evaluate = sub.add_parser("eval", help="the held-out cases: the fine-tuned model (production prompt, short "
                                           "prompt) against the production arm(s), side by side")
    evaluate.add_argument("job")
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON")
    promote = sub.add_parser("promote", help="write a prompt version pinned to the job's fine-tuned model")
    promote.add_argument("job")
    promote.add_argument("--version", required=True, help="the new version's name, e.g. v9 (never overwritten)")
    promote.add_argument("--prompt", default=None, help="the prompt's name (default: SUPPORTBOT_PROMPT's)")
    words = promote.add_mutually_exclusive_group()
    words.add_argument("--from", dest="from_version", default=None,
                       help="copy this version (or label) instead of the production one")
    words.add_argument("--short", action="store_true", help="use the built-in short prompt")
    promote.add_argument("--label", default="production", help="the label to give it traffic in "
                                                               "(default: production)")
    promote.add_argument("--share", type=int, default=None,
                         help="also edit labels.yaml: the new version gets this %% of the label's new conversations")

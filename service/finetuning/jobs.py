"""Fine-tuning jobs in the database, and the training file they start from (the export, validated)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ..errors import NotFound, Unprocessable
from ..export import Exporter, ExportOptions
from ..export_format import check_file
from ..models import FineTuneJob
from ..review import audit
from .base import JobState

MAX_PROBLEMS_SHOWN = 10


@dataclass(frozen=True)
class TrainingFiles:
    """What a job trains on: the file, its validation file, and the bot replies its examples stand for."""

    training: Path
    validation: Path | None
    trained_message_ids: list[int]
    examples: int


def export_training_files(sessions: sessionmaker[Session], directory: Path, select_mode: str,
                          validation_split: float, action_tools: Sequence[dict[str, Any]] = ()) -> TrainingFiles:
    """Write the selected examples (openai-chat) to `directory`; refuse when there is nothing to train on.
    `action_tools`: the actions as the model is offered them, for the examples' `tools`."""
    exporter = Exporter(sessions, ExportOptions(format="openai-chat", select=select_mode,
                                                validation_split=validation_split), action_tools=action_tools)
    directory.mkdir(parents=True, exist_ok=True)
    stem = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    training, validation = directory / f"{stem}-train.jsonl", directory / f"{stem}-validation.jsonl"
    trained: list[int] = []
    held = 0
    with training.open("w", encoding="utf-8") as train_out, validation.open("w", encoding="utf-8") as valid_out:
        for line in exporter.lines():
            (valid_out if line.validation else train_out).write(line.text + "\n")
            held += line.validation
            if not line.validation and line.reply_id is not None:
                trained.append(line.reply_id)
    if not trained:
        training.unlink()
        validation.unlink()
        if held:  # the conversation-level split put every example on the validation side
            raise Unprocessable(f"--validation-split {validation_split} put all {held} examples (select "
                                f"{select_mode}) in the validation file, none left to train on: lower it, or "
                                "correct more misses first", code="no_examples")
        raise Unprocessable(f"no examples to train on (select {select_mode}): correct some misses first, "
                            "or pick another --select", code="no_examples")
    if not held:
        validation.unlink()
    return TrainingFiles(training, validation if held else None, trained, len(trained))


def checked_file(path: Path) -> TrainingFiles:
    """An operator's file, validated as openai-chat with `import-check`'s rules; its examples are unknown replies."""
    if not path.is_file():
        raise Unprocessable(f"{path} is not a file", code="invalid_file")
    problems = [f"{path}:{number}: {'; '.join(found)}" for number, found in check_file(path, "openai-chat")]
    if problems:
        shown = "\n".join(problems[:MAX_PROBLEMS_SHOWN])
        more = f"\n... and {len(problems) - MAX_PROBLEMS_SHOWN} more" if len(problems) > MAX_PROBLEMS_SHOWN else ""
        raise Unprocessable(f"{path} is not a valid training file ({len(problems)} bad lines):\n{shown}{more}",
                            code="invalid_file")
    examples = sum(1 for raw in path.open(encoding="utf-8") if raw.strip())
    if not examples:
        raise Unprocessable(f"{path} has no examples to train on", code="no_examples")
    return TrainingFiles(path, None, [], examples)


class FineTuneJobs:
    """The `finetune_jobs` table: recorded at start, brought up to date by status and cancel; audited."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def record(self, actor: str, backend: str, base_model: str, suffix: str | None, state: JobState,
               trained_message_ids: list[int]) -> FineTuneJob:
        """Store a job the backend has just created."""
        with self.sessions.begin() as session:
            job = FineTuneJob(id=state.id, backend=backend, base_model=base_model, suffix=suffix,
                              status=state.status, fine_tuned_model=state.fine_tuned_model, error=state.error,
                              training_file=state.training_file, validation_file=state.validation_file,
                              trained_message_ids=trained_message_ids, created_by=actor)
            session.add(job)
            audit(session, actor, "finetune.start", f"finetune:{state.id}",
                  {"backend": backend, "base_model": base_model, "examples": len(trained_message_ids),
                   "status": state.status})
            session.flush()
            session.expunge(job)
        return job

    def get(self, job_id: str | None) -> FineTuneJob:
        """The job `job_id`, or the latest when None."""
        with self.sessions() as session:
            if job_id is None:
                job = session.scalars(select(FineTuneJob).order_by(FineTuneJob.created_at.desc()).limit(1)).first()
                if job is None:
                    raise NotFound("no fine-tuning job yet; start one with `supportbot finetune start`",
                                   code="unknown_job")
            else:
                job = session.get(FineTuneJob, job_id)
                if job is None:
                    raise NotFound(f"no fine-tuning job {job_id!r} (see `supportbot finetune list`)",
                                   code="unknown_job")
            session.expunge(job)
            return job

    def everyone(self) -> list[FineTuneJob]:
        """Every job, newest first."""
        with self.sessions() as session:
            jobs = list(session.scalars(select(FineTuneJob).order_by(FineTuneJob.created_at.desc())))
            session.expunge_all()
            return jobs

    def note(self, actor: str, action: str, job_id: str, details: dict[str, Any]) -> None:
        """Audit something done with a job that changes no column of it (eval, promote)."""
        with self.sessions.begin() as session:
            audit(session, actor, action, f"finetune:{job_id}", details)

    def update(self, state: JobState, actor: str | None = None, action: str | None = None) -> FineTuneJob:
        """Store what the backend reports now (auditing `action` by `actor` when given)."""
        with self.sessions.begin() as session:
            job = session.get(FineTuneJob, state.id)
            if job is None:
                raise NotFound(f"no fine-tuning job {state.id!r}", code="unknown_job")
            job.status = state.status
            job.fine_tuned_model = state.fine_tuned_model or job.fine_tuned_model
            job.error = state.error
            if actor and action:
                audit(session, actor, action, f"finetune:{state.id}", {"status": state.status})
            session.flush()
            session.expunge(job)
        return job

"""The OpenAI files + fine_tuning.jobs protocol (any provider speaking it): upload, create, retrieve, cancel."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import openai
from openai.types.fine_tuning import FineTuningJob

from .base import STATES, FineTuneRefused, JobState

EVENTS_SHOWN = 50


def _refusal(error: openai.OpenAIError) -> FineTuneRefused:
    """The provider's own message (not the client's wrapper text), or why it could not be reached."""
    if isinstance(error, openai.APIStatusError):
        body = error.body
        message = body.get("message") if isinstance(body, dict) else None
        return FineTuneRefused(f"the provider refused ({error.status_code}): {message or error.message}")
    if isinstance(error, openai.APIConnectionError):
        return FineTuneRefused(f"the fine-tuning provider could not be reached: {error.message}")
    return FineTuneRefused(f"the fine-tuning provider failed: {error}")


class OpenAIBackend:
    """Fine-tuning through the official `openai` client."""

    name = "openai"

    def __init__(self, api_key: str, base_url: str | None, timeout: float) -> None:
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=1,
            # openai 3.x builds an httpx2 client unless given one; ours keeps one HTTP stack in the service.
            http_client=httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0))),  # type: ignore[arg-type]
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.close()

    async def _upload(self, path: Path) -> str:
        uploaded = await self._client.files.create(
            file=(path.name, path.read_bytes(), "application/jsonl"), purpose="fine-tune")
        return uploaded.id

    async def start(self, base_model: str, training: Path, validation: Path | None, suffix: str | None) -> JobState:
        """Upload the training (and validation) file with purpose "fine-tune", then create the job."""
        try:
            training_id = await self._upload(training)
            validation_id = await self._upload(validation) if validation else None
            options: dict[str, Any] = {}
            if validation_id:
                options["validation_file"] = validation_id
            if suffix:
                options["suffix"] = suffix
            job = await self._client.fine_tuning.jobs.create(model=base_model, training_file=training_id, **options)
        except openai.OpenAIError as error:
            raise _refusal(error) from error
        return _state(job, [])

    async def status(self, job_id: str) -> JobState:
        """Retrieve the job and its latest events."""
        try:
            job = await self._client.fine_tuning.jobs.retrieve(job_id)
            page = await self._client.fine_tuning.jobs.list_events(job_id, limit=EVENTS_SHOWN)
        except openai.OpenAIError as error:
            raise _refusal(error) from error
        # The API lists the newest first; a log reads oldest first.
        events = [f"{_when(e.created_at)} {e.level:<5} {e.message}" for e in reversed(page.data)]
        return _state(job, events)

    async def cancel(self, job_id: str) -> JobState:
        """Cancel the job."""
        try:
            job = await self._client.fine_tuning.jobs.cancel(job_id)
        except openai.OpenAIError as error:
            raise _refusal(error) from error
        return _state(job, [])


def _when(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _state(job: FineTuningJob, events: list[str]) -> JobState:
    if job.status not in STATES:
        raise FineTuneRefused(f"the provider reported an unknown job state {job.status!r}")
    error = None
    if job.error is not None and (job.error.message or job.error.code):
        error = job.error.message or job.error.code
    return JobState(id=job.id, status=job.status, fine_tuned_model=job.fine_tuned_model, error=error,
                    training_file=job.training_file, validation_file=job.validation_file, events=events)

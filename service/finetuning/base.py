"""The fine-tuning interface: start a job from a JSONL file, read its state and events, cancel it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import SupportbotError, Unprocessable

if TYPE_CHECKING:
    from ..config import Settings

STATES = ("validating_files", "queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


class FineTuneRefused(SupportbotError):
    """The fine-tuning provider refused a request, or could not be reached; the message is the provider's."""

    status_code = 502
    code = "fine_tune_refused"


@dataclass(frozen=True)
class JobState:
    """A job as its backend sees it now."""

    id: str
    status: str
    fine_tuned_model: str | None = None
    error: str | None = None
    training_file: str | None = None
    validation_file: str | None = None
    events: list[str] = field(default_factory=list)  # oldest first, one line each

    @property
    def finished(self) -> bool:
        """Whether the job can no longer change."""
        return self.status in TERMINAL


class FineTuneBackend(Protocol):
    """Where fine-tuning runs."""

    name: str

    async def start(self, base_model: str, training: Path, validation: Path | None, suffix: str | None) -> JobState:
        """Upload the file(s) and create the job."""
        ...

    async def status(self, job_id: str) -> JobState:
        """The job's state, events and (when done) fine-tuned model."""
        ...

    async def cancel(self, job_id: str) -> JobState:
        """Ask the provider to stop the job."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def backend_for(settings: Settings, name: str | None = None) -> FineTuneBackend:
    """The backend `name` (default: SUPPORTBOT_FINE_TUNE_BACKEND), configured from the settings."""
    name = name or settings.fine_tune_backend
    if name == "command":
        from .command import CommandBackend

        if not settings.fine_tune_command:
            raise Unprocessable("the command backend needs SUPPORTBOT_FINE_TUNE_COMMAND (the training script)",
                                code="fine_tune_not_configured")
        return CommandBackend(settings.fine_tune_command)
    from .openai_jobs import OpenAIBackend

    api_key = settings.fine_tune_api_key or settings.openai_api_key
    if not api_key:
        raise Unprocessable("fine-tuning needs an API key: set SUPPORTBOT_FINE_TUNE_API_KEY "
                            "(or SUPPORTBOT_OPENAI_API_KEY)", code="fine_tune_not_configured")
    return OpenAIBackend(api_key, settings.fine_tune_base_url or settings.openai_base_url, settings.openai_timeout)

"""The `command` backend: an operator's script trains on the file and prints the model name on its last line."""

from __future__ import annotations

import asyncio
import shlex
import uuid
from pathlib import Path

from .base import FineTuneRefused, JobState

STDERR_TAIL = 2000


class CommandBackend:
    """Runs SUPPORTBOT_FINE_TUNE_COMMAND with the training file's path; the run is the whole job."""

    name = "command"

    def __init__(self, command: str) -> None:
        self.command = shlex.split(command)

    async def aclose(self) -> None:
        """Nothing to release."""

    async def start(self, base_model: str, training: Path, validation: Path | None, suffix: str | None) -> JobState:
        """Run the script to its end: succeeded with the model it printed, or failed with its stderr's tail."""
        job_id = f"cmd-{uuid.uuid4().hex[:12]}"
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command, str(training), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as error:
            raise FineTuneRefused(f"the fine-tune command could not be started: {error}") from error
        out, err = await process.communicate()
        lines = [line.strip() for line in out.decode(errors="replace").splitlines() if line.strip()]
        if process.returncode != 0:
            tail = err.decode(errors="replace").strip()[-STDERR_TAIL:] or "(no output on stderr)"
            return JobState(job_id, "failed", error=f"exit status {process.returncode}: {tail}")
        if not lines:
            return JobState(job_id, "failed", error="the command printed no model name on standard output")
        return JobState(job_id, "succeeded", fine_tuned_model=lines[-1])

    async def status(self, job_id: str) -> JobState:
        """Never asked: a command job is finished when `start` returns, and its record holds the outcome."""
        raise FineTuneRefused("a command job has no live status; its record holds the outcome")

    async def cancel(self, job_id: str) -> JobState:
        """A command job has already ended when it is recorded."""
        raise FineTuneRefused("a command job has already finished; there is nothing to cancel")

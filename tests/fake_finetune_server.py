"""A local fine-tuning provider speaking the OpenAI files + fine_tuning.jobs protocol, for `supportbot finetune`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .upstream_server import serving

API_KEY = "sk-finetune-test"
# Each retrieve shows a job, then moves it one step along this path (ending succeeded, or failed when asked).
PATH = ("validating_files", "queued", "running", "succeeded")
MESSAGES = {"validating_files": "Validating training file", "queued": "Fine-tuning job queued",
            "running": "Fine-tuning job started", "succeeded": "The job has successfully completed",
            "cancelled": "Fine-tuning job cancelled"}


@dataclass
class FakeFineTuning:
    """The provider's state and knobs: what was uploaded and asked for, how jobs end."""

    fail_with: str | None = None  # a job fails with this error instead of succeeding
    refuse: str | None = None  # job creation is refused (400) with this message
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)  # the bodies of job creations
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    retrieves: int = 0

    def uploaded(self, file_id: str) -> list[str]:
        """The lines of an uploaded file."""
        return bytes(self.files[file_id]["content"]).decode().splitlines()

    def _event(self, job_id: str, level: str, message: str) -> None:
        events = self.events.setdefault(job_id, [])
        events.append({"id": f"ftevent-{job_id}-{len(events)}", "object": "fine_tuning.job.event",
                       "created_at": int(time.time()), "level": level, "message": message, "type": "message"})

    def _move(self, job: dict[str, Any]) -> None:
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return
        following = PATH[PATH.index(job["status"]) + 1]
        if following == "succeeded" and self.fail_with:
            job.update(status="failed", finished_at=int(time.time()),
                       error={"code": "invalid_training_file", "message": self.fail_with, "param": "training_file"})
            return
        job["status"] = following
        if following == "succeeded":
            job.update(fine_tuned_model=f"ft:{job['model']}:acme:{job['suffix'] or 'custom'}:{job['id'][-6:]}",
                       finished_at=int(time.time()), trained_tokens=1234)

    def _announce(self, job: dict[str, Any]) -> None:
        """The event of the state a job is shown in, once: events never run ahead of what a client saw."""
        job_id, status = job["id"], job["status"]
        message = self.fail_with if status == "failed" else MESSAGES[status]
        if not any(e["message"] == message for e in self.events.get(job_id, [])):
            self._event(job_id, "error" if status == "failed" else "info", str(message))

    def app(self) -> Starlette:
        """The HTTP routes."""

        def refused(status: int, message: str, code: str) -> JSONResponse:
            return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                           "code": code}}, status_code=status)

        def authorized(request: Request) -> bool:
            return request.headers.get("authorization") == f"Bearer {API_KEY}"

        async def upload(request: Request) -> JSONResponse:
            if not authorized(request):
                return refused(401, "Incorrect API key provided", "invalid_api_key")
            form = await request.form()
            upload = form["file"]
            assert isinstance(upload, UploadFile)
            content = await upload.read()
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = {"purpose": form["purpose"], "filename": upload.filename, "content": content}
            return JSONResponse({"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                                 "filename": upload.filename, "purpose": form["purpose"], "status": "processed"})

        async def create(request: Request) -> JSONResponse:
            if not authorized(request):
                return refused(401, "Incorrect API key provided", "invalid_api_key")
            body = await request.json()
            if self.refuse:
                return refused(400, self.refuse, "model_not_available")
            if body["training_file"] not in self.files:
                return refused(400, f"File {body['training_file']} not found", "invalid_file")
            self.created.append(body)
            job_id = f"ftjob-{len(self.jobs) + 1:06d}"
            self.jobs[job_id] = {
                "id": job_id, "object": "fine_tuning.job", "created_at": int(time.time()), "error": None,
                "fine_tuned_model": None, "finished_at": None, "hyperparameters": {"n_epochs": "auto"},
                "model": body["model"], "organization_id": "org-test", "result_files": [], "seed": 1,
                "status": "validating_files", "trained_tokens": None, "training_file": body["training_file"],
                "validation_file": body.get("validation_file"), "suffix": body.get("suffix")}
            self._event(job_id, "info", "Created fine-tuning job")
            return JSONResponse(self.jobs[job_id])

        async def retrieve(request: Request) -> JSONResponse:
            job = self.jobs.get(request.path_params["job_id"])
            if job is None:
                return refused(404, "Job not found", "not_found")
            self.retrieves += 1
            # The job is shown as it was, then moves on: retrieves see every state in order.
            shown = dict(job)
            self._announce(shown)
            self._move(job)
            return JSONResponse(shown)

        async def events(request: Request) -> JSONResponse:
            found = self.events.get(request.path_params["job_id"], [])
            limit = int(request.query_params.get("limit", 20))
            return JSONResponse({"object": "list", "data": list(reversed(found))[:limit], "has_more": False})

        async def cancel(request: Request) -> JSONResponse:
            job = self.jobs.get(request.path_params["job_id"])
            if job is None:
                return refused(404, "Job not found", "not_found")
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return refused(400, f"Job has already {job['status']}", "invalid_state")
            job.update(status="cancelled", finished_at=int(time.time()))
            self._announce(job)
            return JSONResponse(job)

        return Starlette(routes=[
            Route("/v1/files", upload, methods=["POST"]),
            Route("/v1/fine_tuning/jobs", create, methods=["POST"]),
            Route("/v1/fine_tuning/jobs/{job_id}", retrieve, methods=["GET"]),
            Route("/v1/fine_tuning/jobs/{job_id}/events", events, methods=["GET"]),
            Route("/v1/fine_tuning/jobs/{job_id}/cancel", cancel, methods=["POST"]),
        ])


@contextmanager
def running_fine_tuning(provider: FakeFineTuning) -> Iterator[str]:
    """The fake provider on loopback; yields its base URL (…/v1)."""
    with serving(provider.app(), lifespan="off") as base:
        yield f"{base}/v1"

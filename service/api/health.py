"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..db import ping
from .deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Database unreachable or prompt not loaded"}})
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Ready to serve: the database answers and the configured prompt resolves."""
    checks: dict[str, Any] = {}
    try:
        await to_thread.run_sync(ping, runtime.log.engine)
        checks["database"] = "ok"
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        checks["database"] = f"error: {type(error).__name__}"
    try:
        checks["prompt"] = runtime.prompts.resolve(runtime.settings.prompt).ref
    except LookupError as error:
        checks["prompt"] = f"error: {error}"
    ready = all(not str(v).startswith("error") for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks},
                        status_code=200 if ready else 503)

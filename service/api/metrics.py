"""GET /metrics: Prometheus text for the admin token or SUPPORTBOT_METRICS_TOKEN (service/telemetry/metrics.py)."""

from __future__ import annotations

import hmac
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from ..errors import Forbidden, Unauthorized
from ..forwarded import client_ip
from ..lockout import count_failure, refuse_if_locked_out, sign_in_guard
from ..people import TOKEN_PREFIX
from ..telemetry.metrics import ServiceState, exposition
from .deps import RuntimeDep, bearer_token
from .schemas import ErrorBody

router = APIRouter(tags=["metrics"])


async def metrics_reader(request: Request, runtime: RuntimeDep, token: Annotated[str, Depends(bearer_token)]) -> None:
    """Admit the admin token or SUPPORTBOT_METRICS_TOKEN; 403 for a person's own token, 401 (counted towards the
    client's lockout, like any wrong admin token) for anything else."""
    guard, ip = sign_in_guard(request), client_ip(request, runtime.limits)
    await refuse_if_locked_out(guard, runtime.limits, ip)
    for allowed in (runtime.admin_token, runtime.settings.metrics_token):
        if allowed and hmac.compare_digest(token.encode(), allowed.encode()):
            return
    if token.startswith(TOKEN_PREFIX) and await to_thread.run_sync(runtime.people.by_api_token, token) is not None:
        raise Forbidden("metrics are read with the admin token or SUPPORTBOT_METRICS_TOKEN, not a personal token",
                        code="forbidden_metrics")
    await count_failure(guard, runtime.limits, runtime.review, ip, "metrics")
    raise Unauthorized("invalid metrics token", code="invalid_metrics_token")


@router.get("/metrics", dependencies=[Depends(metrics_reader)], response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                             "description": "Prometheus text format"},
                       401: {"model": ErrorBody, "description": "Missing or wrong token"},
                       403: {"model": ErrorBody, "description": "A personal token: metrics need the admin token "
                             "or SUPPORTBOT_METRICS_TOKEN"},
                       429: {"model": ErrorBody, "description": "Locked out after wrong tokens"}})
async def read_metrics(runtime: RuntimeDep) -> Response:
    """The service's metrics: every worker's counters, and the outbox and knowledge gauges read now."""
    state = ServiceState(runtime.log.sessions, lambda: len(runtime.knowledge.current().issues))
    body = await to_thread.run_sync(exposition, state)
    return Response(body, media_type=CONTENT_TYPE_LATEST)

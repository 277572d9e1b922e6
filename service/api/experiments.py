"""The experiments API (bearer token): each split label's arms with intervals and verdicts; stop and resume arms."""

from __future__ import annotations

from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from ..experiment_guard import find_arm, stop_arm
from ..experiments import experiment_reports, report_json
from .admin import ADMIN_ERRORS
from .deps import Admins, Reviewing, RuntimeDep
from .schemas import ErrorBody, error_responses

router = APIRouter(prefix="/admin/api", tags=["experiments"], responses=error_responses(400, 401, 422))
ERRORS = {**ADMIN_ERRORS, 404: {"model": ErrorBody, "description": "No such label, split or arm"}}
LabelQuery = Annotated[str | None, Query(max_length=64, description="only this label, e.g. production")]
Effect = Annotated[float, Query(gt=0, lt=1, description="the resolution difference the sample size is for "
                                                        "(0.05 = 5 points)")]


class ArmChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(max_length=64, examples=["production"])
    version: str = Field(max_length=64, examples=["v3"])
    prompt: str | None = Field(default=None, max_length=100, description="needed only when several prompts split "
                               "the label over this version", examples=["support"])


class ArmStopPublic(BaseModel):
    prompt: str
    label: str
    version: str
    stopped: bool = Field(description="true: new conversations that would draw it get control")


@router.get("/experiments", responses=ERRORS)
async def experiments(runtime: RuntimeDep, _who: Reviewing, label: LabelQuery = None,
                      effect: Effect = 0.05) -> dict[str, Any]:
    """Every label that splits traffic: each arm's figures with 95 % intervals, differences to control, verdicts,
    the conversations needed per arm and the series over time."""
    reports = await to_thread.run_sync(lambda: experiment_reports(runtime.log.sessions, runtime.prompts,
                                                                  label=label, effect=effect))
    return {"experiments": [report_json(report) for report in reports]}


@router.post("/experiments/stop", response_model=ArmStopPublic, responses={**ERRORS, 409: {"model": ErrorBody}})
async def stop(body: ArmChange, runtime: RuntimeDep, who: Admins) -> ArmStopPublic:
    """Take an arm out of traffic by hand (audited); 409 when it already is, 422 for the control arm."""
    row = await to_thread.run_sync(lambda: stop_arm(runtime.arm_stops, runtime.prompts, body.label, body.version,
                                                    who.actor, body.prompt))
    return ArmStopPublic(prompt=row.prompt, label=row.label, version=row.version, stopped=True)


@router.post("/experiments/resume", response_model=ArmStopPublic, responses=ERRORS)
async def resume(body: ArmChange, runtime: RuntimeDep, who: Admins) -> ArmStopPublic:
    """Put a stopped arm back into traffic (audited); 404 when it is not stopped."""
    def lift() -> str:
        name, _ = find_arm(runtime.prompts, body.label, body.version, body.prompt)
        runtime.arm_stops.lift(name, body.label, body.version, who.actor)
        return name

    name = await to_thread.run_sync(lift)
    return ArmStopPublic(prompt=name, label=body.label, version=body.version, stopped=False)

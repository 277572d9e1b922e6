"""The review API (admin bearer token): inbox, misses, corrections, verdicts, prompts, audit, export."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from anyio import to_thread
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from ..errors import NotFound
from ..export import Exporter, ExportOptions
from ..inbox import Assigned, InboxQuery, ReviewState, View
from ..promote import promote
from ..prompt_tools import assemble_for_display, prompt_diff
from ..prompts import RenderedPrompt, estimate_tokens
from ..report import build_report
from .admin import ADMIN_ERRORS
from .deps import Admins, BeforeId, Correcting, IsoDate, MessageId, Reviewing, RuntimeDep, Staff
from .schemas import (
    AdminMessage,
    AuditItem,
    CorrectionCreate,
    CorrectionPublic,
    ErrorBody,
    ExcludeCreate,
    InboxItem,
    InboxPage,
    MissItem,
    MissPage,
    PromoteCreate,
    PromptDiff,
    PromptText,
    PromptVersionInfo,
    VerdictCreate,
    error_responses,
)

router = APIRouter(prefix="/admin/api", tags=["review"], responses=error_responses(400, 401, 413, 422))
Limit = Annotated[int, Query(ge=1, le=200)]
LanguageCode = Annotated[str | None, Query(pattern=r"^[a-z]{2,3}$", description="the visitor's language (ISO "
                                           "639-1, e.g. de)")]
REVIEW_ERRORS = {**ADMIN_ERRORS, 422: {"model": ErrorBody}}


@router.get("/conversations", response_model=InboxPage, responses=REVIEW_ERRORS)
async def inbox(
    runtime: RuntimeDep, who: Staff, view: View = "all", prompt_version: str | None = None,
    since: IsoDate = None, until: IsoDate = None, q: str | None = None, cursor: str | None = None,
    limit: Limit = 50, language: LanguageCode = None, assigned: Assigned = "all",
) -> InboxPage:
    """Conversations, newest activity first, filtered; keyset-paginated with `cursor`.

    `assigned`: `mine` (assigned to the caller; 422 for the shared admin token, which is no person),
    `unassigned` (open handoffs nobody has taken) or `all`."""
    query = InboxQuery(view=view, prompt_version=prompt_version, since=since, until=until, q=q or None,
                       cursor=cursor, limit=limit, language=language, assigned=assigned, user_id=who.user_id)
    rows, next_cursor = await to_thread.run_sync(runtime.inbox.conversations, query)
    return InboxPage(items=[
        InboxItem.model_validate({**_columns(row.conversation), "preview": row.preview, "assignee": row.assignee})
        for row in rows
    ], next_cursor=next_cursor)


def _columns(obj: object) -> dict[str, object]:
    return {c: getattr(obj, c) for c in InboxItem.model_fields if c not in {"preview", "assignee"}}


@router.get("/misses", response_model=MissPage, responses=REVIEW_ERRORS)
async def misses(
    runtime: RuntimeDep, _who: Staff, since: IsoDate = None, until: IsoDate = None,
    prompt_version: str | None = None, reason: str | None = None, review: ReviewState = "all",
    cursor: str | None = None, limit: Limit = 50,
) -> MissPage:
    """Bot replies that missed, newest first: by date, prompt version, reason and review state."""
    rows, next_cursor = await to_thread.run_sync(lambda: runtime.inbox.misses(
        since=since, until=until, prompt_version=prompt_version, reason=reason, review=review, cursor=cursor,
        limit=limit))
    return MissPage(items=[
        MissItem(message_id=r.reply.id, conversation_id=r.reply.conversation_id, question=r.question,
                 reply=r.reply.content, reasons=(r.reply.miss_reasons or "").split(","),
                 review=r.reply.review, corrected=r.corrected,
                 prompt_version=f"{r.reply.prompt_name}@{r.reply.prompt_version}" if r.reply.prompt_name else None,
                 created_at=r.reply.created_at)
        for r in rows
    ], next_cursor=next_cursor)


@router.post("/messages/{message_id}/correction", status_code=201, response_model=CorrectionPublic,
             responses=REVIEW_ERRORS)
async def correct(
    message_id: MessageId, body: CorrectionCreate, runtime: RuntimeDep, who: Correcting
) -> CorrectionPublic:
    """Write the answer a bot reply should have given (becomes training data)."""
    correction = await to_thread.run_sync(runtime.review.correct, message_id, body.content.strip(), who.actor)
    return CorrectionPublic.model_validate(correction)


@router.post("/messages/{message_id}/review", response_model=AdminMessage, responses=REVIEW_ERRORS)
async def review_reply(
    message_id: MessageId, body: VerdictCreate, runtime: RuntimeDep, who: Reviewing
) -> AdminMessage:
    """Mark a bot reply `good` (train on it), `flagged` (a miss), or `clear` the verdict."""
    message = await to_thread.run_sync(runtime.review.set_verdict, message_id, body.verdict, who.actor)
    return AdminMessage.model_validate(message)


@router.post("/conversations/{conversation_id}/exclude", responses=REVIEW_ERRORS)
async def exclude(conversation_id: str, body: ExcludeCreate, runtime: RuntimeDep,
                  who: Reviewing) -> dict[str, object]:
    """Keep a conversation out of training data (or let it back in)."""
    conversation = await to_thread.run_sync(runtime.review.exclude, conversation_id, body.excluded, who.actor)
    return {"conversation_id": conversation.id, "exclude_from_training": conversation.exclude_from_training}


@router.get("/prompts", response_model=list[PromptVersionInfo], responses=ADMIN_ERRORS)
async def prompts(runtime: RuntimeDep, _who: Staff) -> list[PromptVersionInfo]:
    """Every prompt version with its labels and, from the log, conversations and rates."""
    return await to_thread.run_sync(prompt_versions, runtime)


def prompt_versions(runtime: RuntimeDep) -> list[PromptVersionInfo]:
    """Versions, labels and figures, for the JSON API and the prompt page."""
    figures = runtime.inbox.prompt_figures()
    labels = runtime.prompts.labels()
    try:
        served = runtime.prompts.resolve(runtime.settings.prompt).ref
    except LookupError:
        served = None
    result = []
    for name, versions in sorted(runtime.prompts.versions().items()):
        for version in sorted(versions.values(), key=lambda v: v.version):
            numbers = figures.get(version.ref, {})
            result.append(PromptVersionInfo(
                ref=version.ref, description=version.description, served=version.ref == served,
                labels=[label for label, target in labels.get(name, {}).items() if target == version.version],
                conversations=int(numbers.get("conversations", 0)), turns=int(numbers.get("turns", 0)),
                miss_rate=numbers.get("miss_rate"), escalation_rate=numbers.get("escalation_rate"),
                thumbs_down_rate=numbers.get("thumbs_down_rate"),
            ))
    return result


@router.get("/prompts/diff", response_model=PromptDiff, responses={**ADMIN_ERRORS, 404: {"model": ErrorBody}})
async def diff(a: str, b: str, runtime: RuntimeDep, _who: Staff, query: str = "") -> PromptDiff:
    """Unified diff between the assembled prompts of two versions."""
    first, _ = _assembled(runtime, a, query)
    second, _ = _assembled(runtime, b, query)
    return PromptDiff(a=first.ref, b=second.ref, diff=prompt_diff(first, second))


@router.get("/prompts/{ref}", response_model=PromptText, responses={**ADMIN_ERRORS, 404: {"model": ErrorBody}})
async def prompt_text(ref: str, runtime: RuntimeDep, _who: Staff, query: str = "") -> PromptText:
    """The assembled system prompt of a version (`support@v2`), as a turn would send it."""
    rendered, how = _assembled(runtime, ref, query)
    return PromptText(ref=rendered.ref, sha256=rendered.sha256, estimated_tokens=estimate_tokens(rendered.text),
                      knowledge=how, text=rendered.text)


def _assembled(runtime: RuntimeDep, ref: str, query: str) -> tuple[RenderedPrompt, str]:
    try:
        return assemble_for_display(runtime.settings, runtime.prompts, runtime.knowledge, ref, query,
                                    canary=runtime.canary)
    except LookupError as error:
        raise NotFound(str(error)) from None


@router.get("/audit", response_model=list[AuditItem], responses=ADMIN_ERRORS)
async def audit_log(runtime: RuntimeDep, _who: Admins, limit: Limit = 50,
                    before: BeforeId = None) -> list[AuditItem]:
    """Admin actions, newest first: who did what, when."""
    rows = await to_thread.run_sync(runtime.review.audit_log, limit, before)
    return [AuditItem.model_validate(row) for row in rows]


@router.get("/export", responses={**REVIEW_ERRORS, 200: {"content": {"application/x-ndjson": {}},
                                                         "description": "JSONL, streamed"}})
async def export(
    runtime: RuntimeDep, who: Reviewing,
    format: Literal["openai-chat", "dpo", "eval-cases"] = "openai-chat",
    select: Literal["corrected", "misses", "all"] = "corrected",
    since: IsoDate = None, until: IsoDate = None, prompt_version: str | None = None,
    redact: bool = True, seed: int = 0, validation_split: Annotated[float, Query(ge=0, lt=1)] = 0.0,
    part: Literal["train", "validation"] = "train", include_policy_handoffs: bool = False,
) -> StreamingResponse:
    """Training data as JSONL, streamed; with `validation_split`, `part` picks one side of the split."""
    options = ExportOptions(format=format, select=select, since=since, until=until, prompt_version=prompt_version,
                            redact=redact, validation_split=validation_split, seed=seed,
                            include_policy_handoffs=include_policy_handoffs)
    exporter = Exporter(runtime.log.sessions, options, action_tools=runtime.actions.current().tools())
    await to_thread.run_sync(lambda: runtime.review.record(who.actor, "export", None, {
        "format": format, "select": select, "redact": redact, "part": part,
        "include_policy_handoffs": include_policy_handoffs}))
    wanted = part == "validation"

    def lines() -> Iterator[str]:
        for line in exporter.lines():
            if line.validation == wanted:
                yield line.text + "\n"

    filename = f"supportbot-{format}-{select}{'-validation' if wanted else ''}.jsonl"
    return StreamingResponse(lines(), media_type="application/x-ndjson",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/report", responses=ADMIN_ERRORS)
async def report(runtime: RuntimeDep, _who: Staff) -> dict[str, Any]:
    """Figures per prompt version and model, and the recommendation with its reasoning."""
    result = await to_thread.run_sync(build_report, runtime.settings, runtime.log.sessions)
    return result.as_json()


@router.post("/messages/{message_id}/promote", status_code=201, responses={**REVIEW_ERRORS, 409: {"model": ErrorBody}})
async def promote_to_knowledge(message_id: MessageId, runtime: RuntimeDep, who: Admins,
                               body: PromoteCreate | None = None) -> dict[str, object]:
    """Add the bot reply's correction to knowledge/promoted.md as a known issue (for a person to commit)."""
    body = body or PromoteCreate()
    promoted = await to_thread.run_sync(lambda: promote(runtime.log.sessions, runtime.knowledge, message_id, who.actor,
                                                        body.title, body.keywords))
    return {"file": str(promoted.path), "title": promoted.title, "line": promoted.line}

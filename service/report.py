"""`supportbot report`: where prompting stands, from the logged conversations, and what to do next.

Figures per prompt version and model, then a recommendation (keep prompting / ready to try
fine-tuning / not enough data) whose reasoning is printed with the thresholds it used.

A conversation belongs to the prompt version that served it, whatever wrote its individual messages:
fixed texts (handoffs, acknowledgements) and agents' replies are not a model, so a conversation that was
handed over before any model was asked counts under its version's model, never as a model of its own.
The trend the recommendation reads is one miss rate per prompt version, oldest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session, sessionmaker

from .config import Settings
from .experiment_text import read_experiments
from .experiments import ExperimentReport, experiment_reports
from .models import ActionCall, ActionStatus, Conversation, Escalation, Message, Role
from .prompts import PromptRegistry
from .review import has_correction, model_turn_condition

NO_MODEL = "no model asked"  # a version whose conversations were all handed over before any model call
ACTIONS_WINDOW_DAYS = 30  # the action figures cover the same 30 days as `conversations_30d`
# Calls that reached the team's API: the failed share is of these (a refused or unconfirmed call made no request).
MADE = (ActionStatus.OK, ActionStatus.REJECTED, ActionStatus.FAILED)


@dataclass
class VersionFigures:
    prompt_version: str
    model: str
    first_seen: datetime
    conversations: int
    conversations_30d: int
    resolution_rate: float
    replies: int
    misses: int
    miss_rate: float
    escalations: dict[str, int]
    tokens_per_conversation: float
    cost_per_conversation: float
    projected_monthly_cost: float
    corrected_examples: int


@dataclass
class Recommendation:
    verdict: str  # keep_prompting | ready_to_fine_tune | not_enough_data | promote_arm
    headline: str
    reasons: list[str]
    next_steps: list[str] = field(default_factory=list)


@dataclass
class LanguageFigures:
    """Miss and escalation rates of the conversations in one visitor language."""

    language: str  # ISO 639-1, or "unknown" for conversations from before detection
    conversations: int
    escalated: int
    escalation_rate: float
    replies: int
    misses: int
    miss_rate: float


@dataclass
class ActionFigures:
    """One action's calls over the report's window: how many, by status, and how often the team's API failed."""

    action: str
    calls: int
    statuses: dict[str, int]
    made: int  # calls that reached the team's API (ok, rejected, failed)
    failed: int
    failed_share: float  # failed of made (0 when none was made)


@dataclass
class Report:
    versions: list[VersionFigures]
    top_missed_topics: list[tuple[str, int]]
    corrected_examples: int
    estimated_training_tokens: int
    recommendation: Recommendation
    languages: list[LanguageFigures] = field(default_factory=list)
    actions: list[ActionFigures] = field(default_factory=list)
    actions_window_days: int = ACTIONS_WINDOW_DAYS

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for version in data["versions"]:
            version["first_seen"] = version["first_seen"].isoformat()
        return data


def _figures(session: Session, now: datetime) -> list[VersionFigures]:
    model_reply = model_turn_condition()
    per_conversation = (
        select(
            Message.conversation_id.label("cid"),
            func.max(case((model_reply, Message.model_requested))).label("model"),
            func.sum(case((model_reply, 1), else_=0)).label("replies"),
            func.sum(case((and_(model_reply, Message.miss_reasons.is_not(None)), 1), else_=0)).label("misses"),
            func.sum(func.coalesce(Message.tokens_in, 0) + func.coalesce(Message.tokens_out, 0)).label("tokens"),
            func.sum(func.coalesce(Message.cost_usd, 0.0)).label("cost"),
            func.min(Message.created_at).label("first"),
        )
        .where(Message.role == Role.ASSISTANT)
        .group_by(Message.conversation_id)
        .subquery()
    )
    model = func.coalesce(per_conversation.c.model, "")  # "": no model was asked (see _without_modelless_rows)
    resolved = and_(Conversation.escalated_ever.is_(False), Conversation.thumbs_down == 0)
    rows = session.execute(
        select(
            Conversation.prompt_version, model, func.min(per_conversation.c.first), func.count(),
            func.sum(case((Conversation.created_at >= now - timedelta(days=30), 1), else_=0)),
            func.sum(case((resolved, 1), else_=0)), func.sum(per_conversation.c.replies),
            func.sum(per_conversation.c.misses), func.sum(per_conversation.c.tokens),
            func.sum(per_conversation.c.cost),
        )
        .join(per_conversation, per_conversation.c.cid == Conversation.id)
        .where(Conversation.prompt_version.is_not(None))
        .group_by(Conversation.prompt_version, model)
    ).all()
    escalations: dict[tuple[str, str], dict[str, int]] = {}
    for ref, name, reason, count in session.execute(
        select(Conversation.prompt_version, model, Escalation.reason, func.count())
        .join(Conversation, Conversation.id == Escalation.conversation_id)
        .join(per_conversation, per_conversation.c.cid == Conversation.id)
        .group_by(Conversation.prompt_version, model, Escalation.reason)
    ):
        escalations.setdefault((ref, name), {})[reason] = count
    corrected = {(ref, name): count for ref, name, count in session.execute(
        select(Conversation.prompt_version, model, func.count())
        .select_from(Message)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(per_conversation, per_conversation.c.cid == Conversation.id)
        .where(model_reply, has_correction(), Conversation.exclude_from_training.is_(False))
        .group_by(Conversation.prompt_version, model)
    )}
    totals: dict[tuple[str, str], _Totals] = {}
    for ref, name, first, conversations, *sums in rows:
        # PostgreSQL returns SUM() as Decimal: plain numbers from here on.
        recent, resolved_count, replies, misses, tokens = (int(v or 0) for v in sums[:5])
        totals[(ref, name)] = _Totals(first, conversations, recent, resolved_count, replies, misses, tokens,
                                      float(sums[5] or 0.0), escalations.get((ref, name), {}),
                                      corrected.get((ref, name), 0))
    return sorted((t.figures(ref, name) for (ref, name), t in _without_modelless_rows(totals).items()),
                  key=lambda f: f.first_seen)


@dataclass
class _Totals:
    """The sums behind one report row, before they become rates."""

    first_seen: datetime
    conversations: int
    recent: int
    resolved: int
    replies: int
    misses: int
    tokens: int
    cost: float
    escalations: dict[str, int]
    corrected: int

    def add(self, other: _Totals) -> None:
        """Count `other`'s conversations in this row too."""
        self.first_seen = min(self.first_seen, other.first_seen)
        for name in ("conversations", "recent", "resolved", "replies", "misses", "tokens", "cost", "corrected"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, count in other.escalations.items():
            self.escalations[reason] = self.escalations.get(reason, 0) + count

    def figures(self, ref: str, model: str) -> VersionFigures:
        """The row as the report shows it."""
        cost_per = self.cost / self.conversations
        return VersionFigures(
            prompt_version=ref, model=model, first_seen=self.first_seen, conversations=self.conversations,
            conversations_30d=self.recent, resolution_rate=self.resolved / self.conversations,
            replies=self.replies, misses=self.misses, miss_rate=self.misses / self.replies if self.replies else 0.0,
            escalations=self.escalations, tokens_per_conversation=self.tokens / self.conversations,
            cost_per_conversation=cost_per, projected_monthly_cost=cost_per * self.recent,
            corrected_examples=self.corrected,
        )


def _without_modelless_rows(totals: dict[tuple[str, str], _Totals]) -> dict[tuple[str, str], _Totals]:
    """Conversations no model was asked in join their version's busiest model (they were served by it)."""
    kept = {key: row for key, row in totals.items() if key[1]}
    for (ref, _), extra in ((key, row) for key, row in totals.items() if not key[1]):
        same = [key for key in kept if key[0] == ref]
        if same:
            kept[max(same, key=lambda key: kept[key].conversations)].add(extra)
        else:
            kept[(ref, NO_MODEL)] = extra
    return kept


@dataclass(frozen=True)
class VersionTrend:
    """One prompt version's miss rate over all its models: a point of the trend the recommendation reads."""

    prompt_version: str
    replies: int
    misses: int

    @property
    def miss_rate(self) -> float:
        return self.misses / self.replies


def miss_trend(versions: list[VersionFigures]) -> list[VersionTrend]:
    """One point per prompt version with answered turns, oldest first (rows are sorted by first seen)."""
    totals: dict[str, list[int]] = {}
    for row in versions:
        slot = totals.setdefault(row.prompt_version, [0, 0])
        slot[0] += row.replies
        slot[1] += row.misses
    return [VersionTrend(ref, replies, misses) for ref, (replies, misses) in totals.items() if replies]


def _language_figures(session: Session) -> list[LanguageFigures]:
    """Per visitor language: conversations escalated, and model replies that missed; busiest first."""
    language = func.coalesce(Conversation.language, "unknown")
    conversations = session.execute(
        select(language, func.count(), func.sum(case((Conversation.escalated_ever.is_(True), 1), else_=0)))
        .where(Conversation.user_turns > 0).group_by(language)).all()
    replies = {code: (int(count), int(misses or 0)) for code, count, misses in session.execute(
        select(language, func.count(), func.sum(case((Message.miss_reasons.is_not(None), 1), else_=0)))
        .select_from(Message).join(Conversation, Conversation.id == Message.conversation_id)
        .where(model_turn_condition()).group_by(language))}
    rows = []
    for code, count, escalated in conversations:
        answered, missed = replies.get(code, (0, 0))
        rows.append(LanguageFigures(str(code), int(count), int(escalated or 0), int(escalated or 0) / int(count),
                                    answered, missed, missed / answered if answered else 0.0))
    return sorted(rows, key=lambda row: (-row.conversations, row.language))


def _action_figures(session: Session, now: datetime) -> list[ActionFigures]:
    """Per action, its calls of the last ACTIONS_WINDOW_DAYS by status; busiest first."""
    counts: dict[str, dict[str, int]] = {}
    for action, status, count in session.execute(
            select(ActionCall.action, ActionCall.status, func.count())
            .where(ActionCall.created_at >= now - timedelta(days=ACTIONS_WINDOW_DAYS))
            .group_by(ActionCall.action, ActionCall.status)):
        counts.setdefault(str(action), {})[str(status)] = int(count)
    rows = []
    for action, statuses in counts.items():
        made = sum(statuses.get(status, 0) for status in MADE)
        failed = statuses.get(ActionStatus.FAILED, 0)
        rows.append(ActionFigures(action, sum(statuses.values()), dict(sorted(statuses.items())), made, failed,
                                  failed / made if made else 0.0))
    return sorted(rows, key=lambda row: (-row.calls, row.action))


def _missed_topics(session: Session, limit: int = 5) -> list[tuple[str, int]]:
    rows = session.execute(
        select(Message.known_issue, func.count())
        .where(Message.miss_reasons.is_not(None), Message.known_issue.is_not(None))
        .group_by(Message.known_issue).order_by(func.count().desc(), Message.known_issue).limit(limit))
    return [(str(topic), int(count)) for topic, count in rows]


def recommend(settings: Settings, versions: list[VersionFigures], topics: list[tuple[str, int]],
              corrected: int, training_tokens: int,
              experiments: Sequence[ExperimentReport] = ()) -> Recommendation:
    """The verdict: what live experiments show when one runs, else the history of versions; reasons spelled out."""
    history = _from_history(settings, versions, topics, corrected, training_tokens)
    reading = read_experiments(experiments)
    if reading is None:
        return history
    # Arms serving the same weeks are the stronger evidence; the history stays as context.
    return Recommendation(reading.verdict, reading.headline, [
        *reading.reasons, f"from the history of prompt versions: {history.headline.lower()}", *history.reasons],
        reading.next_steps + (history.next_steps if reading.verdict == "not_enough_data" else []))


def _from_history(settings: Settings, versions: list[VersionFigures], topics: list[tuple[str, int]],
                  corrected: int, training_tokens: int) -> Recommendation:
    """The verdict from the history of versions, by thresholds in the settings."""
    if not versions:
        return Recommendation("not_enough_data", "Not enough data yet",
                              ["no conversations have been logged with a prompt version"],
                              ["put the widget live, or replay cases with `supportbot eval`"])
    trend = miss_trend(versions)
    rates = [point.miss_rate for point in trend]
    monthly = sum(v.conversations_30d for v in versions)
    total_misses = sum(v.misses for v in versions)
    tolerance = settings.report_flat_tolerance
    reasons = ["miss rate by prompt version, oldest first: "
               + (", ".join(f"{p.prompt_version} {p.miss_rate:.1%} ({p.misses} of {p.replies} answered turns)"
                            for p in trend) or "no turn has been answered by a model yet")]
    unanswered = sorted({v.prompt_version for v in versions} - {p.prompt_version for p in trend})
    if unanswered:
        reasons.append(f"no miss rate for {', '.join(unanswered)}: every conversation there was handed over "
                       "before a model was asked")
    if len(rates) >= 2 and rates[-1] < rates[-2] - tolerance:
        reasons.append(f"misses are falling: {trend[-2].prompt_version} {rates[-2]:.1%} -> "
                       f"{trend[-1].prompt_version} {rates[-1]:.1%} (more than the {tolerance:.0%} "
                       "tolerance), so the last prompt change helped")
        return Recommendation("keep_prompting", "Keep prompting", reasons,
                              ["keep iterating on the prompt and knowledge; compare versions with `supportbot eval`"])
    top = topics[:3]
    share = sum(count for _, count in top) / total_misses if total_misses else 0.0
    if total_misses >= settings.report_min_misses and share >= settings.report_concentration:
        names = ", ".join(f"{topic} ({count})" for topic, count in top)
        reasons.append(f"{share:.0%} of {total_misses} misses are on three known issues: {names} "
                       f"(threshold {settings.report_concentration:.0%})")
        return Recommendation("keep_prompting", "Keep prompting: fix these topics in the knowledge base", reasons,
                              [f"rewrite or add the known issues for {', '.join(t for t, _ in top)}",
                               "promote corrections from the review page into knowledge/"])
    window = rates[-settings.report_flat_versions:]
    flat = len(window) >= settings.report_flat_versions and max(window) - min(window) <= tolerance
    missing = []
    if flat:
        reasons.append(f"the miss rate has been flat over the last {len(window)} versions "
                       f"({min(window):.1%}-{max(window):.1%}, tolerance {tolerance:.0%})")
    else:
        missing.append(f"{settings.report_flat_versions} prompt versions with a flat miss rate "
                       f"(have {len(trend)}{'' if len(window) < settings.report_flat_versions else ', not flat'})")
    if monthly < settings.report_min_monthly_conversations:
        missing.append(f"{settings.report_min_monthly_conversations - monthly} more conversations in 30 days "
                       f"(have {monthly}, need {settings.report_min_monthly_conversations})")
    if corrected < settings.report_min_corrected:
        missing.append(f"{settings.report_min_corrected - corrected} more corrected examples "
                       f"(have {corrected}, need {settings.report_min_corrected})")
    if missing:
        return Recommendation("not_enough_data", "Not enough data to decide on fine-tuning", reasons + [
            "still needed: " + "; ".join(missing)], ["review misses and write corrections in /admin"])
    reasons.append(f"{monthly} conversations in the last 30 days and {corrected} corrected examples")
    return Recommendation("ready_to_fine_tune", "Ready to try fine-tuning", reasons,
                          _fine_tune_steps(settings, versions, training_tokens))


def _fine_tune_steps(settings: Settings, versions: list[VersionFigures], training_tokens: int) -> list[str]:
    latest = versions[-1]
    training_cost = training_tokens * settings.fine_tune_epochs * settings.fine_tune_training_price / 1e6
    steps = [
        f"supportbot export --format openai-chat --select misses --prompt-version {latest.prompt_version} "
        "--validation-split 0.1 --out train.jsonl",
        f"estimated training tokens: {training_tokens:,} x {settings.fine_tune_epochs} epochs = "
        f"${training_cost:.2f} at ${settings.fine_tune_training_price}/1M",
    ]
    current = settings.price_per_token(latest.model)
    tuned = settings.price_per_token(settings.fine_tune_model)
    if current and tuned and latest.cost_per_conversation:
        ratio = (tuned[0] + tuned[1]) / (current[0] + current[1])
        projected = latest.projected_monthly_cost * ratio
        change = projected - latest.projected_monthly_cost
        steps.append(f"projected monthly serving cost on {settings.fine_tune_model}: ${projected:.2f} "
                     f"({'+' if change >= 0 else '-'}${abs(change):.2f} vs ${latest.projected_monthly_cost:.2f} now, "
                     "same token counts; a fine-tuned model may also allow a shorter prompt)")
    steps.append("then compare: supportbot eval cases.jsonl --prompt "
                 f"{latest.prompt_version} --model {latest.model} --model ft:...")
    return steps


def build_report(settings: Settings, sessions: sessionmaker[Session], training_tokens: int | None = None,
                 now: datetime | None = None, prompts: PromptRegistry | None = None) -> Report:
    """All figures and the recommendation, which reads the live experiments of `prompts` (default: the
    prompts directory's); `training_tokens` defaults to an estimate from corrections."""
    now = now or datetime.now(UTC)
    experiments = experiment_reports(sessions, prompts or PromptRegistry(settings.prompts_dir, interval=0), now=now)
    with sessions() as session:
        versions = _figures(session, now)
        topics = _missed_topics(session)
        languages = _language_figures(session)
        actions = _action_figures(session, now)
    corrected = sum(v.corrected_examples for v in versions)
    if training_tokens is None:
        from .actions.files import ActionFiles
        from .export import Exporter, ExportOptions

        tools = ActionFiles(settings.actions_dir, interval=0).current().tools()
        exporter = Exporter(sessions, ExportOptions(select="corrected"), action_tools=tools)
        for _ in exporter.lines():
            pass
        training_tokens = exporter.summary.estimated_tokens
    return Report(versions, topics, corrected, training_tokens,
                  recommend(settings, versions, topics, corrected, training_tokens, experiments), languages, actions)


def format_report(report: Report) -> str:
    """The report as text for a terminal."""
    lines = [f"{'prompt version':<20} {'model':<22} {'conv':>6} {'30d':>6} {'resolved':>9} {'miss':>6} "
             f"{'tokens/conv':>11} {'$/conv':>8} {'$/month':>9} {'corrected':>9}"]
    for v in report.versions:
        lines.append(f"{v.prompt_version:<20} {v.model[:22]:<22} {v.conversations:>6} {v.conversations_30d:>6} "
                     f"{v.resolution_rate:>9.1%} {v.miss_rate:>6.1%} {v.tokens_per_conversation:>11.0f} "
                     f"{v.cost_per_conversation:>8.4f} {v.projected_monthly_cost:>9.2f} {v.corrected_examples:>9}")
        if v.escalations:
            lines.append("    escalations: " + ", ".join(f"{k} {n}" for k, n in sorted(v.escalations.items())))
    if len(report.languages) > 1:
        lines.append("by visitor language: " + ", ".join(
            f"{row.language} {row.conversations} conv, escalated {row.escalation_rate:.1%}, "
            f"miss {row.miss_rate:.1%} ({row.misses} of {row.replies})" for row in report.languages))
    if report.actions:
        lines.append(f"action calls, last {report.actions_window_days} days:")
        lines += [f"    {row.action}: {row.calls} ("
                  + ", ".join(f"{status} {count}" for status, count in row.statuses.items())
                  + f"); failed {row.failed_share:.1%} of {row.made} made" for row in report.actions]
    if report.top_missed_topics:
        lines.append("known issues most involved in misses: "
                     + ", ".join(f"{t} ({n})" for t, n in report.top_missed_topics))
    rec = report.recommendation
    lines += ["", f"Recommendation: {rec.headline}", *[f"  - {r}" for r in rec.reasons]]
    if rec.next_steps:
        lines += ["Next:", *[f"  {s}" for s in rec.next_steps]]
    return "\n".join(lines)


def weekly_rates(sessions: sessionmaker[Session], weeks: int = 12,
                 now: datetime | None = None) -> dict[str, list[tuple[datetime, float, float]]]:
    """Per prompt version and week (Monday, UTC): miss rate and escalation rate of its replies."""
    now = now or datetime.now(UTC)
    since = now - timedelta(weeks=weeks)
    day = func.date(Message.created_at)
    escalated = Message.miss_reasons.like("%escalated%")
    with sessions() as session:
        rows = session.execute(
            select(Message.prompt_name, Message.prompt_version, day, func.count(),
                   func.sum(case((Message.miss_reasons.is_not(None), 1), else_=0)),
                   func.sum(case((escalated, 1), else_=0)))
            .where(model_turn_condition(), Message.created_at >= since)
            .group_by(Message.prompt_name, Message.prompt_version, day)
        ).all()
    buckets: dict[str, dict[datetime, list[int]]] = {}
    for name, version, when, replies, misses, escalations in rows:
        stamp = when if isinstance(when, datetime) else datetime.fromisoformat(str(when))
        week = (stamp - timedelta(days=stamp.weekday())).replace(tzinfo=UTC, hour=0, minute=0, second=0,
                                                                 microsecond=0)
        slot = buckets.setdefault(f"{name}@{version}", {}).setdefault(week, [0, 0, 0])
        slot[0] += int(replies)
        slot[1] += int(misses or 0)
        slot[2] += int(escalations or 0)
    return {ref: [(week, m / n, e / n) for week, (n, m, e) in sorted(weeks_.items())]
            for ref, weeks_ in sorted(buckets.items())}

"""The parts a running service is made of, built once per process from the settings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import anyio

from .actions.caller import ActionCaller
from .actions.files import ActionFiles
from .auth import VisitorTokens
from .config import Settings, admin_token, secret_key, webhook_secret
from .db import DatabaseThreads, create_db_engine, make_session_factory
from .events import EventBus, event_bus
from .experiment_guard import ArmStops, ExperimentGuard
from .fixed_texts import FixedTexts
from .guard import make_canary
from .handoff import HandoffDesk
from .imports.schedule import ScheduledSync
from .imports.storing import ImportedKnowledge
from .imports.syncing import KnowledgeImports, fetch_limits
from .inbox import Inbox
from .interrupted import INTERRUPTED, InterruptedTurns
from .knowledge import KnowledgeStore
from .language import LanguageDetection
from .languages import LanguageStore
from .models import utcnow
from .outbox import HandoffNotice, Outbox
from .people import People
from .policies import PolicyStore
from .prompts import PromptRegistry
from .providers.base import Provider
from .providers.offline import OfflineProvider
from .providers.openai_compat import OpenAIProvider
from .providers.resilient import CircuitBreaker, ResilientProvider
from .ratelimit import RateLimits
from .retrieval import RetrievalMode, Retriever, retriever_for, searcher
from .review import ReviewDesk
from .spelling import is_english_word
from .store import ConversationLog
from .webhooks import WebhookSender

log = logging.getLogger(__name__)


def hosted_provider(settings: Settings) -> ResilientProvider:
    """The hosted model with its time budget, circuit breaker and (when configured) fallback model."""
    primary = OpenAIProvider(api_key=settings.openai_api_key, base_url=settings.openai_base_url,
                             timeout=settings.openai_timeout, max_retries=settings.openai_max_retries)
    fallback = None
    if settings.fallback_model or settings.fallback_openai_base_url:
        # The fallback gets no retries of its own: one retry layer in all, bounded attempts per turn.
        fallback = OpenAIProvider(api_key=settings.fallback_openai_api_key or settings.openai_api_key,
                                  base_url=settings.fallback_openai_base_url or settings.openai_base_url,
                                  timeout=settings.openai_timeout, max_retries=0, target="fallback")
    breaker = CircuitBreaker(settings.circuit_failure_threshold, settings.circuit_cooldown)
    return ResilientProvider(primary, breaker, settings.turn_timeout, fallback, settings.fallback_model)


@dataclass
class Runtime:
    """Settings, database, prompt files, knowledge and model providers of one process.

    Holds no conversation state: everything about a conversation lives in the database.
    """

    settings: Settings
    log: ConversationLog
    prompts: PromptRegistry
    knowledge: KnowledgeStore
    retriever: Retriever
    provider: Provider
    offline: OfflineProvider
    tokens: VisitorTokens
    policies: PolicyStore
    languages: LanguageStore
    detection: LanguageDetection
    texts: FixedTexts
    handoff: HandoffDesk
    outbox: Outbox
    admin_token: str
    review: ReviewDesk
    people: People
    events: EventBus
    inbox: Inbox
    limits: RateLimits
    canary: str
    db_threads: DatabaseThreads
    arm_stops: ArmStops
    actions: ActionFiles  # the team's action files (SUPPORTBOT_ACTIONS_DIR), offered to the model as tools
    action_caller: ActionCaller  # calls them: the only way a turn reaches the team's APIs

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        """Wire the parts together; the hosted model is used only when an API key is configured."""
        engine = create_db_engine(settings.resolved_database_url)
        sessions = make_session_factory(engine)
        knowledge = KnowledgeStore(settings.knowledge_dir, interval=settings.reload_interval,
                                   imported=ImportedKnowledge(sessions, interval=settings.reload_interval))
        retriever = retriever_for(settings, sessions)
        policies = PolicyStore(settings.knowledge_dir, interval=settings.reload_interval)
        languages = LanguageStore(settings.knowledge_dir, interval=settings.reload_interval,
                                  policy_names=lambda: {rule.name for rule in policies.rules()})
        texts = FixedTexts.from_settings(settings, languages.text)
        offline = OfflineProvider(searcher(retriever, knowledge.current), min_score=settings.offline_min_score,
                                  knowledge_language=settings.knowledge_language, texts=texts.get)
        provider: Provider = offline
        if settings.hosted_model_configured:
            provider = hosted_provider(settings)
        notice = HandoffNotice(enabled=bool(settings.handoff_webhook_url), public_url=settings.public_url,
                               auto_assign=settings.auto_assign,
                               slack_channel=settings.slack_channel if settings.slack_bot_token else None)
        return cls(
            settings=settings,
            log=ConversationLog(engine, sessions, notice),
            prompts=PromptRegistry(settings.prompts_dir, interval=settings.reload_interval),
            knowledge=knowledge,
            retriever=retriever,
            provider=provider,
            offline=offline,
            tokens=VisitorTokens(secret_key(settings), settings.token_max_age_days * 86400),
            policies=policies,
            languages=languages,
            detection=LanguageDetection(settings.languages, fast=settings.language_detection == "fast"),
            texts=texts,
            handoff=HandoffDesk(sessions, notice),
            outbox=Outbox(sessions),
            admin_token=admin_token(settings),
            review=ReviewDesk(sessions),
            people=People(sessions),
            events=event_bus(settings, engine.url.render_as_string(hide_password=False)),
            inbox=Inbox(sessions),
            limits=RateLimits(settings),
            canary=make_canary(secret_key(settings)),
            db_threads=DatabaseThreads.for_engine(engine, settings.db_threads),
            arm_stops=ArmStops(sessions, settings.experiment_stop_refresh),
            actions=ActionFiles(settings.actions_dir, interval=settings.reload_interval),
            action_caller=ActionCaller(max_argument_chars=settings.actions_max_argument_chars),
        )

    def webhook_sender(self, clock: Callable[[], datetime] = utcnow) -> WebhookSender | None:
        """The handoff webhook sender, when a webhook URL is configured."""
        settings = self.settings
        if not settings.handoff_webhook_url:
            return None
        return WebhookSender(self.outbox, settings.handoff_webhook_url, webhook_secret(settings),
                             timeout=settings.webhook_timeout, max_attempts=settings.webhook_max_attempts,
                             clock=clock)

    def knowledge_sync(self) -> ScheduledSync | None:
        """The periodic sync of imported knowledge sources, when SUPPORTBOT_KNOWLEDGE_SYNC_INTERVAL is set."""
        interval = self.settings.knowledge_sync_interval
        if not interval:
            return None
        return ScheduledSync(KnowledgeImports(self.log.sessions, fetch_limits(self.settings)), interval)

    def experiment_guard(self) -> ExperimentGuard | None:
        """The guard that stops clearly worse experiment arms, unless SUPPORTBOT_EXPERIMENT_GUARD is off."""
        settings = self.settings
        if not settings.experiment_guard:
            return None
        return ExperimentGuard(self.log.sessions, self.prompts, self.arm_stops, alpha=settings.experiment_guard_alpha,
                               min_conversations=settings.experiment_guard_min_conversations)

    def interrupted_turns(self) -> InterruptedTurns | None:
        """The sweep that marks turns whose process died before replying, unless it is off."""
        after = self.settings.interrupted_turn_seconds
        if not after:
            return None
        texts = self.texts
        return InterruptedTurns(self.log.sessions, self.log.notice,
                                lambda language: texts.get(INTERRUPTED, language), after)

    @property
    def model(self) -> str:
        """The model name requests are sent with (`offline` when no hosted model is configured)."""
        return self.settings.model if self.provider is not self.offline else OfflineProvider.model

    def describe(self) -> str:
        """One line for the start-up log: provider, prompt, database and knowledge in use."""
        url = self.log.engine.url.render_as_string(hide_password=True)
        base = self.knowledge.current()
        provider = (
            f"provider=openai model={self.settings.model} base_url={self.settings.openai_base_url or 'default'}"
            if self.provider is not self.offline
            else "provider=offline (no API key set: answering from the knowledge base)"
        )
        admin = "SUPPORTBOT_ADMIN_TOKEN" if self.settings.admin_token else \
            f"generated, in {(self.settings.data_dir / 'admin_token').resolve()}"
        webhook = "on" if self.settings.handoff_webhook_url else "off"
        actions = self.actions.current()
        broken = f", {len(actions.errors)} with errors: run supportbot actions check" if actions.errors else ""
        return (
            f"{provider} prompt={self.settings.prompt} database={url} "
            f"knowledge={self.settings.knowledge_dir} ({len(base.issues)} known issues) "
            f"actions={self.settings.actions_dir} ({len(actions.by_name)}{broken}) "
            f"admin_token={admin} handoff_webhook={webhook} live_events={self.events.name}"
        )

    async def warm_up(self) -> None:
        """Load what the first turns would otherwise wait for: word list, language models, knowledge vectors."""
        await anyio.to_thread.run_sync(is_english_word, "support")
        await anyio.to_thread.run_sync(self.detection.warm)
        if self.retriever.mode is not RetrievalMode.HYBRID:
            return
        try:
            await self.retriever.index(self.knowledge.current())
        except Exception as error:  # a turn retries it, and falls back to BM25 if it fails again
            log.warning("could not index the knowledge at start-up (%s); the first turn will try again", error)

    async def aclose(self) -> None:
        """Release connections."""
        if isinstance(self.provider, ResilientProvider):
            await self.provider.aclose()
        await self.events.aclose()
        await self.action_caller.aclose()
        self.db_threads.shutdown()
        self.log.engine.dispose()

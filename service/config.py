"""Settings: one pydantic-settings class, read from the environment (prefix SUPPORTBOT_) and `.env`."""

from __future__ import annotations

import json
import os
import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The source checkout, for the tests and tools that live in it. Nothing the service runs reads from it:
# an installed package's parent is site-packages.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Prices in USD per 1,000,000 tokens, (input, output). Public list prices when written;
# override with SUPPORTBOT_MODEL_PRICES for your contract or another provider.
DEFAULT_MODEL_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "ft:gpt-4o-mini": (0.30, 1.20),
    "offline": (0.0, 0.0),
}

LOCAL_EMBEDDING_MODEL = "wordllama-l2-supercat-256"  # service.embeddings.LOCAL_MODEL, without importing it


class Settings(BaseSettings):
    """Every knob of the service; each has a default that works on a laptop."""

    model_config = SettingsConfigDict(
        env_prefix="SUPPORTBOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Path("data")
    database_url: str = ""
    # The working directory's, where `supportbot init` writes them (and where a checkout has them);
    # absolute, so logs and `prompt check` name the exact files.
    prompts_dir: Path = Field(default_factory=lambda: Path.cwd() / "prompts")
    knowledge_dir: Path = Field(default_factory=lambda: Path.cwd() / "knowledge")
    # Actions (service/actions/): one YAML file per call the bot may make to the team's own APIs.
    actions_dir: Path = Field(default_factory=lambda: Path.cwd() / "actions")
    actions_max_calls: int = Field(default=3, ge=0, le=20, description="action calls per turn before it must answer")
    actions_max_argument_chars: int = Field(default=500, ge=1,
                                            description="the longest string argument an action takes")
    prompt: str = "support@production"

    openai_base_url: str | None = None
    openai_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("SUPPORTBOT_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    model: str = "gpt-4o-mini"
    openai_timeout: float = Field(default=30.0, gt=0, description="seconds per upstream attempt")
    openai_max_retries: int = Field(default=1, ge=0, le=3)
    max_tokens: int = Field(default=512, ge=1)
    turn_timeout: float = Field(default=60.0, gt=0, description="seconds a turn may wait on the model in all")
    circuit_failure_threshold: int = Field(default=5, ge=1, description="consecutive failures that open it")
    circuit_cooldown: float = Field(default=30.0, gt=0, description="seconds the model is skipped")
    fallback_model: str | None = None
    fallback_openai_base_url: str | None = None
    fallback_openai_api_key: str | None = None
    model_prices: dict[str, tuple[float, float]] = Field(default_factory=lambda: dict(DEFAULT_MODEL_PRICES))

    company_name: str = "Acme"
    product_name: str = "Analytics"

    admin_token: str | None = None
    secret_key: str | None = None
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    identity_secret: str | None = Field(
        default=None, description="HMAC key for the widget's user_hash (identity verification); unset = off"
    )
    token_max_age_days: int = Field(default=30, ge=1)

    rate_limit_per_visitor: str = Field(default="20/minute", description="messages per conversation; 0 = off")
    rate_limit_per_ip: str = Field(default="600/minute", description="API requests per client IP; 0 = off")
    rate_limit_conversations_per_ip: str = Field(default="30/minute",
                                                 description="conversations started per client IP; 0 = off")
    rate_limit_storage: str = Field(default="memory://", description="redis://host:6379/0 to share across replicas")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="proxies whose X-Forwarded-For is believed (IPs or CIDRs)"
    )

    max_message_chars: int = Field(default=4000, ge=1)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    max_metadata_bytes: int = Field(default=4096, ge=256, description="a conversation's visitor metadata, as JSON")
    max_turns: int = Field(default=100, ge=1, description="user messages per conversation")
    history_max_messages: int = Field(default=20, ge=1)
    db_threads: int = Field(default=0, ge=0, description="worker threads for a turn's database calls; "
                            "0 = 2 on SQLite, 4 on PostgreSQL")
    history_max_chars: int = Field(default=16000, ge=100)

    knowledge_inline_max_chars: int = Field(
        default=12000, ge=0, description="knowledge bases larger than this are retrieved top-k"
    )
    knowledge_top_k: int = Field(default=8, ge=1)
    offline_min_score: float = Field(default=0.35, ge=0, le=1, description="match (0-1) an entry needs to be "
                                     "answered offline or cited; the same on any size of knowledge")
    retrieval: Literal["bm25", "hybrid"] = Field(default="hybrid", description="how known issues are found: "
                                                 "BM25 alone, or fused with embeddings")
    # The model whose weights ship inside the `wordllama` wheel (service/embeddings/_local.py): no key, no network.
    embedding_model: str = Field(default=LOCAL_EMBEDDING_MODEL, description="any other name is asked of the "
                                 "OpenAI-compatible /v1/embeddings endpoint")
    embedding_base_url: str | None = Field(default=None, description="unset = SUPPORTBOT_OPENAI_BASE_URL")
    embedding_api_key: str | None = Field(default=None, description="unset = SUPPORTBOT_OPENAI_API_KEY")
    reload_interval: float = Field(default=1.0, ge=0, description="seconds between file change checks")
    # Languages visitors are expected to write in (ISO 639-1): detection is limited to them, and the
    # escalation rules of each (knowledge/languages/<code>.yaml) run on every message.
    languages: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["en", "de", "es", "fr", "pt", "it", "nl"])
    knowledge_sync_interval: float = Field(default=0, ge=0, description="seconds between syncs of imported "
                                           "knowledge sources by the service; 0 = off")
    knowledge_import_max_pages: int = Field(default=200, ge=1, description="pages one web import reads at most")
    knowledge_import_timeout: float = Field(default=10.0, gt=0, description="seconds per request of an import")
    knowledge_import_delay: float = Field(default=0.5, ge=0, description="seconds between requests to a help center")
    knowledge_import_max_page_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, description="bytes per page or file")
    knowledge_import_max_bytes: int = Field(default=200 * 1024 * 1024, ge=1024,
                                            description="bytes one import or sync reads in all")

    model_unavailable_reply: str = (
        "Sorry, I can't answer right now. I've passed your message to our support team, "
        "and a person will get back to you here."
    )
    handoff_reply: str = (
        "I'm handing this conversation to a member of our support team. "
        "They will reply here as soon as they can."
    )

    escalate_after_failures: int = Field(default=2, ge=1, description="'did not help' follow-ups in a row")
    pause_bot_while_escalated: bool = True
    escalated_ack_reply: str = (
        "Thanks, I've added this to your conversation. A member of our support team will reply here."
    )
    handoff_webhook_url: str | None = None
    handoff_webhook_secret: str | None = None
    webhook_timeout: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=12, ge=1)
    outbox_poll_interval: float = Field(default=1.0, gt=0)

    # The support team (service/people.py).
    sign_in_link_minutes: int = Field(default=60, ge=1, description="minutes a one-time sign-in link stays valid")
    auto_assign: bool = Field(default=False, description="give each new handoff to the available agent who was "
                              "given one least recently (round-robin)")
    # Live events for the agents' pages: memory (one replica), postgres (LISTEN/NOTIFY on the database) or
    # redis (pub/sub on SUPPORTBOT_REDIS_URL); auto picks redis when SUPPORTBOT_REDIS_URL is set, else
    # postgres on PostgreSQL, else memory.
    events: Literal["auto", "memory", "postgres", "redis"] = "auto"
    redis_url: str | None = Field(default=None, description="redis://host:6379/0 for live events between replicas")
    # Single sign-on with OpenID Connect: the issuer's URL (its /.well-known/openid-configuration is read).
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_button_label: str = "Sign in with single sign-on"
    # Slack app mode: each handoff opens a thread in the channel; replies there reach the visitor.
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_channel: str | None = None
    slack_api_url: str = Field(default="https://slack.com/api", description="the Slack Web API's base URL")
    public_url: str = "http://127.0.0.1:8000"

    report_flat_versions: int = Field(default=3, ge=2, description="versions whose miss rate must be flat")
    report_flat_tolerance: float = Field(default=0.02, ge=0, description="miss-rate change counted as flat")
    report_min_monthly_conversations: int = Field(default=1000, ge=0)
    report_min_corrected: int = Field(default=100, ge=1, description="corrected examples for a first trial")
    report_concentration: float = Field(default=0.6, gt=0, le=1,
                                        description="share of misses on the top 3 known issues")
    report_min_misses: int = Field(default=20, ge=1, description="misses needed to judge concentration")
    fine_tune_model: str = "ft:gpt-4o-mini"
    fine_tune_training_price: float = Field(default=3.0, ge=0, description="USD per 1M training tokens")
    fine_tune_epochs: int = Field(default=3, ge=1)
    # `supportbot finetune`: the provider speaking the OpenAI files + fine_tuning.jobs protocol (default: the
    # chat model's URL and key), or an operator's script that trains on the file and prints the model name.
    fine_tune_backend: Literal["openai", "command"] = "openai"
    fine_tune_base_url: str | None = None
    fine_tune_api_key: str | None = None
    fine_tune_command: str | None = None
    # Live experiments (service/experiment_guard.py): an arm whose escalation or thumbs-down rate is worse than
    # control's beyond a sequential test's bound (valid however often it looks) is taken out of traffic.
    experiment_guard: bool = Field(default=True, description="stop clearly worse experiment arms automatically")
    experiment_guard_interval: float = Field(default=300.0, gt=0, description="seconds between the guard's looks")
    experiment_guard_alpha: float = Field(default=0.05, gt=0, lt=1, description="chance of stopping an arm that is "
                                          "no worse, over all looks")
    experiment_guard_min_conversations: int = Field(default=200, ge=1, description="conversations each arm needs "
                                                    "before the guard may stop it")
    experiment_stop_refresh: float = Field(default=2.0, ge=0, description="seconds a replica keeps the set of "
                                           "stopped arms before reading it again")

    daily_token_budget: int = Field(default=0, ge=0, description="tokens per UTC day for the deployment; 0 = off")
    daily_cost_budget_usd: float = Field(default=0.0, ge=0, description="USD per UTC day; 0 = off")
    conversation_token_cap: int = Field(default=0, ge=0, description="tokens per conversation; 0 = off")
    budget_reply: str = (
        "Sorry, I can't answer more questions right now. I've passed your conversation to our support team, "
        "and a person will reply here."
    )
    leak_reply: str = "Sorry, I can't help with that. Is there anything about the product I can help you with?"

    max_header_bytes: int = Field(default=64 * 1024, ge=8 * 1024, description="request line and headers; "
                                  "431 past it")
    header_timeout: float = Field(default=10.0, gt=0, description="seconds a client has to send a request's "
                                  "headers; 408 past it")
    keep_alive_timeout: float = Field(default=5.0, gt=0, description="seconds an idle keep-alive connection stays")
    limit_concurrency: int = Field(default=1000, ge=0, description="connections per process before new requests "
                                   "get 503; 0 = off")
    shutdown_grace_seconds: int = Field(default=30, ge=0, description="on SIGTERM, wait this long for "
                                          "streams in flight; then they are stored as partial")

    # Data lifecycle (service/retention.py, service/erasure.py): conversations with no activity for longer than
    # retention_days are deleted or anonymized (text and contact details removed, figures kept); those holding
    # reviewed training examples are kept (PII redacted) until training_retention_days.
    retention_days: int = Field(default=0, ge=0, description="days without activity a conversation is kept; 0 = off")
    retention_mode: Literal["delete", "anonymize"] = "delete"
    training_retention_days: int = Field(default=0, ge=0, description="days conversations with reviewed training "
                                         "examples are kept (redacted); 0 or not above retention_days = no longer")
    retention_interval: float = Field(default=3600.0, gt=0, description="seconds between scheduled purges "
                                      "(one replica runs each, under a lease)")
    # A visitor's message still unanswered this long after it was stored lost its process (service/interrupted.py):
    # it gets a fixed reply and the conversation is handed over. 0 = off.
    interrupted_turn_seconds: float = Field(default=300.0, ge=0, description="seconds after which an unanswered "
                                            "visitor message is marked interrupted and handed over; 0 = off")
    # PII kept out (service/redact.py): Luhn-valid card numbers are never stored in clear unless redact_cards is
    # false; redact_stored adds secrets (and, when asked, e-mails and phone numbers).
    redact_stored: bool = Field(default=False, description="redact secrets and card numbers before a message is "
                                "written")
    redact_stored_emails: bool = Field(default=False, description="with redact_stored, e-mail addresses too")
    redact_stored_phones: bool = Field(default=False, description="with redact_stored, phone numbers too")
    redact_cards: bool = Field(default=True, description="card numbers (Luhn-valid) are stored as [CARD] even "
                               "without redact_stored")
    redact_before_model: bool = Field(default=False, description="send the model the text with personal data "
                                      "replaced by stable placeholders ([EMAIL_1], [CARD_1], ...)")

    log_level: str = "INFO"
    # Seeing it at work (service/telemetry/): log lines as JSON objects, GET /metrics for the admin token or
    # this one, optionally a second metrics port on 127.0.0.1 without a token; tracing is switched on by the
    # standard OTEL_EXPORTER_OTLP_ENDPOINT, and message text goes into spans only when asked.
    log_format: Literal["text", "json"] = "text"
    metrics_token: str | None = Field(default=None, description="a bearer token for GET /metrics only")
    metrics_port: int = Field(default=0, ge=0, le=65535, description="also serve /metrics on 127.0.0.1:PORT "
                              "without a token; 0 = off")
    trace_content: bool = Field(default=False, description="put message text in the model call's span")

    knowledge_language: str = Field(default="en", description="the language the knowledge is written in; the "
                                    "offline provider hands a question in another language over")
    language_detection: Literal["accurate", "fast"] = Field(
        default="accurate", description="lingua's high-accuracy models (~190-250 MB and seconds to load per process, "
        "no confident mistake on the labeled cases) or its low-accuracy ones (~25 MB, under a second; ~6 % of "
        "short messages confidently wrong)")

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.lstrip().startswith("[") else value.split(",")
        if isinstance(value, list):
            return [str(origin).strip().rstrip("/") for origin in value if str(origin).strip()]
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("rate_limit_per_visitor", "rate_limit_per_ip", "rate_limit_conversations_per_ip")
    @classmethod
    def _valid_limit(cls, value: str) -> str:
        from limits import parse_many

        if value.strip() not in {"", "0"}:
            try:
                parse_many(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a rate like '20/minute' (or 0 to switch it off)") from None
        return value

    @field_validator("languages", mode="before")
    @classmethod
    def _split_languages(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list):
            codes = [str(code).strip().lower() for code in value if str(code).strip()]
            bad = [code for code in codes if not re.fullmatch(r"[a-z]{2,3}", code)]
            if bad:
                raise ValueError(f"language codes are ISO 639-1, like en or de: {', '.join(bad)}")
            return codes
        return value

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, value: list[str]) -> list[str]:
        from .language import is_supported

        unknown = [code for code in value if not is_supported(code)]
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not ISO 639-1 language codes (such as en, de, sv)")
        if not value:
            raise ValueError("name at least one language, such as en")
        return list(dict.fromkeys(value))

    @field_validator("knowledge_language")
    @classmethod
    def _knowledge_language(cls, value: str) -> str:
        from .language import is_supported

        code = value.strip().lower()
        if not is_supported(code):
            raise ValueError(f"{value!r} is not an ISO 639-1 language code (such as en)")
        return code

    @field_validator("log_level")
    @classmethod
    def _upper_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return level

    @model_validator(mode="after")
    def _interrupted_after_any_turn(self) -> Settings:
        if 0 < self.interrupted_turn_seconds <= self.turn_timeout:
            raise ValueError(f"SUPPORTBOT_INTERRUPTED_TURN_SECONDS={self.interrupted_turn_seconds:g} must be more "
                             f"than SUPPORTBOT_TURN_TIMEOUT={self.turn_timeout:g}: a turn still running would be "
                             "marked interrupted")
        return self

    @model_validator(mode="after")
    def _embeddings_reachable(self) -> Settings:
        if self.retrieval == "hybrid" and not self.local_embeddings and not (
                self.embedding_api_key or self.openai_api_key or self.embedding_base_url or self.openai_base_url):
            raise ValueError(f"SUPPORTBOT_EMBEDDING_MODEL={self.embedding_model} is asked of an OpenAI-compatible "
                             "endpoint: set SUPPORTBOT_EMBEDDING_API_KEY (or SUPPORTBOT_OPENAI_API_KEY) or "
                             "SUPPORTBOT_EMBEDDING_BASE_URL")
        return self

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'supportbot.db').resolve()}"

    @field_validator("admin_token", "secret_key", "handoff_webhook_secret", "identity_secret", "metrics_token")
    @classmethod
    def _strong_secret(cls, value: str | None) -> str | None:
        if value is not None and len(value.strip()) < 16:
            raise ValueError("must be at least 16 characters (leave unset to have one generated)")
        return value

    @property
    def hosted_model_configured(self) -> bool:
        """True when a hosted model can be called (an API key is set)."""
        return bool(self.openai_api_key)

    @property
    def local_embeddings(self) -> bool:
        """True when embeddings come from the model packaged with supportbot rather than an endpoint."""
        return self.embedding_model == LOCAL_EMBEDDING_MODEL

    def price_per_token(self, model: str) -> tuple[float, float] | None:
        """(input, output) USD per token for a model, matching dated variants by prefix."""
        prices = self.model_prices.get(model)
        if prices is None:
            candidates = [name for name in self.model_prices if model.startswith(name)]
            if not candidates:
                return None
            prices = self.model_prices[max(candidates, key=len)]
        return prices[0] / 1_000_000, prices[1] / 1_000_000


def load_or_create_secret(settings: Settings, name: str, nbytes: int = 32) -> str:
    """Read a generated secret from the data directory, creating it (mode 0600) on first use."""
    path = settings.data_dir / name
    if path.exists():
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
    tmp.write_text(value + "\n", encoding="utf-8")
    tmp.chmod(0o600)
    try:
        # link() refuses to overwrite: when several workers start at once, the first one wins
        os.link(tmp, path)
    except FileExistsError:
        value = path.read_text(encoding="utf-8").strip()
    finally:
        tmp.unlink()
    return value


def secret_key(settings: Settings) -> str:
    """The signing key for visitor tokens: from the environment, else generated into the data dir."""
    return settings.secret_key or load_or_create_secret(settings, "secret_key")


def admin_token(settings: Settings) -> str:
    """The admin bearer token: from the environment, else generated into the data dir (never empty)."""
    return settings.admin_token or load_or_create_secret(settings, "admin_token")


def webhook_secret(settings: Settings) -> str:
    """The HMAC key that signs handoff webhooks: from the environment, else generated into the data dir."""
    return settings.handoff_webhook_secret or load_or_create_secret(settings, "webhook_secret")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, cached so every caller sees one object."""
    return Settings()

"""Phase one of loading: the raw schema of ``modelport.yaml``, strict about unknown keys.

It only checks shapes and ranges. Cross-references (a target naming a provider) and secret
references are resolved in phase two, ``config/load.py``. Nothing here reads the environment.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelport.config.settings import BreakerSettings

_BREAKER = BreakerSettings()  # the defaults, written once

SECRET_REF_HELP = "a secret reference: 'env:NAME' or 'file:PATH'"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


NonEmpty = Annotated[str, Field(min_length=1)]
Environment = Literal["dev", "test", "prod"]
PerMinute = Annotated[int, Field(gt=0, le=1_000_000_000)]
Concurrency = Annotated[int, Field(gt=0, le=1_000_000)]


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


def _check_secret_ref(value: str | None) -> str | None:
    if value is None:
        return None
    kind, sep, rest = value.partition(":")
    if not sep or kind not in ("env", "file") or not rest:
        raise ValueError(f"must be {SECRET_REF_HELP}; secrets are never written inline")
    return value


class RawServer(_Strict):
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = True
    idempotency_ttl_s: float = Field(default=600.0, gt=0, le=7 * 86_400)
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    header_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    body_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    max_connections_per_client: int = Field(default=1000, ge=0, le=1_000_000)
    allowed_hosts: list[NonEmpty] = Field(default_factory=list)


class RawStore(_Strict):
    url: NonEmpty = "sqlite:///./.modelport/modelport.db"
    ledger: bool = True
    batch_size: int = Field(default=100, gt=0, le=10_000)
    flush_interval_s: float = Field(default=0.2, gt=0, le=60)
    max_pending: int = Field(default=100_000, gt=0)
    retry_backoff_s: float = Field(default=1.0, gt=0, le=300)


class RawBatch(_Strict):
    concurrency: int = Field(default=16, gt=0, le=10_000)
    lease_s: float = Field(default=30.0, ge=1, le=3600)
    poll_s: float = Field(default=1.0, gt=0, le=60)
    max_file_bytes: int = Field(default=200 * 1024 * 1024, gt=0, le=16 * 1024 ** 3)
    max_line_bytes: int = Field(default=1024 * 1024, gt=0, le=64 * 1024 * 1024)
    max_lines: int = Field(default=50_000, gt=0, le=10_000_000)
    retention_days: float | None = Field(default=30.0, gt=0, le=36_500)

    @model_validator(mode="after")
    def _renewed_in_time(self) -> RawBatch:
        # leases are renewed on the poll's beat, every third of lease_s at the earliest
        if self.poll_s > self.lease_s / 3:
            raise ValueError("poll_s must be at most a third of lease_s, so that leases "
                             "are renewed before they run out")
        return self


class RawOpenAIProvider(_Strict):
    kind: Literal["openai"]
    base_url: NonEmpty
    api_key: str | None = None
    timeout_s: float = Field(default=600.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=1000, ge=0)
    headers: dict[NonEmpty, str] = Field(default_factory=dict)

    _secret_ref = field_validator("api_key")(_check_secret_ref)
    _base_url = field_validator("base_url")(lambda value: _check_http_url(value).rstrip("/"))


class _RawLocalModel(_Strict):
    """A model file on this machine: a path, or an installed package that carries one."""

    model_path: NonEmpty | None = None
    model_package: NonEmpty | None = None
    threads: int | None = Field(default=None, gt=0, le=1024)
    start_timeout_s: float = Field(default=300.0, gt=0, le=86_400)

    @model_validator(mode="after")
    def _one_source(self) -> _RawLocalModel:
        if (self.model_path is None) == (self.model_package is None):
            raise ValueError("set exactly one of model_path and model_package")
        return self


class RawLlamaCppProvider(_RawLocalModel):
    """A GGUF model run by llama.cpp in a worker process."""

    kind: Literal["llama_cpp"]
    n_ctx: int = Field(default=2048, gt=0, le=1_048_576)
    parallel: int = Field(default=4, gt=0, le=256)
    n_batch: int = Field(default=512, gt=0, le=65_536)
    chat_template: NonEmpty | None = None
    temperature: float = Field(default=1.0, ge=0, le=2)


class RawEmbeddingsProvider(_RawLocalModel):
    """A sentence-embedding model run in a worker process, by llama.cpp (no PyTorch) or by
    sentence-transformers."""

    kind: Literal["embeddings"]
    engine: Literal["llama_cpp", "sentence_transformers"] = "llama_cpp"
    max_batch_size: int = Field(default=64, gt=0, le=100_000)
    max_batch_delay_ms: float = Field(default=0.0, ge=0, le=10_000)
    max_inputs: int = Field(default=2048, gt=0, le=100_000)


RawProvider = Annotated[
    RawOpenAIProvider | RawLlamaCppProvider | RawEmbeddingsProvider,
    Field(discriminator="kind"),
]


class RawBreaker(_Strict):
    failures: int = Field(default=_BREAKER.failures, gt=0, le=10_000)
    window_s: float = Field(default=_BREAKER.window_s, gt=0, le=3600)
    failure_rate: float | None = Field(default=_BREAKER.failure_rate, gt=0, le=1)
    min_requests: int = Field(default=_BREAKER.min_requests, gt=0, le=1_000_000)
    cooldown_s: float = Field(default=_BREAKER.cooldown_s, gt=0, le=3600)
    half_open_probes: int = Field(default=_BREAKER.half_open_probes, gt=0, le=1000)


class RawModel(_Strict):
    """An entry of the model catalogue (``config.catalogue``)."""

    provider: NonEmpty
    model: NonEmpty
    owner: str = ""
    status: Literal["draft", "approved", "deprecated", "retired"] = "draft"
    version: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    context_window: int | None = Field(default=None, gt=0, le=100_000_000)
    input_per_mtok: float = Field(default=0.0, ge=0, le=1_000_000)
    output_per_mtok: float = Field(default=0.0, ge=0, le=1_000_000)
    deprecated_at: datetime | None = None
    retire_at: datetime | None = None
    successor: NonEmpty | None = None

    @field_validator("deprecated_at", "retire_at", mode="before")
    @classmethod
    def _utc(cls, value: object) -> object:
        """A date is its midnight in UTC; a time without a zone is in UTC."""
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        return value

    @field_validator("deprecated_at", "retire_at")
    @classmethod
    def _zoned(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None \
            else value

    @model_validator(mode="after")
    def _dates(self) -> RawModel:
        if self.deprecated_at and self.retire_at and self.retire_at <= self.deprecated_at:
            raise ValueError("retire_at must come after deprecated_at")
        if self.status == "deprecated" and self.deprecated_at is None:
            raise ValueError("a deprecated model needs deprecated_at (the Deprecation "
                             "header carries it)")
        return self


class RawCanarySLO(_Strict):
    """What a canary must keep to over its window, once it has ``min_requests``."""

    max_error_rate: float = Field(default=0.05, ge=0, le=1)
    max_p95_ms: float | None = Field(default=None, gt=0, le=3_600_000)
    min_requests: int = Field(default=20, gt=0, le=1_000_000)


class RawCanary(_Strict):
    """A target that gets ``percent`` of the route's traffic until it proves itself
    (``routing.canary``)."""

    percent: float = Field(gt=0, le=100)
    sticky: Annotated[str, Field(pattern=r"^(key|header [A-Za-z0-9-]{1,64})$")] | None = None
    slo: RawCanarySLO = Field(default_factory=RawCanarySLO)
    window_s: float = Field(default=300.0, gt=0, le=86_400)


class RawTarget(_Strict):
    provider: NonEmpty | None = None  # none: ``model`` is the id of a catalogue model
    model: NonEmpty
    version: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    input_per_mtok: float = Field(default=0.0, ge=0, le=1_000_000)
    output_per_mtok: float = Field(default=0.0, ge=0, le=1_000_000)
    weight: float = Field(default=1.0, ge=0, le=1_000_000)
    context_window: int | None = Field(default=None, gt=0, le=100_000_000)
    max_concurrency: Concurrency | None = None
    max_queue: int = Field(default=0, ge=0, le=1_000_000)
    queue_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    breaker: RawBreaker = Field(default_factory=RawBreaker)
    canary: RawCanary | None = None


FallbackRule = Literal["retry", "fail"]
PolicyRule = Literal["fallback_routes", "fail"]


class RawFallbackRules(_Strict):
    """What to do after each class of failure: try again (another target, or the same one
    after a backoff), or fail at once with the error."""

    timeout: FallbackRule = "retry"
    rate_limited: FallbackRule = "retry"
    server_error: FallbackRule = "retry"
    connection: FallbackRule = "retry"
    auth: FallbackRule = "retry"
    context_length: FallbackRule = "retry"
    content_policy: PolicyRule = "fail"


class RawPromptMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: Annotated[str, Field(min_length=1, max_length=100_000)]


class RawPrompt(_Strict):
    """A route's versioned prompt (``config.prompt``)."""

    version: Annotated[str, Field(min_length=1, max_length=128)]
    variables: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")],
                    str | None] = Field(default_factory=dict)
    messages: list[RawPromptMessage] = Field(min_length=1, max_length=64)


class RawShadow(_Strict):
    """A share of the route's requests copied to another target (``inference.shadow``)."""

    target: RawTarget
    percent: float = Field(gt=0, le=100)
    budget_usd: float = Field(ge=0, le=1_000_000)  # what the shadows may spend a period
    budget_period: Literal["day", "month"] = "day"


class RawTools(_Strict):
    """Which tools (function names) requests may declare and answers may call."""

    allow: list[NonEmpty] | None = None  # None: any name not denied
    deny: list[NonEmpty] = Field(default_factory=list)
    on_denied: Literal["refuse", "strip"] = "refuse"


class RawReviewSample(_Strict):
    """``review: {sample: PERCENT}``: that share of answers is returned and also queued."""

    sample: float = Field(gt=0, le=100)


class RawWebhook(_Strict):
    """Called on each decision of a route's reviews, signed with HMAC-SHA256."""

    url: str
    secret: str

    _secret_ref = field_validator("secret")(_check_secret_ref)
    _url = field_validator("url")(_check_http_url)


class RawOutput(_Strict):
    """A route's output contract: what an answer must be before it is returned."""

    json_schema: dict[str, Any] | None = None
    labels: list[NonEmpty] | None = Field(default=None, min_length=1)
    max_chars: int | None = Field(default=None, gt=0, le=10_000_000)
    regex: NonEmpty | None = None
    repair_attempts: int = Field(default=1, ge=0, le=5)

    @model_validator(mode="after")
    def _something(self) -> RawOutput:
        if (self.json_schema, self.labels, self.max_chars, self.regex) == (None,) * 4:
            raise ValueError("give at least one of json_schema, labels, max_chars, regex")
        return self


class RawDeny(_Strict):
    """Requests a route refuses before any call: 400 ``content_blocked``."""

    regex: list[NonEmpty] = Field(default_factory=list)
    keywords: list[NonEmpty] = Field(default_factory=list)
    max_input_tokens: int | None = Field(default=None, gt=0, le=10_000_000)
    review: bool = False  # also put a refused request in the review queue


class RawGuards(_Strict):
    """A route's input guards: what is masked before the call, and what is refused."""

    mask: list[Literal["email", "phone", "card", "iban", "secret"]] = Field(
        default_factory=list)
    restore: bool = False
    deny: RawDeny = Field(default_factory=RawDeny)


class RawRoute(_Strict):
    description: str = ""
    owner: str = ""
    capture: bool = False
    environment: Environment = "prod"
    rpm: PerMinute | None = None
    tpm: PerMinute | None = None
    max_concurrency: Concurrency | None = None
    strategy: Literal["ordered", "weighted", "least_busy", "fastest"] = "ordered"
    retries: int | None = Field(default=None, ge=0, le=20)
    backoff_s: float = Field(default=0.1, ge=0, le=60)
    backoff_max_s: float = Field(default=2.0, ge=0, le=600)
    retry_after_max_s: float = Field(default=10.0, ge=0, le=600)
    timeout_s: float | None = Field(default=None, gt=0, le=86_400)
    deadline_s: float = Field(default=600.0, gt=0, le=86_400)
    stream_idle_timeout_s: float | None = Field(default=None, gt=0, le=86_400)
    fallback_routes: list[NonEmpty] = Field(default_factory=list)
    fallback_on: RawFallbackRules = Field(default_factory=RawFallbackRules)
    retention_days: float | None = Field(default=None, gt=0, le=36_500)
    prompt: RawPrompt | None = None
    shadow: RawShadow | None = None
    output: RawOutput | None = None
    guards: RawGuards | None = None
    review: Literal["always", "on_failure"] | RawReviewSample | None = None
    review_webhook: RawWebhook | None = None
    tools: RawTools | None = None
    stream_validation: Literal["buffer", "final"] = "buffer"
    targets: list[RawTarget] = Field(min_length=1)


class RawKey(_Strict):
    key: str
    routes: list[NonEmpty] | None = None
    environment: Environment = "prod"
    rpm: PerMinute | None = None
    tpm: PerMinute | None = None
    max_concurrency: Concurrency | None = None
    budget_usd: float | None = Field(default=None, ge=0, le=1_000_000_000)
    budget_period: Literal["day", "month"] = "month"
    expires_at: datetime | None = None
    priority: Literal["interactive", "batch"] = "interactive"
    role: Literal["caller", "reviewer"] = "caller"
    tools: RawTools | None = None

    _secret_ref = field_validator("key")(_check_secret_ref)


class RawConfig(_Strict):
    admin_key: str | None = None
    token_secret: str | None = None
    metrics_token: str | None = None
    server: RawServer = Field(default_factory=RawServer)
    store: RawStore = Field(default_factory=RawStore)
    batch: RawBatch = Field(default_factory=RawBatch)
    providers: dict[NonEmpty, RawProvider] = Field(default_factory=dict)
    models: dict[NonEmpty, RawModel] = Field(default_factory=dict)
    routes: dict[NonEmpty, RawRoute] = Field(default_factory=dict)
    keys: dict[NonEmpty, RawKey] = Field(default_factory=dict)
    model_repository: NonEmpty | None = None

    _admin_ref = field_validator("admin_key", "token_secret", "metrics_token")(
        _check_secret_ref)

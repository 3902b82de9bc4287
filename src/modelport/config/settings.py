"""Phase two's product: the frozen settings object every other package reads.

Settings are plain frozen dataclasses so that nothing downstream depends on the schema
library, and secrets are wrapped in ``Secret`` so that printing a setting never shows one.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from modelport.config.catalogue import CatalogueModel
from modelport.config.guards import GuardSettings
from modelport.config.output import OutputContract
from modelport.config.prompt import PromptSettings
from modelport.config.tools import ToolPolicy


class Secret:
    """A resolved secret. Its repr never shows the value; call ``reveal()`` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    max_body_bytes: int = 10 * 1024 * 1024
    log_level: str = "info"
    access_log: bool = True
    idempotency_ttl_s: float = 600.0
    max_header_bytes: int = 64 * 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_connections_per_client: int = 1000  # 0: no limit
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StoreSettings:
    url: str = "sqlite:///./.modelport/modelport.db"
    ledger: bool = True
    batch_size: int = 100
    flush_interval_s: float = 0.2
    max_pending: int = 100_000
    retry_backoff_s: float = 1.0


@dataclass(frozen=True, slots=True)
class BatchSettings:
    """Batch serving: lines run at once per server, how long a server holds a line it
    leased, how often it looks for work, and the input file's limits."""

    concurrency: int = 16
    lease_s: float = 30.0
    poll_s: float = 1.0
    max_file_bytes: int = 200 * 1024 * 1024
    max_line_bytes: int = 1024 * 1024
    max_lines: int = 50_000
    retention_days: float | None = 30.0  # None: files and ended batches are kept for ever


@dataclass(frozen=True, slots=True)
class LocalModelSettings:
    """A model hosted by Modelport: where its file is and how to run it."""

    model_path: str | None = None
    model_package: str | None = None
    threads: int = 1
    start_timeout_s: float = 300.0
    n_ctx: int = 2048  # llama_cpp: context per sequence
    parallel: int = 4  # llama_cpp: sequences decoded together
    n_batch: int = 512
    chat_template: str | None = None  # llama_cpp: a built-in format's name, or a template
    temperature: float = 1.0  # llama_cpp: for requests that name none
    engine: str = "llama_cpp"  # embeddings: llama_cpp or sentence_transformers
    max_batch_size: int = 64  # embeddings
    max_batch_delay_s: float = 0.0
    max_inputs: int = 2048

    @property
    def source(self) -> str:
        return self.model_path or f"package {self.model_package}"


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    name: str
    kind: str
    base_url: str = ""
    local: LocalModelSettings | None = None
    api_key: Secret | None = None
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    max_connections: int = 1000
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """Per-minute request and token limits and a concurrency cap; ``None`` is unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """When a target's circuit breaker opens and how it recovers (``routing.breaker`` has the
    rules); the one place its defaults are written. ``failure_rate=None`` turns the rate rule
    off, leaving the count rule."""

    failures: int = 5
    window_s: float = 10.0
    failure_rate: float | None = 0.5
    min_requests: int = 10
    cooldown_s: float = 5.0
    half_open_probes: int = 1

    def __post_init__(self) -> None:
        for name in ("failures", "min_requests", "half_open_probes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise ValueError(f"window_s must be a positive number, got {self.window_s!r}")
        if not (math.isfinite(self.cooldown_s) and self.cooldown_s >= 0):
            raise ValueError(f"cooldown_s must be >= 0, got {self.cooldown_s!r}")
        rate = self.failure_rate
        if rate is not None and not 0 < rate <= 1:
            raise ValueError(f"failure_rate must be in (0, 1] or None, got {rate!r}")


@dataclass(frozen=True, slots=True)
class CanarySettings:
    """A canary target's share of traffic and the objective it must meet
    (``routing.canary`` has the rules)."""

    percent: float
    window_s: float = 300.0
    max_error_rate: float = 0.05
    max_p95_ms: float | None = None
    min_requests: int = 20
    sticky: str | None = None  # "key", or "header <name>": one caller stays on one side

    @property
    def sticky_header(self) -> bytes | None:
        if self.sticky is None or not self.sticky.startswith("header "):
            return None
        return self.sticky.removeprefix("header ").lower().encode()


@dataclass(frozen=True, slots=True)
class TargetSettings:
    provider: str
    model: str
    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    weight: float = 1.0
    context_window: int | None = None
    max_concurrency: int | None = None
    max_queue: int = 0
    queue_timeout_s: float = 30.0
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    version: str | None = None
    catalogue: CatalogueModel | None = None  # its entry in the models catalogue, if any
    canary: CanarySettings | None = None

    @property
    def label(self) -> str:
        """How the target is named in headers, metrics and the ledger."""
        return f"{self.provider}/{self.model}"

    @property
    def model_version(self) -> str:
        """The version of the model that answers: ``version`` when set, else the model name."""
        return self.version or self.model


@dataclass(frozen=True, slots=True)
class ShadowSettings:
    """Copying ``percent`` of a route's requests to ``target``, within its own budget."""

    target: TargetSettings
    percent: float
    budget_usd: float
    budget_period: str = "day"


@dataclass(frozen=True, slots=True)
class ReviewSettings:
    """Which answers of a route a person sees (``inference.reviews``)."""

    mode: str  # always (draft-only), on_failure (a broken contract), sample
    percent: float = 100.0  # sample: the share of answers queued
    webhook_url: str | None = None
    webhook_secret: Secret | None = None


@dataclass(frozen=True, slots=True)
class RouteSettings:
    name: str
    targets: tuple[TargetSettings, ...]
    description: str = ""
    owner: str = ""
    capture: bool = False
    retention_days: float | None = None  # captured bodies are deleted after this long
    environment: str = "prod"
    limits: LimitSettings = field(default_factory=LimitSettings)
    strategy: str = "ordered"
    retries: int = 0  # attempts after the first; by default, one attempt per target
    backoff_s: float = 0.1
    backoff_max_s: float = 2.0
    retry_after_max_s: float = 10.0
    timeout_s: float | None = None
    deadline_s: float = 600.0
    stream_idle_timeout_s: float | None = None
    fallback_routes: tuple[str, ...] = ()
    fallback_on: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    prompt: PromptSettings | None = None  # put before each chat request's messages
    shadow: ShadowSettings | None = None
    output: OutputContract | None = None  # what an answer must be before it is returned
    guards: GuardSettings | None = None  # masking and deny rules before the call
    review: ReviewSettings | None = None  # answers held for, or shown to, a person
    tools: ToolPolicy | None = None  # which tools requests may declare and answers call
    stream_validation: str = "buffer"  # with a contract: buffer, or final (a verdict event)


def repository_models(repository: str | None) -> tuple[str, ...]:
    """The model names in a model repository (its directories), for key scopes."""
    root = Path(repository) if repository is not None else None
    if root is None or not root.is_dir():
        return ()
    return tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))


def switch_problem(
    settings: Settings, scope: str, name: str, behaviour: str, fallback_route: str | None,
    message: str = "",
) -> tuple[str, str] | None:
    """Why a kill switch cannot be turned off as asked: ``(key, reason)``, or None. The one
    rule for the admin API and the CLI (a key's id is checked by each against its keys)."""
    routes = settings.routes
    if scope == "all":
        if name:
            return "name", "a switch for everything takes no name"
    elif not name:
        return "name", f"a {scope} switch needs the name of the {scope}"
    elif scope == "route" and name not in routes and name not in settings.tensor_models():
        return "name", f"unknown route '{name}' (nor a model in the model repository)"
    elif scope == "provider" and name not in settings.providers:
        return "name", f"unknown provider '{name}'"
    elif scope == "model" and name not in settings.target_models() \
            and name not in settings.tensor_models():
        return "name", f"no target calls a model '{name}' (nor is it a tensor model)"
    if behaviour == "fallback":
        if fallback_route is None:
            return "fallback_route", "behaviour 'fallback' needs a fallback_route"
        if fallback_route not in routes:
            return "fallback_route", f"unknown route '{fallback_route}'"
        if scope == "route" and fallback_route == name:
            return "fallback_route", "a route cannot fall back to itself"
    elif fallback_route is not None:
        return "fallback_route", "only behaviour 'fallback' takes a fallback_route"
    if behaviour == "answer" and not message:
        return "message", "behaviour 'answer' needs the text to answer with"
    return None


def key_route_problem(
    routes: Mapping[str, RouteSettings], route: str, environment: str,
    models: Collection[str] = (),
) -> str | None:
    """Why a key of ``environment`` may not list ``route``; None when it may. The one rule
    for keys from the config file, the admin API and the CLI alike. A key may also list a
    tensor model of the repository (``models``); its environment is checked per request."""
    found = routes.get(route)
    if found is None:
        if route in models:
            return None
        return f"unknown route '{route}' (nor a model in the model repository)" if models \
            else f"unknown route '{route}'"
    if found.environment != environment:
        return (f"route '{route}' is in environment '{found.environment}', "
                f"the key in '{environment}'")
    return None


@dataclass(frozen=True, slots=True)
class KeySettings:
    """A key declared in the config file (``keys:``); its value is a resolved secret."""

    name: str
    key: Secret
    routes: tuple[str, ...] | None = None
    environment: str = "prod"
    limits: LimitSettings = field(default_factory=LimitSettings)
    budget_usd: float | None = None
    budget_period: str = "month"
    expires_at: float | None = None
    priority: str = "interactive"
    role: str = "caller"  # reviewer: decides reviews, calls no route
    tools: ToolPolicy | None = None  # which tools the key's requests may declare


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """OpenTelemetry tracing, from the standard ``OTEL_*`` variables (see
    docs/observability.md). Off unless an exporter is named; ``exporters`` lists "otlp"
    and "console" in the order given."""

    enabled: bool = False
    exporters: tuple[str, ...] = ()
    service_name: str = "modelport"
    resource_attributes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    sampler: str = "parentbased_always_on"
    sampler_ratio: float = 1.0  # for the traceidratio samplers
    otlp_endpoint: str = "http://localhost:4318/v1/traces"
    otlp_headers: Mapping[str, Secret] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Settings:
    config_version: str
    server: ServerSettings
    store: StoreSettings
    providers: Mapping[str, ProviderSettings]
    routes: Mapping[str, RouteSettings]
    keys: Mapping[str, KeySettings] = field(default_factory=lambda: MappingProxyType({}))
    models: Mapping[str, CatalogueModel] = field(default_factory=lambda: MappingProxyType({}))
    admin_key: Secret | None = None
    token_secret: Secret | None = None
    metrics_token: Secret | None = None  # with keys, /metrics needs it or the admin key
    model_repository: str | None = None
    source: str = "<defaults>"
    tracing: TracingSettings = field(default_factory=TracingSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)

    @property
    def auth_required(self) -> bool:
        """Keys are required once an admin key or any key is configured."""
        return self.admin_key is not None or bool(self.keys)

    def target_models(self) -> frozenset[str]:
        """Every model name a route's target calls."""
        return frozenset(t.model for r in self.routes.values() for t in r.targets)

    def tensor_models(self) -> tuple[str, ...]:
        return repository_models(self.model_repository)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value in force, for the log and response redactors."""
        values = [p.api_key.reveal() for p in self.providers.values() if p.api_key]
        values += [k.key.reveal() for k in self.keys.values()]
        values += [s.reveal() for s in (self.admin_key, self.token_secret, self.metrics_token)
                   if s]
        values += [s.reveal() for s in self.tracing.otlp_headers.values()]
        values += [r.review.webhook_secret.reveal() for r in self.routes.values()
                   if r.review is not None and r.review.webhook_secret is not None]
        return tuple(values)

"""Phase two of loading, and the only module that reads the environment or secret files.

``load_settings`` reads the YAML file, validates it against ``schema.RawConfig``, then
cross-checks references and resolves secrets, collecting every problem with its key path
before raising one ``ConfigError``. ``modelport config validate`` runs the same code.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import yaml
from pydantic import ValidationError

from modelport.config.catalogue import CatalogueModel, prod_problem
from modelport.config.guards import compile_guards
from modelport.config.output import compile_output
from modelport.config.prompt import PromptSettings, compile_prompt
from modelport.config.schema import (
    RawConfig,
    RawEmbeddingsProvider,
    RawKey,
    RawLlamaCppProvider,
    RawPrompt,
    RawProvider,
    RawRoute,
    RawShadow,
    RawTarget,
)
from modelport.config.settings import (
    BatchSettings,
    BreakerSettings,
    CanarySettings,
    KeySettings,
    LimitSettings,
    LocalModelSettings,
    ProviderSettings,
    ReviewSettings,
    RouteSettings,
    Secret,
    ServerSettings,
    Settings,
    ShadowSettings,
    StoreSettings,
    TargetSettings,
    TracingSettings,
    key_route_problem,
    repository_models,
)
from modelport.config.tools import tool_policy
from modelport.errors import ConfigError


def load_settings(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Load and resolve a config file, or raise ``ConfigError`` listing every problem."""
    return load_text(read_text(Path(path)), str(path), environ)


def load_text(text: str, source: str, environ: Mapping[str, str] | None = None,
              previous: Settings | None = None) -> Settings:
    """Load and resolve a config given as YAML text (``source`` names it in problems);
    ``previous``, the config in force, lends its compiled prompts where they are unchanged."""
    env = os.environ if environ is None else environ
    data = _parse_yaml(text, source)
    try:
        raw = parse_raw(data)
    except ConfigError as exc:
        exc.problems.extend(_loose_cross_checks(data, env))
        raise ConfigError(exc.problems) from None
    return resolve(raw, env, source=source, previous=previous)


def load_data(data: Any, source: str, environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve configuration data that did not come from a file (the offline default)."""
    return resolve(parse_raw(data), os.environ if environ is None else environ, source=source)


def validate_file(path: str | Path, environ: Mapping[str, str] | None = None) -> list[str]:
    """Every problem in a config file, each with its key path; empty when it is valid."""
    try:
        load_settings(path, environ)
    except ConfigError as exc:
        return exc.problems
    return []


# libyaml's safe loader where PyYAML was built with it (its wheels are): seven times faster
# than the pure-Python one on a config of 500 routes (30 ms against 220), the same documents.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_text(path: Path) -> str:
    """A config file's text; ``ConfigError`` when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None


def _parse_yaml(text: str, path: str) -> Any:
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError([f"{path}: {problem}{where}"]) from None
    return {} if data is None else data


def parse_raw(data: Any) -> RawConfig:
    """Phase one: the shape of the document, every error with its key path."""
    if not isinstance(data, dict):
        raise ConfigError(["<root>: the config must be a mapping of keys to values"])
    try:
        return RawConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_describe(err) for err in exc.errors()]) from None


def _loose_cross_checks(data: Any, environ: Mapping[str, str]) -> list[str]:
    """Phase two's checks on a document that failed phase one, wherever its shape allows,
    so that one run reports every problem."""
    problems: list[str] = []
    providers = data.get("providers") if isinstance(data, dict) else None
    providers = providers if isinstance(providers, dict) else {}
    for name, provider in providers.items():
        ref = provider.get("api_key") if isinstance(provider, dict) else None
        kind, _, target = ref.partition(":") if isinstance(ref, str) else ("", "", "")
        if kind in ("env", "file") and target and isinstance(ref, str):
            resolve_secret(ref, f"providers.{name}.api_key", environ, problems)
    routes = data.get("routes") if isinstance(data, dict) else None
    for name, route in (routes if isinstance(routes, dict) else {}).items():
        targets = route.get("targets") if isinstance(route, dict) else None
        for i, target in enumerate(targets if isinstance(targets, list) else []):
            ref = target.get("provider") if isinstance(target, dict) else None
            if isinstance(ref, str) and ref not in providers:
                problems.append(_unknown_provider(f"routes.{name}.targets[{i}]", ref, providers))
    tracing_settings(environ, problems)
    return problems


def _unknown_provider(where: str, name: str, providers: Mapping[str, Any]) -> str:
    known = ", ".join(sorted(providers)) or "none are configured"
    return f"{where}.provider: unknown provider '{name}' (known: {known})"


def _describe(err: Mapping[str, Any]) -> str:
    path = _key_path(err["loc"])
    if err["type"] == "extra_forbidden":
        return f"{path}: unknown key"
    if err["type"] == "missing":
        return f"{path}: required key is missing"
    if err["type"] == "union_tag_invalid":
        ctx = err.get("ctx", {})
        return (f"{path}.{ctx.get('discriminator', 'kind').strip(chr(39))}: unsupported kind "
                f"'{ctx.get('tag')}' (one of: {ctx.get('expected_tags')})")
    if err["type"] == "union_tag_not_found":
        return f"{path}.kind: required key is missing"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{path}: {message}"


_PROVIDER_KINDS = frozenset(("openai", "llama_cpp", "embeddings"))


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if i == 2 and loc[0] == "providers" and part in _PROVIDER_KINDS:
            continue  # the union's tag, not a key in the file
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


def resolve(raw: RawConfig, environ: Mapping[str, str], source: str = "<memory>",
            previous: Settings | None = None) -> Settings:
    """Phase two: cross-check references, resolve secrets, freeze."""
    problems: list[str] = []
    providers = {
        name: _provider(name, p, environ, problems) for name, p in raw.providers.items()
    }
    models = _catalogue(raw, providers, problems)
    before = previous.routes if previous is not None else {}
    routes = {name: _route(name, r, providers, models, problems, before.get(name), environ)
              for name, r in raw.routes.items()}
    _check_fallback_routes(routes, problems)
    tensor_models = repository_models(raw.model_repository)
    keys = {name: _key(name, k, routes, environ, problems, tensor_models)
            for name, k in raw.keys.items()}
    _check_distinct_keys(keys, problems)
    admin_key = _admin_key(raw, environ, problems)
    if raw.model_repository is not None and not Path(raw.model_repository).is_dir():
        problems.append(f"model_repository: no such directory: {raw.model_repository}")
    token_secret = None
    if raw.token_secret is not None:
        token_secret = _strong(
            resolve_secret(raw.token_secret, "token_secret", environ, problems),
            "token_secret", problems)
    metrics_token = None
    if raw.metrics_token is not None:
        metrics_token = _strong(
            resolve_secret(raw.metrics_token, "metrics_token", environ, problems),
            "metrics_token", problems)
    tracing = tracing_settings(environ, problems)
    if problems:
        raise ConfigError(problems)
    return Settings(
        config_version=config_version(raw),
        server=ServerSettings(**{**raw.server.model_dump(),
                                 "allowed_hosts": tuple(raw.server.allowed_hosts)}),
        store=StoreSettings(**raw.store.model_dump()),
        batch=BatchSettings(**raw.batch.model_dump()),
        providers=MappingProxyType(providers),
        routes=MappingProxyType(routes),
        models=MappingProxyType(models),
        keys=MappingProxyType({n: k for n, k in keys.items() if k is not None}),
        admin_key=admin_key,
        token_secret=token_secret,
        metrics_token=metrics_token,
        model_repository=raw.model_repository,
        source=source,
        tracing=tracing,
    )


ADMIN_KEY_ENV = "MODELPORT_ADMIN_KEY"
MIN_KEY_CHARS = 16


def admin_key_in_environment(environ: Mapping[str, str] | None = None) -> Secret | None:
    """``MODELPORT_ADMIN_KEY``, as the command-line tools that call the admin API send it."""
    value = (os.environ if environ is None else environ).get(ADMIN_KEY_ENV)
    return Secret(value) if value else None


def api_key_in_environment(environ: Mapping[str, str] | None = None) -> Secret | None:
    """``MODELPORT_API_KEY``: the key the command-line tools that call models send
    (``modelport batch``)."""
    value = (os.environ if environ is None else environ).get("MODELPORT_API_KEY")
    return Secret(value) if value else None


def _strong(secret: Secret | None, where: str, problems: list[str]) -> Secret | None:
    """Keys that guard Modelport itself must not be guessable (nor so short that redacting
    them from logs would mangle ordinary words)."""
    if secret is not None and len(secret.reveal()) < MIN_KEY_CHARS:
        problems.append(f"{where}: must be at least {MIN_KEY_CHARS} characters long")
        return None
    return secret


def _admin_key(raw: RawConfig, environ: Mapping[str, str], problems: list[str]) -> Secret | None:
    """``admin_key`` from the config, else the ``MODELPORT_ADMIN_KEY`` variable, else none."""
    if raw.admin_key is not None:
        return _strong(resolve_secret(raw.admin_key, "admin_key", environ, problems),
                       "admin_key", problems)
    value = environ.get(ADMIN_KEY_ENV)
    return _strong(Secret(value), ADMIN_KEY_ENV, problems) if value else None


_TRACE_EXPORTERS = ("otlp", "console")
_SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on",
             "parentbased_always_off", "parentbased_traceidratio")
_OTLP_EXPORTER_MODULE = "opentelemetry.exporter.otlp.proto.http"


def tracing_settings(environ: Mapping[str, str], problems: list[str]) -> TracingSettings:
    """The standard OpenTelemetry variables Modelport honours (docs/observability.md).
    Tracing is on when ``OTEL_TRACES_EXPORTER`` names an exporter, unless
    ``OTEL_SDK_DISABLED`` is true; unlike the SDK's own default, unset means off."""
    disabled = environ.get("OTEL_SDK_DISABLED", "").strip().lower()
    if disabled not in ("", "true", "false"):
        problems.append(f"OTEL_SDK_DISABLED: must be true or false, not '{disabled}'")
    names = environ.get("OTEL_TRACES_EXPORTER", "").lower().split(",")
    exporters = tuple(dict.fromkeys(n.strip() for n in names if n.strip() not in ("", "none")))
    if disabled == "true" or not exporters:
        return TracingSettings()
    for name in exporters:
        if name not in _TRACE_EXPORTERS:
            problems.append(f"OTEL_TRACES_EXPORTER: unknown exporter '{name}' "
                            f"(one of: {', '.join(_TRACE_EXPORTERS)}, none)")
    if "otlp" in exporters:
        _check_otlp(environ, problems)
    sampler = environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if sampler not in _SAMPLERS:
        problems.append(f"OTEL_TRACES_SAMPLER: unknown sampler '{sampler}' "
                        f"(one of: {', '.join(_SAMPLERS)})")
    ratio = 1.0
    arg = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if sampler.endswith("traceidratio") and arg:
        try:
            ratio = float(arg)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            problems.append(f"OTEL_TRACES_SAMPLER_ARG: must be a number from 0 to 1, not '{arg}'")
    resource = _key_values(environ, "OTEL_RESOURCE_ATTRIBUTES", problems, lower_keys=False)
    headers_var = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
    if headers_var not in environ:
        headers_var = "OTEL_EXPORTER_OTLP_HEADERS"
    headers = _key_values(environ, headers_var, problems, lower_keys=True)
    return TracingSettings(
        enabled=True,
        exporters=exporters,
        service_name=(environ.get("OTEL_SERVICE_NAME", "").strip()
                      or resource.get("service.name") or "modelport"),
        resource_attributes=MappingProxyType(resource),
        sampler=sampler,
        sampler_ratio=ratio,
        otlp_endpoint=_otlp_endpoint(environ, problems),
        otlp_headers=MappingProxyType({k: Secret(v) for k, v in headers.items()}),
    )


def _check_otlp(environ: Mapping[str, str], problems: list[str]) -> None:
    for var in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(var, "").strip()
        if protocol:
            if protocol != "http/protobuf":
                problems.append(f"{var}: only http/protobuf is supported, not '{protocol}'")
            break
    try:
        found = importlib.util.find_spec(_OTLP_EXPORTER_MODULE) is not None
    except ModuleNotFoundError:  # a parent package is missing
        found = False
    if not found:
        problems.append("OTEL_TRACES_EXPORTER: 'otlp' needs the OTLP exporter "
                        "(pip install 'modelport[otel]')")


def _otlp_endpoint(environ: Mapping[str, str], problems: list[str]) -> str:
    """The traces URL: the signal's own variable as given, else the base one plus
    ``/v1/traces``, as the OTLP specification has it."""
    var = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    url = environ.get(var, "").strip()
    if not url and environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip():
        var = "OTEL_EXPORTER_OTLP_ENDPOINT"
        url = environ[var].strip().rstrip("/") + "/v1/traces"
    if not url:
        return TracingSettings().otlp_endpoint
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        problems.append(f"{var}: must be an http:// or https:// URL")
    return url


def _key_values(
    environ: Mapping[str, str], var: str, problems: list[str], *, lower_keys: bool
) -> dict[str, str]:
    """``key1=value1,key2=value2`` with URL-encoded parts, as the OpenTelemetry variables
    carry headers and resource attributes. A bad entry is named by position, never by its
    text: header values are often credentials."""
    out: dict[str, str] = {}
    for i, item in enumerate(environ.get(var, "").split(",")):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = unquote(key).strip()
        if not sep or not key:
            problems.append(f"{var}: entry {i + 1} is not key=value")
            continue
        out[key.lower() if lower_keys else key] = unquote(value).strip()
    return out


def _limits(raw: RawRoute | RawKey) -> LimitSettings:
    return LimitSettings(rpm=raw.rpm, tpm=raw.tpm, max_concurrency=raw.max_concurrency)


def _key(
    name: str,
    raw: RawKey,
    routes: Mapping[str, RouteSettings],
    environ: Mapping[str, str],
    problems: list[str],
    models: tuple[str, ...] = (),
) -> KeySettings | None:
    secret = _strong(resolve_secret(raw.key, f"keys.{name}.key", environ, problems),
                     f"keys.{name}.key", problems)
    for i, route in enumerate(raw.routes or ()):
        problem = key_route_problem(routes, route, raw.environment, models)
        if problem is not None:
            problems.append(f"keys.{name}.routes[{i}]: {problem}")
    if secret is None:
        return None
    return KeySettings(
        name=name,
        key=secret,
        routes=tuple(raw.routes) if raw.routes is not None else None,
        environment=raw.environment,
        limits=_limits(raw),
        budget_usd=raw.budget_usd,
        budget_period=raw.budget_period,
        expires_at=raw.expires_at.timestamp() if raw.expires_at else None,
        priority=raw.priority,
        role=raw.role,
        tools=None if raw.tools is None else tool_policy(
            raw.tools.allow, raw.tools.deny, raw.tools.on_denied),
    )


def _check_fallback_routes(routes: Mapping[str, RouteSettings], problems: list[str]) -> None:
    for name, route in routes.items():
        for i, other in enumerate(route.fallback_routes):
            where = f"routes.{name}.fallback_routes[{i}]"
            if other not in routes:
                problems.append(f"{where}: unknown route '{other}'")
            elif other == name:
                problems.append(f"{where}: a route cannot fall back to itself")
            elif routes[other].environment != route.environment:
                problems.append(f"{where}: route '{other}' is in another environment")
    problems.extend(_fallback_cycles(routes))


def _fallback_cycles(routes: Mapping[str, RouteSettings]) -> list[str]:
    """A cycle of fallback routes (a -> b -> a), for each back edge a depth-first walk
    meets, in the file's order (linear in routes and fallbacks). At run time a request never
    falls back to a route it came from, but a cycle is a config mistake all the same."""
    found: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in routes:
        if start in state:
            continue
        path, stack = [start], [iter(routes[start].fallback_routes)]
        state[start] = 1
        while stack:
            other = next(stack[-1], None)
            if other is None:
                state[path.pop()] = 2
                stack.pop()
            elif other not in routes or other == path[-1]:
                continue  # reported above
            elif state.get(other) == 1:
                cycle = [*path[path.index(other):], other]
                found.append(f"routes.{cycle[0]}.fallback_routes: a cycle of fallbacks: "
                             + " -> ".join(cycle))
            elif other not in state:
                state[other] = 1
                path.append(other)
                stack.append(iter(routes[other].fallback_routes))
    return found


def _check_distinct_keys(keys: Mapping[str, KeySettings | None], problems: list[str]) -> None:
    seen: dict[Secret, str] = {}
    for name, key in keys.items():
        if key is None:
            continue
        if key.key in seen:
            problems.append(f"keys.{name}.key: the same secret as keys.{seen[key.key]}.key")
        seen.setdefault(key.key, name)


def version_of(text: str) -> str | None:
    """The config version of a YAML text, without resolving it; None when it does not
    parse."""
    try:
        return config_version(parse_raw(_parse_yaml(text, "<text>")))
    except ConfigError:
        return None


def config_version(raw: RawConfig) -> str:
    """A short, stable hash of the config as written (secret references, never values)."""
    canonical = orjson.dumps(raw.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:12]


def _provider(
    name: str, raw: RawProvider, environ: Mapping[str, str], problems: list[str]
) -> ProviderSettings:
    if isinstance(raw, RawLlamaCppProvider | RawEmbeddingsProvider):
        return ProviderSettings(name=name, kind=raw.kind, local=_local(name, raw, problems))
    key = None
    if raw.api_key is not None:
        key = resolve_secret(raw.api_key, f"providers.{name}.api_key", environ, problems)
    return ProviderSettings(
        name=name,
        kind=raw.kind,
        base_url=raw.base_url,
        api_key=key,
        timeout_s=raw.timeout_s,
        connect_timeout_s=raw.connect_timeout_s,
        max_connections=raw.max_connections,
        headers=MappingProxyType(dict(raw.headers)),
    )


# What each local engine imports in its worker, and the extra that installs it.
_ENGINE_NEEDS = {
    "llama_cpp": (("llama_cpp", "jinja2"), "llm"),
    "embeddings:llama_cpp": (("llama_cpp", "tokenizers", "gguf", "safetensors"), "embeddings"),
    "embeddings:sentence_transformers": (("sentence_transformers",), "embeddings-torch"),
}


def _local(
    name: str, raw: RawLlamaCppProvider | RawEmbeddingsProvider, problems: list[str]
) -> LocalModelSettings:
    where = f"providers.{name}"
    if isinstance(raw, RawLlamaCppProvider):
        if raw.model_path is not None and not Path(raw.model_path).is_file():
            problems.append(f"{where}.model_path: no such file: {raw.model_path}")
    elif raw.model_path is not None and not Path(raw.model_path).is_dir():
        problems.append(f"{where}.model_path: no such folder: {raw.model_path}")
    needs, extra = _ENGINE_NEEDS["llama_cpp" if isinstance(raw, RawLlamaCppProvider)
                                 else f"embeddings:{raw.engine}"]
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        problems.append(f"{where}: needs {', '.join(missing)}, which is not installed "
                        f"(pip install 'modelport[{extra}]')")
    if raw.model_package is not None and not package_installed(raw.model_package):
        problems.append(f"{where}.model_package: '{raw.model_package}' is not installed "
                        f"(pip install {raw.model_package})")
    local = LocalModelSettings(
        model_path=raw.model_path,
        model_package=raw.model_package,
        threads=raw.threads or max(os.cpu_count() or 1, 1),
        start_timeout_s=raw.start_timeout_s,
    )
    if isinstance(raw, RawLlamaCppProvider):
        return replace(local, n_ctx=raw.n_ctx, parallel=raw.parallel, n_batch=raw.n_batch,
                       chat_template=raw.chat_template, temperature=raw.temperature)
    return replace(local, engine=raw.engine, max_batch_size=raw.max_batch_size,
                   max_batch_delay_s=raw.max_batch_delay_ms / 1000, max_inputs=raw.max_inputs)


def package_installed(name: str) -> bool:
    """Whether a model package can be imported, without importing it."""
    return importlib.util.find_spec(name.replace("-", "_")) is not None


def _catalogue(raw: RawConfig, providers: Mapping[str, ProviderSettings],
               problems: list[str]) -> dict[str, CatalogueModel]:
    models: dict[str, CatalogueModel] = {}
    for model_id, m in raw.models.items():
        if m.provider not in providers:
            problems.append(_unknown_provider(f"models.{model_id}", m.provider, providers))
        if m.successor is not None and m.successor not in raw.models:
            problems.append(f"models.{model_id}.successor: no model '{m.successor}' in the "
                            "models catalogue")
        models[model_id] = CatalogueModel(
            id=model_id, provider=m.provider, model=m.model, owner=m.owner, status=m.status,
            version=m.version, context_window=m.context_window,
            input_per_mtok=m.input_per_mtok, output_per_mtok=m.output_per_mtok,
            deprecated_at=m.deprecated_at.timestamp() if m.deprecated_at else None,
            retire_at=m.retire_at.timestamp() if m.retire_at else None,
            successor=m.successor)
    labels = [m.label for m in models.values()]
    for label in {x for x in labels if labels.count(x) > 1}:
        problems.append(f"models: {label} is in the catalogue more than once")
    return models


_FROM_CATALOGUE = ("input_per_mtok", "output_per_mtok", "context_window", "version")


def _target(where: str, t: RawTarget, providers: Mapping[str, ProviderSettings],
            models: Mapping[str, CatalogueModel], problems: list[str]) -> TargetSettings:
    """A route's target; one naming a catalogue model takes its provider, model and prices."""
    canary = None if t.canary is None else CanarySettings(
        percent=t.canary.percent, window_s=t.canary.window_s, sticky=t.canary.sticky,
        max_error_rate=t.canary.slo.max_error_rate, max_p95_ms=t.canary.slo.max_p95_ms,
        min_requests=t.canary.slo.min_requests)
    common = {"weight": t.weight, "max_concurrency": t.max_concurrency,
              "max_queue": t.max_queue, "queue_timeout_s": t.queue_timeout_s,
              "breaker": BreakerSettings(**t.breaker.model_dump()), "canary": canary}
    if t.provider is None:
        entry = models.get(t.model)
        if entry is None:
            problems.append(f"{where}.model: no model '{t.model}' in the models catalogue "
                            "(a model outside it needs a provider)")
            return TargetSettings(provider="-", model=t.model, **common)  # type: ignore[arg-type]
        for name in _FROM_CATALOGUE:
            if name in t.model_fields_set:
                problems.append(f"{where}.{name}: comes from the models catalogue "
                                f"(models.{entry.id})")
        return TargetSettings(
            provider=entry.provider, model=entry.model, input_per_mtok=entry.input_per_mtok,
            output_per_mtok=entry.output_per_mtok, context_window=entry.context_window,
            version=entry.version, catalogue=entry, **common)  # type: ignore[arg-type]
    if t.provider not in providers:
        problems.append(_unknown_provider(where, t.provider, providers))
    entry = next((m for m in models.values()
                  if (m.provider, m.model) == (t.provider, t.model)), None)
    return TargetSettings(
        provider=t.provider, model=t.model, input_per_mtok=t.input_per_mtok,
        output_per_mtok=t.output_per_mtok, context_window=t.context_window,
        version=t.version, catalogue=entry, **common)  # type: ignore[arg-type]


def _shadow(name: str, raw: RawShadow, providers: Mapping[str, ProviderSettings],
            models: Mapping[str, CatalogueModel], problems: list[str]) -> ShadowSettings:
    where = f"routes.{name}.shadow.target"
    target = _target(where, raw.target, providers, models, problems)
    if target.canary is not None:
        problems.append(f"{where}.canary: a shadow target cannot be a canary")
    return ShadowSettings(target, raw.percent, raw.budget_usd, raw.budget_period)


def _route(
    name: str, raw: RawRoute, providers: Mapping[str, ProviderSettings],
    models: Mapping[str, CatalogueModel], problems: list[str],
    before: RouteSettings | None = None, environ: Mapping[str, str] = MappingProxyType({}),
) -> RouteSettings:
    targets = []
    for i, t in enumerate(raw.targets):
        where = f"routes.{name}.targets[{i}]"
        target = _target(where, t, providers, models, problems)
        if models and raw.environment == "prod" and target.provider != "-":
            problem = prod_problem(target.catalogue, where, target.label)
            if problem is not None:
                problems.append(problem)
        targets.append(target)
    canaries = [i for i, t in enumerate(targets) if t.canary is not None]
    if len(canaries) > 1:
        problems.append(f"routes.{name}.targets[{canaries[1]}].canary: a route has one canary "
                        "at a time")
    if canaries and len(targets) == 1:
        problems.append(f"routes.{name}.targets[{canaries[0]}].canary: a canary needs a "
                        "stable target beside it in the route")
    return RouteSettings(
        name=name,
        targets=tuple(targets),
        description=raw.description,
        owner=raw.owner,
        capture=raw.capture,
        retention_days=raw.retention_days,
        environment=raw.environment,
        limits=_limits(raw),
        strategy=raw.strategy,
        retries=len(raw.targets) - 1 if raw.retries is None else raw.retries,
        backoff_s=raw.backoff_s,
        backoff_max_s=raw.backoff_max_s,
        retry_after_max_s=raw.retry_after_max_s,
        timeout_s=raw.timeout_s,
        deadline_s=raw.deadline_s,
        stream_idle_timeout_s=raw.stream_idle_timeout_s,
        fallback_routes=tuple(raw.fallback_routes),
        fallback_on=MappingProxyType(raw.fallback_on.model_dump()),
        shadow=None if raw.shadow is None else _shadow(name, raw.shadow, providers, models,
                                                       problems),
        prompt=None if raw.prompt is None else _prompt(name, raw.prompt, before, problems),
        output=None if raw.output is None else compile_output(
            raw.output.json_schema, raw.output.labels, raw.output.max_chars, raw.output.regex,
            raw.output.repair_attempts, f"routes.{name}.output", problems),
        stream_validation=raw.stream_validation,
        review=_review(name, raw, environ, problems),
        tools=None if raw.tools is None else tool_policy(
            raw.tools.allow, raw.tools.deny, raw.tools.on_denied),
        guards=None if raw.guards is None else compile_guards(
            list(raw.guards.mask), raw.guards.restore, raw.guards.deny.regex,
            raw.guards.deny.keywords, raw.guards.deny.max_input_tokens,
            f"routes.{name}.guards", problems, raw.guards.deny.review),
    )


def _review(name: str, raw: RawRoute, environ: Mapping[str, str],
            problems: list[str]) -> ReviewSettings | None:
    where = f"routes.{name}"
    if raw.review is None:
        if raw.review_webhook is not None:
            problems.append(f"{where}.review_webhook: the route has no review")
        return None
    url = secret = None
    if raw.review_webhook is not None:
        url = raw.review_webhook.url
        secret = resolve_secret(raw.review_webhook.secret, f"{where}.review_webhook.secret",
                                environ, problems)
    if isinstance(raw.review, str):
        if raw.review == "on_failure" and raw.output is None:
            problems.append(f"{where}.review: on_failure needs an output contract "
                            f"({where}.output)")
        return ReviewSettings(raw.review, 100.0, url, secret)
    return ReviewSettings("sample", raw.review.sample, url, secret)


def _prompt(name: str, raw: RawPrompt, before: RouteSettings | None,
            problems: list[str]) -> PromptSettings:
    """The route's prompt, compiled; the one in force when it is unchanged (a reload then
    compiles only the templates it changed)."""
    messages: list[tuple[str, str]] = [(m.role, m.content) for m in raw.messages]
    kept = before.prompt if before is not None else None
    if kept is not None and kept.version == raw.version \
            and dict(kept.variables) == raw.variables \
            and [(m.role, m.source) for m in kept.messages] == messages:
        return kept
    return compile_prompt(raw.version, messages, raw.variables, f"routes.{name}.prompt",
                          problems)


def resolve_secret(
    ref: str, key_path: str, environ: Mapping[str, str], problems: list[str]
) -> Secret | None:
    """Resolve ``env:NAME`` or ``file:PATH``; record a problem (never the value) on failure."""
    kind, _, target = ref.partition(":")
    if kind == "env":
        value = environ.get(target)
        if not value:
            problems.append(f"{key_path}: environment variable {target} is not set or empty")
            return None
        return Secret(value)
    try:
        value = Path(target).expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        problems.append(f"{key_path}: cannot read secret file {target}: {exc.strerror}")
        return None
    except UnicodeDecodeError:
        problems.append(f"{key_path}: secret file {target} is not UTF-8 text")
        return None
    if not value:
        problems.append(f"{key_path}: secret file {target} is empty")
        return None
    return Secret(value)

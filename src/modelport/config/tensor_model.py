"""The optional ``<name>/config.yaml`` of a tensor model in the model repository.

Strict like ``modelport.yaml``: an unknown key, a bad value or an unknown datatype is a
problem reported with its key path, and the model is then not loaded (the server stays up
and ``/v2/models/{name}`` says why).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelport.config.schema import Concurrency, Environment, PerMinute
from modelport.config.settings import LimitSettings
from modelport.core.datatypes import Datatype
from modelport.errors import ConfigError

Dim = Annotated[int, Field(ge=-1, le=1_000_000_000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class RawTensorSpec(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=256)]
    datatype: Datatype
    shape: list[Dim] = Field(min_length=1, max_length=16)


class RawVersionPolicy(_Strict):
    """Exactly one of: the ``latest`` N versions, ``specific`` versions, or ``all``."""

    latest: Annotated[int, Field(gt=0, le=1000)] | None = None
    specific: list[Annotated[int, Field(gt=0)]] | None = None
    all: bool = False

    @model_validator(mode="after")
    def _one(self) -> RawVersionPolicy:
        chosen = sum((self.latest is not None, self.specific is not None, self.all))
        if chosen > 1:
            raise ValueError("set only one of latest, specific and all")
        return self


class RawAdmission(_Strict):
    """The model's admission gate, as a route target's: beyond ``max_concurrency`` requests
    wait (by priority, fairly between keys), at most ``max_queue`` of them."""

    max_concurrency: Concurrency | None = None
    max_queue: int = Field(default=0, ge=0, le=1_000_000)
    queue_timeout_s: float = Field(default=30.0, gt=0, le=3600)


class RawTensorModel(_Strict):
    platform: Literal["onnx", "sklearn"] | None = None
    environment: Environment = "prod"
    rpm: PerMinute | None = None  # the model's own limits, as a route's (429 beyond them)
    max_concurrency: Concurrency | None = None
    admission: RawAdmission = Field(default_factory=RawAdmission)
    version_policy: RawVersionPolicy = Field(default_factory=RawVersionPolicy)
    inputs: list[RawTensorSpec] = Field(default_factory=list)
    outputs: list[RawTensorSpec] = Field(default_factory=list)
    max_batch_size: int = Field(default=64, ge=0, le=1_000_000)
    max_batch_delay_ms: float = Field(default=0.0, ge=0, le=10_000)
    max_queue: int = Field(default=2048, gt=0, le=10_000_000)
    queue_timeout_ms: float = Field(default=5000.0, gt=0, le=3_600_000)
    threads: int = Field(default=1, gt=0, le=256)
    warmup: bool | list[dict[str, Any]] = True


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # the full shape; -1 for a variable dimension


@dataclass(frozen=True, slots=True)
class TensorModelConfig:
    platform: str | None = None
    environment: str = "prod"
    limits: LimitSettings = field(default_factory=LimitSettings)
    admission_concurrency: int | None = None
    admission_queue: int = 0
    admission_timeout_s: float = 30.0
    latest: int | None = 1
    specific: tuple[int, ...] | None = None
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    max_batch_size: int = 64
    max_batch_delay_s: float = 0.0
    max_queue: int = 2048
    queue_timeout_s: float = 5.0
    threads: int = 1
    warmup: bool | tuple[dict[str, Any], ...] = True

    def select(self, available: list[int]) -> list[int]:
        """The versions to serve out of those on disk, newest first."""
        newest = sorted(available, reverse=True)
        if self.specific is not None:
            return [v for v in newest if v in self.specific]
        if self.latest is None:
            return newest
        return newest[: self.latest]


def _specs(raw: list[RawTensorSpec]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(s.name, s.datatype, tuple(s.shape)) for s in raw)


def load_tensor_model_config(path: Path) -> TensorModelConfig:
    """Read ``config.yaml``; a missing file means the defaults. Raises ``ConfigError``."""
    if not path.exists():
        return TensorModelConfig()
    where = f"{path.parent.name}/config.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError([f"{where}: cannot be read as YAML: {exc}"]) from exc
    try:
        raw = RawTensorModel.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([
            f"{where}: {'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        ]) from exc
    policy = raw.version_policy
    latest = policy.latest if policy.latest is not None else (
        None if policy.all or policy.specific is not None else 1)
    names = [s.name for s in raw.inputs]
    if len(set(names)) != len(names):
        raise ConfigError([f"{where}: inputs: names must be unique"])
    return TensorModelConfig(
        platform=raw.platform,
        environment=raw.environment,
        limits=LimitSettings(rpm=raw.rpm, max_concurrency=raw.max_concurrency),
        admission_concurrency=raw.admission.max_concurrency,
        admission_queue=raw.admission.max_queue,
        admission_timeout_s=raw.admission.queue_timeout_s,
        latest=latest,
        specific=tuple(policy.specific) if policy.specific is not None else None,
        inputs=_specs(raw.inputs),
        outputs=_specs(raw.outputs),
        max_batch_size=raw.max_batch_size,
        max_batch_delay_s=raw.max_batch_delay_ms / 1000,
        max_queue=raw.max_queue,
        queue_timeout_s=raw.queue_timeout_ms / 1000,
        threads=raw.threads,
        warmup=raw.warmup if isinstance(raw.warmup, bool) else tuple(raw.warmup),
    )

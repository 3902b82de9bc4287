"""Modelport's own request bodies (admin API, browser tokens), validated strictly.

Unlike inference requests, these are not passed on anywhere, so unknown fields are errors
rather than pass-through, and absurd values (negative, non-numeric, huge) are a clear 400.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelport.errors import RequestError

MAX_PER_MINUTE = 1_000_000_000
MAX_CONCURRENCY = 1_000_000
MAX_BUDGET_USD = 1_000_000_000.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class KeyTools(_Strict):
    """A key's tool permissions: the function names its requests may declare."""

    allow: list[str] | None = Field(default=None, max_length=1000)
    deny: list[str] = Field(default_factory=list, max_length=1000)


class KeySpec(_Strict):
    name: str = Field(min_length=1, max_length=200)
    routes: list[str] | None = Field(default=None, max_length=1000)
    environment: Literal["dev", "test", "prod"] = "prod"
    rpm: int | None = Field(default=None, gt=0, le=MAX_PER_MINUTE)
    tpm: int | None = Field(default=None, gt=0, le=MAX_PER_MINUTE)
    max_concurrency: int | None = Field(default=None, gt=0, le=MAX_CONCURRENCY)
    budget_usd: float | None = Field(default=None, ge=0, le=MAX_BUDGET_USD)
    budget_period: Literal["day", "month"] = "month"
    expires_at: datetime | None = None
    priority: Literal["interactive", "batch"] = "interactive"
    role: Literal["caller", "reviewer"] = "caller"
    tools: KeyTools | None = None

    @field_validator("expires_at", mode="before")
    @classmethod
    def _parse_time(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError("must be an ISO 8601 date-time") from None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return value

    @field_validator("expires_at")
    @classmethod
    def _future(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is beyond the calendar in UTC") from None
        if value <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return value


class SwitchSpec(_Strict):
    """``POST /admin/switches``: turn something off (with how it answers meanwhile) or on."""

    scope: Literal["all", "route", "key", "provider", "model"]
    name: str = Field(default="", max_length=200)
    state: Literal["off", "on"]
    behaviour: Literal["refuse", "answer", "fallback"] = "refuse"
    message: str = Field(default="", max_length=4000)
    fallback_route: str | None = Field(default=None, min_length=1, max_length=200)
    reason: str = Field(default="", max_length=1000)


class CanarySpec(_Strict):
    """``POST /admin/routes/{route}/canary``: finish a canary by hand, or run it again."""

    action: Literal["promote", "abort", "resume"]
    reason: str = Field(default="", max_length=1000)


class ConfigSpec(_Strict):
    """``PUT /admin/config`` as JSON: the config's YAML text, why, and whether only to check
    it (the same can be sent as the YAML itself, with ``reason`` and ``dry_run`` in the
    query)."""

    text: str = Field(max_length=4 * 1024 * 1024)
    reason: str = Field(default="", max_length=1000)
    dry_run: bool = False


class DecisionSpec(_Strict):
    """``POST /admin/reviews/{id}``: approve (as it is, or with an edited answer) or reject."""

    decision: Literal["approve", "reject"]
    answer: str | None = Field(default=None, max_length=1_000_000)
    reason: str = Field(default="", max_length=4000)


class RollbackSpec(_Strict):
    """``POST /admin/config/rollback``: the version to bring back, by number or hash."""

    version: str | int
    reason: str = Field(default="", max_length=1000)


class RotateSpec(_Strict):
    grace_seconds: int = Field(default=0, ge=0, le=30 * 24 * 3600)


class TokenSpec(_Strict):
    route: str = Field(min_length=1)
    ttl_s: int = Field(default=900, gt=0, le=3600)
    rpm: int | None = Field(default=None, gt=0, le=MAX_PER_MINUTE)
    tpm: int | None = Field(default=None, gt=0, le=MAX_PER_MINUTE)
    max_concurrency: int | None = Field(default=None, gt=0, le=1_000_000)


class FeedbackSpec(_Strict):
    """``POST /v1/feedback``: what a user thought of one answer."""

    request_id: str = Field(min_length=1, max_length=128)
    outcome: Literal["accepted", "edited", "rejected"]
    correction: str | None = Field(default=None, max_length=64 * 1024)
    score: float | None = Field(default=None, ge=-1000, le=1000, allow_inf_nan=False)
    comment: str | None = Field(default=None, max_length=4096)


T = TypeVar("T", bound=BaseModel)


def parse(model: type[T], body: Any) -> T:
    """Validate ``body`` or raise a 400 naming the first bad field."""
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown field"
        raise RequestError(f"{field}: {message}" if field else message, param=field) from None


_RELATIVE = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_time(value: str, name: str, now: datetime | None = None) -> datetime:
    """An ISO-8601 time (UTC when it names no zone), or a time ago such as ``15m``, ``2h``,
    ``7d``; a ``RequestError`` naming ``name`` otherwise."""
    text = value.strip()
    unit = _RELATIVE.get(text[-1:]) if text else None
    if unit is not None and text[:-1].isdecimal():
        return (now or datetime.now(UTC)) - timedelta(seconds=int(text[:-1]) * unit)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RequestError(f"{name} must be an ISO-8601 time or a time ago such as 15m, 2h "
                           "or 7d.", param=name) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_status(value: str, name: str) -> tuple[int | None, int | None]:
    """An exact status (``404``) or a status class (``5xx``): ``(status, class)``."""
    if len(value) == 3 and value[0] in "12345" and value[1:].lower() == "xx":
        return None, int(value[0])
    if value.isdecimal() and 100 <= int(value) <= 599:
        return int(value), None
    raise RequestError(f"{name} must be a status code (404) or a class (5xx).", param=name)

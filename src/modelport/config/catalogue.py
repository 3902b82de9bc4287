"""The model catalogue (``models:``): what routes may use, who owns it, where it is in its life.

Each entry names a provider's model with its owner, prices and context window, and a status:
``draft`` (being tried; dev and test routes only), ``approved``, ``deprecated`` (still
served; answers say so with ``Deprecation``, ``Sunset`` and a ``Link`` to the successor) or
``retired`` (no longer served). Dates move a model along by themselves: from
``deprecated_at`` it is deprecated, from ``retire_at`` retired, whatever the status says.

A route's target names an entry by id (``model: <id>``, no ``provider``) instead of
repeating its provider, model and prices. Once a catalogue exists, routes in ``prod`` may
use only catalogue models that are approved or deprecated; ``resolve_catalogue`` reports
every other target by its key path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate

MODEL_STATUSES = ("draft", "approved", "deprecated", "retired")
SERVED_IN_PROD = frozenset({"approved", "deprecated"})


@dataclass(frozen=True, slots=True)
class CatalogueModel:
    id: str
    provider: str
    model: str  # the provider's name for it
    owner: str = ""
    status: str = "draft"
    version: str | None = None
    context_window: int | None = None
    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    deprecated_at: float | None = None  # Unix seconds
    retire_at: float | None = None
    successor: str | None = None

    @property
    def label(self) -> str:
        """The target label of its traffic in headers, metrics and the ledger."""
        return f"{self.provider}/{self.model}"

    def status_at(self, now: float) -> str:
        """The status in force at ``now``: the declared one, moved on by the dates."""
        if now >= self.retired_from:
            return "retired"
        if self.status == "deprecated" or (
                self.deprecated_at is not None and now >= self.deprecated_at):
            return "deprecated"
        return self.status

    @property
    def retired_from(self) -> float:
        """When it stops being served: now for a retired one, never without ``retire_at``."""
        if self.status == "retired":
            return -math.inf
        return self.retire_at if self.retire_at is not None else math.inf

    def lifecycle_headers(self, now: float) -> list[tuple[bytes, bytes]]:
        """``Deprecation`` (RFC 9745), ``Sunset`` (RFC 8594) and the successor's ``Link``,
        for an answer of a model that is (or is announced to be) deprecated."""
        headers: list[tuple[bytes, bytes]] = []
        deprecated = self.status == "deprecated" or self.deprecated_at is not None
        if not deprecated:
            return headers
        if self.deprecated_at is not None:
            headers.append((b"deprecation", f"@{int(self.deprecated_at)}".encode()))
        if self.retire_at is not None:
            headers.append((b"sunset", formatdate(self.retire_at, usegmt=True).encode()))
        if self.successor is not None:
            headers.append((b"link", f'</admin/models/{self.successor}>; '
                                     f'rel="successor-version"'.encode()))
        return headers


def prod_problem(entry: CatalogueModel | None, where: str, label: str) -> str | None:
    """Why a target of a prod route may not use this model; None when it may."""
    if entry is None:
        return (f"{where}: {label} is not in the models catalogue; routes in prod may use "
                "only catalogue models")
    if entry.status not in SERVED_IN_PROD:
        return (f"{where}: model '{entry.id}' is {entry.status}; routes in prod may use "
                "approved or deprecated models")
    return None


def by_label(models: Mapping[str, CatalogueModel]) -> dict[str, CatalogueModel]:
    """The catalogue by target label (provider/model)."""
    return {m.label: m for m in models.values()}

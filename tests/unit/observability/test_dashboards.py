"""The alert rules and the Grafana dashboard use only metrics that Modelport exports, and
every metric is documented in docs/observability.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from modelport.observability.metrics import Metrics

DOCS = Path(__file__).resolve().parents[3] / "docs"
METRIC = re.compile(r"\bmodelport_[a-z_]+")
SUFFIXES = ("_bucket", "_sum", "_count")


def _exported() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + s for s in SUFFIXES)
    return names


def _used_in_alerts() -> set[str]:
    rules = yaml.safe_load((DOCS / "alerts.yaml").read_text())["groups"][0]["rules"]
    assert len(rules) >= 8
    return {name for rule in rules for name in METRIC.findall(rule["expr"])}


def _used_in_grafana() -> set[str]:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"]
              if isinstance(v.get("query"), dict)]
    return {name for e in exprs for name in METRIC.findall(e)}


def test_alert_rules_use_only_exported_metrics() -> None:
    used = _used_in_alerts()
    assert used - _exported() == set()
    for needed in ("modelport_breaker_state", "modelport_ledger_dropped_total",
                   "modelport_feedback_total", "modelport_key_budget_spent_usd",
                   "modelport_request_duration_seconds_bucket"):
        assert needed in used


def test_the_grafana_dashboard_uses_only_exported_metrics() -> None:
    used = _used_in_grafana()
    assert used - _exported() == set()
    assert len(used) >= 15


def test_a_metric_that_does_not_exist_is_caught() -> None:
    assert {"modelport_no_such_metric_total"} - _exported() == {"modelport_no_such_metric_total"}


def test_every_metric_is_documented() -> None:
    text = (DOCS / "observability.md").read_text()
    missing = [name for name in {f.name for f in Metrics().registry.collect()}
               if name not in text]
    assert missing == []

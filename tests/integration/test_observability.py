"""Health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import httpx

from tests.gateway import InProcessGateway

CHAT = {"model": "support-summary", "messages": [{"role": "user", "content": "hi"}]}


def test_health_endpoints(client: httpx.Client, gateway: InProcessGateway) -> None:
    assert client.get("/health/live").json() == {"status": "live"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["config_version"] == gateway.settings.config_version


def test_metrics_count_requests_by_route_target_and_status(client: httpx.Client) -> None:
    client.post("/v1/chat/completions", json=CHAT)
    client.post("/v1/chat/completions", json={**CHAT, "model": "nope"})
    text = client.get("/metrics").text
    assert ('modelport_requests_total{environment="prod",model_version="gpt-4o-mini",'
            'route="support-summary",status="200",status_class="2xx",'
            'target="upstream-a/gpt-4o-mini"} 1.0') in text
    assert ('modelport_requests_total{environment="-",model_version="-",route="-",'
            'status="404",status_class="4xx",target="-"} 1.0') in text
    assert 'modelport_errors_total{code="model_not_found",route="-"} 1.0' in text
    for name in ("modelport_request_duration_seconds_bucket",
                 "modelport_upstream_duration_seconds_bucket",
                 "modelport_overhead_duration_seconds_bucket",
                 "modelport_requests_in_flight", "modelport_ledger_written_total",
                 "modelport_ledger_pending"):
        assert name in text
    assert ('modelport_tokens_total{direction="prompt",route="support-summary",'
            'target="upstream-a/gpt-4o-mini"} 7.0') in text
    for reason in ("overflow", "rejected", "shutdown"):
        assert f'modelport_ledger_dropped_total{{reason="{reason}"}} 0.0' in text


def test_metrics_name_the_config_version_in_force(
    client: httpx.Client, gateway: InProcessGateway
) -> None:
    version = gateway.settings.config_version
    assert f'config_version="{version}"' in client.get("/metrics").text


def test_openapi_document_describes_the_endpoints(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models",
                 "/v1/tokens", "/admin/keys", "/admin/keys/{key_id}",
                 "/admin/keys/{key_id}/rotate", "/admin/audit", "/admin/usage",
                 "/health/ready", "/metrics", "/v1/feedback", "/admin/requests",
                 "/admin/requests/{request_id}", "/admin/feedback", "/v2/models/{name}/infer"):
        assert path in doc["paths"]


def test_ledger_lag_is_exported(client: httpx.Client) -> None:
    client.post("/v1/chat/completions", json=CHAT)
    text = client.get("/metrics").text
    lag = [line for line in text.splitlines() if line.startswith("modelport_ledger_lag_seconds ")]
    assert len(lag) == 1 and 0 <= float(lag[0].split()[1]) < 5

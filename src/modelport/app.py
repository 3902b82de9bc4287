"""The composition root: the HTTP surface with every part mounted (inference and admin)."""

from __future__ import annotations

from typing import BinaryIO

from modelport.admin import batches as admin_batches
from modelport.admin import config as admin_config
from modelport.admin import keys as admin_keys
from modelport.admin import models as admin_models
from modelport.admin import requests as admin_requests
from modelport.admin import reviews as admin_reviews
from modelport.admin import routes_status as admin_routes_status
from modelport.admin import stats as admin_stats
from modelport.admin import switches as admin_switches
from modelport.admin import usage as admin_usage
from modelport.api.app import create_app
from modelport.api.middleware import RequestMiddleware
from modelport.config.settings import Settings
from modelport.dashboard import pages as dashboard_pages
from modelport.dashboard import signin as dashboard_signin
from modelport.observability.tracing import SpanExporter


def build_app(
    settings: Settings, access_stream: BinaryIO | None = None,
    trace_exporter: SpanExporter | None = None, *, reload_on_hangup: bool = False,
) -> RequestMiddleware:
    return create_app(settings, access_stream, trace_exporter=trace_exporter,
                      reload_on_hangup=reload_on_hangup,
                      extra_routes=[*admin_keys.routes(), *admin_usage.routes(),
                                      *admin_requests.routes(), *admin_stats.routes(),
                                      *admin_routes_status.routes(),
                                      *admin_switches.routes(), *admin_models.routes(),
                                      *admin_config.routes(), *admin_reviews.routes(),
                                      *admin_batches.routes(),
                                      *dashboard_pages.routes(), *dashboard_signin.routes()])

"""The composition root: the HTTP surface with every part mounted (inference and admin)."""

from __future__ import annotations

from typing import BinaryIO

from modelport.admin import keys as admin_keys
from modelport.admin import usage as admin_usage
from modelport.api.app import create_app
from modelport.api.middleware import RequestMiddleware
from modelport.config.settings import Settings


def build_app(settings: Settings, access_stream: BinaryIO | None = None) -> RequestMiddleware:
    return create_app(settings, access_stream,
                      extra_routes=[*admin_keys.routes(), *admin_usage.routes()])

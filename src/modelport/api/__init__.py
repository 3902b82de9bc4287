"""The HTTP surface: ``create_app(settings)``, the routes per protocol, the middleware."""

from modelport.api.app import create_app

__all__ = ["create_app"]

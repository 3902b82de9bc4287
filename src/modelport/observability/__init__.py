"""Metrics, structured logs with secret redaction, and (later) traces."""

from modelport.observability.logging import configure_logging
from modelport.observability.metrics import Metrics

__all__ = ["Metrics", "configure_logging"]

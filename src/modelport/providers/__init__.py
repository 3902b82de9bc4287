"""What Modelport calls: remote inference APIs, one module per upstream protocol."""

from modelport.providers.base import Provider, UpstreamReply, UpstreamStream
from modelport.providers.registry import build_provider

__all__ = ["Provider", "UpstreamReply", "UpstreamStream", "build_provider"]

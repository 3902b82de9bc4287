"""The use cases: route a request, call the provider, relay the answer, record what happened."""

from modelport.inference.proxy import ProxyService
from modelport.inference.recorder import Recorder
from modelport.inference.relay import StreamRelay

__all__ = ["ProxyService", "Recorder", "StreamRelay"]

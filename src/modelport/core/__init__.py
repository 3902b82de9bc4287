"""Protocol-neutral domain types shared by every layer: operations, usage, the request context."""

from modelport.core.context import RequestContext
from modelport.core.operation import Operation
from modelport.core.usage import Usage

__all__ = ["Operation", "RequestContext", "Usage"]

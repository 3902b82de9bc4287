"""Routes and targets: which provider and model serve a request."""

from modelport.routing.table import Route, RouteTable, Target

__all__ = ["Route", "RouteTable", "Target"]

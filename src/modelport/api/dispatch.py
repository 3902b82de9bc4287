"""Request dispatch: a dict lookup for fixed paths, Starlette's router for the rest.

Starlette's router tries each route's regular expression in turn; for the fixed paths that
carry the traffic (``/v1/chat/completions`` and its siblings) one dict lookup does the same
job. Routes with path parameters, unknown paths and the lifespan go to the router.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable

from starlette.routing import Route, Router

from modelport.api.asgi import Handler, Receive, Scope, Send
from modelport.errors import MethodNotAllowed


class Dispatch:
    def __init__(self, routes: Iterable[Route], router: Router) -> None:
        self._fixed: dict[str, dict[str, Handler]] = {}
        for route in routes:
            if route.param_convertors:
                router.routes.append(route)
                continue
            methods = self._fixed.setdefault(route.path, {})
            for method in route.methods or ("GET",):
                methods[method] = route.app
        self._router = router

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The handler's coroutine, returned rather than awaited: a frame less for every
        request to pass through each time it resumes."""
        if scope["type"] == "http":
            methods = self._fixed.get(scope["path"])
            if methods is not None:
                handler = methods.get(scope["method"])
                if handler is None:
                    raise MethodNotAllowed("This method is not allowed on this path.",
                                           allow=", ".join(sorted(methods)))
                return handler(scope, receive, send)
        return self._router(scope, receive, send)

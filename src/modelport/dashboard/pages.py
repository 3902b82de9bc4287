"""``GET /dashboard`` and its static files: the page, its script and styles, vendored uPlot.

The files ship in the package (``static/``) and are read once, when the routes are built; only
the names listed in ``ASSETS`` are served. The page holds no data and needs no session: its
script asks the admin API for everything, with the session cookie.
"""

from __future__ import annotations

from importlib import resources

from starlette.routing import Route

from modelport.api.asgi import AsgiEndpoint, Receive, Scope, Send
from modelport.api.responses import send_bytes
from modelport.dashboard.headers import add_header, protect
from modelport.errors import NotFound

INDEX = "index.html"
ASSETS = ("app.js", "charts.js", "style.css", "uplot/uPlot.iife.min.js",
          "uplot/uPlot.min.css", "uplot/LICENSE")
_TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8",
          "css": "text/css; charset=utf-8"}


def _content_type(name: str) -> str:
    return _TYPES.get(name.rpartition(".")[2], "text/plain; charset=utf-8")


def load_assets() -> dict[str, tuple[bytes, str]]:
    """Each file the dashboard serves, with its content type."""
    root = resources.files(__package__ or "modelport.dashboard").joinpath("static")
    return {name: (root.joinpath(*name.split("/")).read_bytes(), _content_type(name))
            for name in (INDEX, *ASSETS)}


class Pages:
    """The page and its files, held in memory."""

    __slots__ = ("_assets",)

    def __init__(self, assets: dict[str, tuple[bytes, str]]) -> None:
        self._assets = assets

    async def index(self, scope: Scope, receive: Receive, send: Send) -> None:
        protect(scope)
        body, content_type = self._assets[INDEX]
        await send_bytes(send, 200, body, content_type)

    async def asset(self, scope: Scope, receive: Receive, send: Send) -> None:
        protect(scope)
        name = scope["path_params"]["name"]
        if name == INDEX or name not in self._assets:
            raise NotFound("There is no such dashboard file.")
        body, content_type = self._assets[name]
        await send_bytes(send, 200, body, content_type)


async def _to_index(scope: Scope, receive: Receive, send: Send) -> None:
    protect(scope)
    add_header(scope, b"location", b"/dashboard")
    await send_bytes(send, 308, b"", "text/plain; charset=utf-8")


def routes() -> list[Route]:
    pages = Pages(load_assets())
    return [
        Route("/dashboard", AsgiEndpoint(pages.index), methods=["GET"]),
        Route("/dashboard/", AsgiEndpoint(_to_index), methods=["GET"]),
        Route("/dashboard/static/{name:path}", AsgiEndpoint(pages.asset), methods=["GET"]),
    ]

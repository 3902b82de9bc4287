"""Running the app under uvicorn, with the HTTP stack chosen by measurement.

uvicorn with httptools and uvloop, one worker, no access log (Modelport writes its own
structured request log). Everything that could fail because of the config is checked
before the socket opens.
"""

from __future__ import annotations

import sys

import uvicorn

from modelport.api import create_app
from modelport.config.settings import Settings
from modelport.errors import ConfigError
from modelport.observability.logging import configure_logging
from modelport.store import make_engine


def preflight(settings: Settings) -> None:
    """Fail before serving on anything the schema could not check (the store URL)."""
    try:
        make_engine(settings.store.url).dispose()
    except Exception as exc:
        raise ConfigError([f"store.url: cannot use this database URL ({exc})"]) from None


def run(settings: Settings, *, host: str, port: int, log_level: str) -> None:
    preflight(settings)
    configure_logging(log_level, settings.secrets())
    wants_access = settings.server.access_log and log_level in ("debug", "info")
    access = sys.stderr.buffer if wants_access else None
    config = uvicorn.Config(
        create_app(settings, access),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level=log_level,
        server_header=False,
        proxy_headers=False,  # the client address is the socket peer unless a proxy is trusted
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()

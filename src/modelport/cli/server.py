"""Running the app under uvicorn, with the HTTP stack chosen by measurement.

uvicorn with httptools and uvloop, one worker, no access log (Modelport writes its own
structured request log). Everything that could fail because of the config is checked
before the socket opens.
"""

from __future__ import annotations

import ipaddress
import logging
import sys

import uvicorn

from modelport.app import build_app
from modelport.config.settings import Settings
from modelport.errors import ConfigError
from modelport.observability.logging import configure_logging
from modelport.store import make_engine

log = logging.getLogger("modelport.server")


def preflight(settings: Settings) -> None:
    """Fail before serving on anything the schema could not check (the store URL)."""
    try:
        make_engine(settings.store.url).dispose()
    except Exception as exc:
        raise ConfigError([f"store.url: cannot use this database URL ({exc})"]) from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings, host: str) -> None:
    """Open mode (no admin key, no keys) is allowed on a loopback address only."""
    if settings.auth_required or is_loopback(host):
        return
    raise ConfigError([
        f"--host {host}: refusing to serve without keys on a non-loopback address. Anyone "
        "who can reach it could spend your providers' credit. Set an admin key "
        "(MODELPORT_ADMIN_KEY, or admin_key: env:NAME in the config) and create keys, or "
        "bind to 127.0.0.1."
    ])


def run(settings: Settings, *, host: str, port: int, log_level: str) -> None:
    preflight(settings)
    check_exposure(settings, host)
    configure_logging(log_level, settings.secrets())
    if not settings.auth_required:
        log.warning(
            "running open: no admin key and no keys are configured, so every request is "
            "served without a key; this is allowed on a loopback address only",
            extra={"host": host},
        )
    wants_access = settings.server.access_log and log_level in ("debug", "info")
    access = sys.stderr.buffer if wants_access else None
    config = uvicorn.Config(
        build_app(settings, access),
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

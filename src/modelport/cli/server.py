"""``modelport serve``: checks that can fail fast, then the app under uvicorn.

uvicorn with httptools and uvloop (its protocol guarded by ``api.connections``), one
worker, no access log (Modelport writes its own structured request log). Before anything
slow (training the offline default's Iris model, loading local models) it takes the
listening socket, opens the store and applies its migrations, and checks the exposure
rule: a port in use, a folder that cannot be written or a store that cannot be opened is
one plain line on stderr and exit status 3, a config problem exit status 2. The socket
bound here is the one uvicorn serves on, so no other process can take it in between.
"""

from __future__ import annotations

import errno
import logging
import socket
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import click
import uvicorn

from modelport.api.connections import ConnectionLimits, guarded_protocol
from modelport.api.origins import is_loopback_name
from modelport.app import build_app
from modelport.cli.source import (
    DEFAULT_CONFIG,
    EXIT_START,
    OFFLINE_DEFAULT,
    config_failure,
    load_or_exit,
    offline_default,
)
from modelport.config.defaults import HOME, Extras, default_config, describe
from modelport.config.settings import Settings
from modelport.errors import ConfigError, ServiceUnavailable
from modelport.observability.logging import configure_logging
from modelport.store.engine import open_engine

log = logging.getLogger("modelport.server")


def serve_command(config_path: str | None, host: str, port: int, log_level: str | None) -> None:
    extras = None
    if config_path is None and not Path(DEFAULT_CONFIG).exists():
        extras = Extras.detect()
        source = OFFLINE_DEFAULT
        settings = offline_default(extras)
    else:
        source = config_path or DEFAULT_CONFIG
        settings = load_or_exit(source)
    try:
        check_exposure(settings, host)
        sock = listen(host, port)
        check_store(settings)
    except ConfigError as exc:
        config_failure(source, exc)
    if extras is not None:
        _announce_offline_default(extras, host, sock)
    run(settings, sock, host=host, log_level=log_level or settings.server.log_level)


def _start_failure(message: str) -> NoReturn:
    click.echo(f"modelport: {message}", err=True)
    sys.exit(EXIT_START)


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, taken now; a port in use is one plain line and exit 3."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            _start_failure(f"port {port} on {host} is already in use (another modelport "
                           "serve?); stop it, or choose another port with --port")
        if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
            _start_failure(f"cannot listen on {host}: no such address on this machine")
        _start_failure(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    sock.set_inheritable(True)
    return sock


def check_store(settings: Settings) -> None:
    """Open the store and apply its migrations before serving, so that the first records
    are not the ones held back while a migration runs."""
    try:
        open_engine(settings.store.url).dispose()
    except ServiceUnavailable as exc:
        _start_failure(f"cannot open the store ({exc.message})")
    except OSError as exc:
        where = exc.filename or "the store's folder"
        _start_failure(f"cannot write to {where}: {exc.strerror or exc}")


def check_exposure(settings: Settings, host: str) -> None:
    """Open mode (no admin key, no keys) is allowed on a loopback address only."""
    if settings.auth_required or is_loopback_name(host):
        return
    raise ConfigError([
        f"--host {host}: refusing to serve without keys on a non-loopback address. Anyone "
        "who can reach it could spend your providers' credit. Set an admin key "
        "(MODELPORT_ADMIN_KEY, or admin_key: env:NAME in the config) and create keys, or "
        "bind to 127.0.0.1."
    ])


def _announce_offline_default(extras: Extras, host: str, sock: socket.socket) -> None:
    """Put the Iris model in place at first start (a second) and say what is served, with
    curl lines."""
    data = default_config(extras)
    if extras.tensor and not (HOME / "models" / "iris").is_dir():
        trained = subprocess.run(
            [sys.executable, "-m", "modelport.runtimes.iris", str(HOME / "models")],
            capture_output=True, text=True, check=False)
        if trained.returncode != 0:
            click.echo(f"modelport: could not train the Iris model: {trained.stderr.strip()}",
                       err=True)
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    click.echo(f"modelport: no {DEFAULT_CONFIG} here; serving local models, offline, on "
               f"http://{shown}:{port} (ledger in {HOME}/):", err=True)
    for line in describe(data, f"http://{shown}:{port}"):
        click.echo(line, err=True)


def run(settings: Settings, sock: socket.socket, *, host: str, log_level: str) -> None:
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
        build_app(settings, access, reload_on_hangup=True),
        loop="uvloop",
        http=guarded_protocol(ConnectionLimits.of(settings.server)),
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level=log_level,
        server_header=False,
        proxy_headers=False,  # the client address is the socket peer unless a proxy is trusted
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run(sockets=[sock])

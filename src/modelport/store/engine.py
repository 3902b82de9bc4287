"""Opening the store and bringing its schema up to date with Alembic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from modelport.errors import ConfigError, ServiceUnavailable

_MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x6D706F7274  # "mport": replicas starting together migrate one at a time


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite's folder is created, PostgreSQL uses psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers (the admin API, ``sqlite3``) work while the writer appends, and
    ``synchronous=NORMAL`` is durable across a process crash (not a power cut) in WAL mode."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def migrate(engine: Engine) -> None:
    """Apply every migration not yet applied (``alembic upgrade head``)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def open_engine(url: str) -> Engine:
    """An engine for ``url`` with every migration applied; a URL that cannot be used is a
    ``ConfigError`` naming ``store.url``, an unreachable database ``ServiceUnavailable``."""
    try:
        engine = make_engine(url)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError([f"store.url: cannot use this database URL ({exc})"]) from None
    with unavailable_as_error():
        migrate(engine)
    return engine


@contextmanager
def unavailable_as_error() -> Iterator[None]:
    """The boundary where a database that cannot be reached becomes ``ServiceUnavailable``."""
    try:
        yield
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise ServiceUnavailable(f"the store is unavailable: {reason}") from exc


class EngineStore:
    """A store over one engine: ``Store(engine)`` over a migrated engine the caller owns,
    or ``Store.open(url)``, which migrates and disposes of the engine on ``close``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._owns_engine = False

    @classmethod
    def open(cls, url: str, **options: Any) -> Self:
        store = cls(open_engine(url), **options)
        store._owns_engine = True
        return store

    def close(self) -> None:
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

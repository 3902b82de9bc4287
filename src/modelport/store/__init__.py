"""Persistence: SQL tables, migrations and the ledger writer. The only package that speaks SQL."""

from modelport.store.engine import make_engine, migrate
from modelport.store.ledger import LedgerRecord, LedgerWriter

__all__ = ["LedgerRecord", "LedgerWriter", "make_engine", "migrate"]

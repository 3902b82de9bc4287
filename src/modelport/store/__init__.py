"""Persistence: SQL tables, migrations, the ledger writer, keys with the audit log, and usage
reports. The only package that speaks SQL."""

from modelport.store.canaries import CanaryRow, CanaryStore
from modelport.store.config_versions import ConfigVersionRow, ConfigVersionStore
from modelport.store.engine import make_engine, migrate
from modelport.store.keys import AuditEntry, KeyRow, KeyStore, SecretRow
from modelport.store.ledger import LedgerRecord, LedgerWriter
from modelport.store.switches import SwitchRow, SwitchStore
from modelport.store.usage import UsageRow, UsageStore

__all__ = [
    "AuditEntry",
    "CanaryRow",
    "CanaryStore",
    "ConfigVersionRow",
    "ConfigVersionStore",
    "KeyRow",
    "KeyStore",
    "LedgerRecord",
    "LedgerWriter",
    "SecretRow",
    "SwitchRow",
    "SwitchStore",
    "UsageRow",
    "UsageStore",
    "make_engine",
    "migrate",
]

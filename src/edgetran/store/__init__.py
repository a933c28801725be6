"""The workspace database and the measurement record (shared infrastructure)."""

from edgetran.store.database import DEFAULT_DB, Store, StoreError, database_url
from edgetran.store.records import METER_KINDS, Measurement

__all__ = ["DEFAULT_DB", "METER_KINDS", "Measurement", "Store", "StoreError", "database_url"]

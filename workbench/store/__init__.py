"""Persistence: the SQLAlchemy schema, Alembic migrations and the :class:`Store`."""
from __future__ import annotations

from workbench.store.files import WalMissingWarning
from workbench.store.history import format_history
from workbench.store.store import NotFoundError, StorageFault, Store, StoreError

__all__ = ["NotFoundError", "StorageFault", "Store", "StoreError", "WalMissingWarning", "format_history"]

"""Persistence: the SQLAlchemy schema, Alembic migrations and the :class:`Store`."""
from __future__ import annotations

from workbench.store.history import format_history
from workbench.store.store import NotFoundError, Store, StoreError

__all__ = ["NotFoundError", "Store", "StoreError", "format_history"]

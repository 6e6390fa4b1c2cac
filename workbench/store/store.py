"""The Store: sessions, their orders, fills, positions, trades, equity, events and commands.

The store is the shared truth between processes (runners, dashboards, ``workbench host``):
every method is one short transaction, and returns plain dicts or DataFrames. SQLite
(default: :func:`workbench.paths.default_db_url`) is tuned for several processes on one file
(see :mod:`workbench.store.db`); any other SQLAlchemy URL works unchanged.

The methods are defined by topic: :mod:`.sessions` (sessions, history, events, templates),
:mod:`.commands`, :mod:`.trading` (orders, fills, positions, equity, trades, backtests) and
:mod:`.runner_state` (recovery state, checkpoints); :mod:`.base` holds the transactions.
"""
from __future__ import annotations

from workbench.store.base import NotFoundError, StoreError
from workbench.store.commands import COMMAND_STATUSES, CommandsStore
from workbench.store.faults import StorageFault
from workbench.store.runner_state import RunnerStateStore
from workbench.store.sessions import SessionsStore
from workbench.store.team import TeamStore

__all__ = ["COMMAND_STATUSES", "NotFoundError", "StorageFault", "Store", "StoreError"]


class Store(SessionsStore, CommandsStore, RunnerStateStore, TeamStore):
    """Persistent store of trading sessions at ``url`` (migrated to the newest schema on open)."""

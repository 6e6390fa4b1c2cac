"""The store's tables as SQLAlchemy Core tables (not ORM models: no process loads ``sqlalchemy.orm``, ~5 MB).

Every timestamp is a :class:`UTCDateTime`: written as UTC (naive input is taken to be UTC)
and read back timezone-aware, on SQLite as on PostgreSQL. JSON is kept in text columns
(``*_json``) so any backend works. Rows of a session go when the session goes
(``ON DELETE CASCADE``); a deleted parent leaves its restarts/clones with ``parent_id`` NULL.
Keep ``migrations/versions`` in step: a test compares it with this module.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pandas as pd
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

from workbench.domain import as_utc

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's SQLite DATETIME storage format


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime stored in UTC and returned timezone-aware (UTC); naive input means UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__} {value!r}")
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    @staticmethod
    def sqlite_text(times: pd.DatetimeIndex) -> list[str]:
        """``times`` (aware) as SQLite stores them, for bulk inserts that skip per-row conversion."""
        return times.tz_convert(timezone.utc).tz_localize(None).strftime(SQLITE_FORMAT).tolist()


metadata = MetaData(naming_convention=NAMING)


def _session_fk() -> ForeignKey:
    return ForeignKey("sessions.id", ondelete="CASCADE")


#: One run of a session (backtest, paper or live); restarts and clones point to ``parent_id``.
sessions = Table(
    "sessions", metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), default="", nullable=False),
    Column("kind", String(16), index=True, nullable=False),
    Column("state", String(16), index=True, nullable=False),
    Column("strategy", String(64), index=True, nullable=False),
    Column("symbols", Text, nullable=False),  # JSON list
    Column("config_json", Text, nullable=False),
    Column("initial_balance", Float, nullable=False),
    Column("created_at", UTCDateTime, index=True, nullable=False),
    Column("started_at", UTCDateTime),
    Column("ended_at", UTCDateTime),
    Column("heartbeat_at", UTCDateTime),
    Column("runner", String(200)),  # host:pid
    # the runner's lease (workbench.store.lease): a generation bumped by each acquisition (the fencing
    # token) and when it expires unless renewed
    Column("lease_token", Integer, default=0, server_default="0", nullable=False),
    Column("lease_expires", UTCDateTime),
    Column("final_equity", Float),
    Column("pnl", Float),
    Column("total_return", Float),
    Column("trade_count", Integer),
    Column("metrics_json", Text),
    Column("error", Text),
    Column("parent_id", String(32), ForeignKey("sessions.id", ondelete="SET NULL")),
    Column("run_no", Integer, default=1, nullable=False),
    # what this clone or promotion changed from its parent's config: {"dotted.field": [parent's, this one's]}
    Column("changes_json", Text),
    # the bars' market regime (workbench.metrics.regime), set when a session ends or a backtest is saved
    Column("regime", String(16)),
    Column("regime_json", Text),
)


orders = Table(
    "orders", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(32), _session_fk(), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("side", String(8), nullable=False),
    Column("type", String(16), nullable=False),
    Column("quantity", Float, nullable=False),
    Column("limit_price", Float),
    Column("status", String(24), nullable=False),
    Column("filled_quantity", Float, default=0.0, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("reason", String(64), default="", nullable=False),
    Column("exchange_id", String(64)),
    UniqueConstraint("session_id", "client_id"),
)


fills = Table(
    "fills", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(32), _session_fk(), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("fill_id", String(64), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("side", String(8), nullable=False),
    Column("quantity", Float, nullable=False),
    Column("price", Float, nullable=False),
    Column("commission", Float, nullable=False),
    Column("slippage", Float, nullable=False),
    Column("time", UTCDateTime, nullable=False),
    UniqueConstraint("session_id", "fill_id"),
)


#: Current position per session and symbol (upserted).
positions = Table(
    "positions", metadata,
    Column("session_id", String(32), _session_fk(), primary_key=True),
    Column("symbol", String(32), primary_key=True),
    Column("quantity", Float, nullable=False),
    Column("avg_price", Float, nullable=False),
    Column("opened_at", UTCDateTime),
    Column("realized_pnl", Float, default=0.0, nullable=False),
    Column("peak_price", Float, default=0.0, nullable=False),
    Column("extra_json", Text),
    Column("updated_at", UTCDateTime, nullable=False),
)


#: A round trip: ``status`` 'closed' (exit_* set) or 'open'; the columns of
#: :data:`workbench.domain.TRADE_COLUMNS`, ``duration`` in seconds (NULL while open).
trades = Table(
    "trades", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(32), _session_fk(), index=True, nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("entry_time", UTCDateTime, nullable=False),
    Column("exit_time", UTCDateTime),
    Column("entry_price", Float, nullable=False),
    Column("exit_price", Float),
    Column("quantity", Float, nullable=False),
    Column("pnl", Float),
    Column("return_pct", Float),
    Column("commission", Float, default=0.0, nullable=False),
    Column("slippage", Float, default=0.0, nullable=False),
    Column("exit_reason", String(64)),
    Column("status", String(16), nullable=False),
    Column("entry_fees", Float),  # revision 0002; NULL for rows saved before it
    Column("exit_fees", Float),
    Column("duration", Float),  # seconds
    Column("side", String(8)),  # revision 0008: long/short; NULL (long) before it
    Column("funding", Float),  # carrying costs in the P&L (execution rule 16)
    Column("interest", Float),
)


equity = Table(
    "equity", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(32), _session_fk(), nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Column("equity", Float, nullable=False),
    Column("cash", Float),
    Column("exposure", Float),
    Index("ix_equity_session_id_time", "session_id", "time"),
)


#: Who did what, when and why; ``session_id`` NULL for store-wide events.
events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(32), _session_fk()),
    Column("time", UTCDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("message", Text, default="", nullable=False),
    Column("data_json", Text),
    Column("actor", String(64), default="system", nullable=False),
    Index("ix_events_session_id_time", "session_id", "time"),
)


#: A control command for a session's runner: pending → applied | rejected.
commands = Table(
    "commands", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(32), _session_fk(), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("command", String(64), nullable=False),
    Column("args_json", Text),
    Column("actor", String(64), default="user", nullable=False),
    Column("status", String(16), default="pending", nullable=False),
    Column("applied_at", UTCDateTime),
    Column("result", Text, default="", nullable=False),
    Index("ix_commands_session_id_status", "session_id", "status"),
)


templates = Table(
    "templates", metadata,
    Column("name", String(200), primary_key=True),
    Column("description", Text, default="", nullable=False),
    Column("config_json", Text, nullable=False),
    Column("builtin", Boolean, default=False, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)


#: The runner's own state (e.g. last processed bar) for crash recovery.
session_state = Table(
    "session_state", metadata,
    Column("session_id", String(32), _session_fk(), primary_key=True),
    Column("state_json", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)


#: A team member and their role (viewer, operator, admin); any row turns team mode on (revision 0005).
users = Table(
    "users", metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(64), nullable=False),
)


#: A closed live bar a session was handed (revision 0007): what its fidelity twin backtests.
session_bars = Table(
    "session_bars", metadata,
    Column("session_id", String(32), _session_fk(), primary_key=True),
    Column("symbol", String(64), primary_key=True),
    Column("time", UTCDateTime, primary_key=True),
    Column("open", Float, nullable=False),
    Column("high", Float, nullable=False),
    Column("low", Float, nullable=False),
    Column("close", Float, nullable=False),
    Column("volume", Float, nullable=False),
)

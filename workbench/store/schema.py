"""The store's tables as SQLAlchemy 2 declarative models.

Every timestamp is a :class:`UTCDateTime`: written as UTC (naive input is taken to be UTC)
and read back timezone-aware, on SQLite as on PostgreSQL. JSON is kept in text columns
(``*_json``) so any backend works. Rows of a session go when the session goes
(``ON DELETE CASCADE``); a deleted parent leaves its restarts/clones with ``parent_id`` NULL.
Keep ``migrations/versions`` in step: a test compares it with this module.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, cast

import pandas as pd
from sqlalchemy import (
    Boolean,
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
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
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


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _session_fk() -> ForeignKey:
    return ForeignKey("sessions.id", ondelete="CASCADE")


class SessionRow(Base):
    """One run of a session (backtest, paper or live); restarts and clones point to ``parent_id``."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(16), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    strategy: Mapped[str] = mapped_column(String(64), index=True)
    symbols: Mapped[str] = mapped_column(Text)  # JSON list
    config_json: Mapped[str] = mapped_column(Text)
    initial_balance: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    runner: Mapped[str | None] = mapped_column(String(200))  # host:pid
    # the runner's lease (workbench.store.lease): a generation bumped by each acquisition (the fencing
    # token) and when it expires unless renewed
    lease_token: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_expires: Mapped[datetime | None] = mapped_column(UTCDateTime)
    final_equity: Mapped[float | None] = mapped_column(Float)
    pnl: Mapped[float | None] = mapped_column(Float)
    total_return: Mapped[float | None] = mapped_column(Float)
    trade_count: Mapped[int | None] = mapped_column(Integer)
    metrics_json: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    parent_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("sessions.id", ondelete="SET NULL"))
    run_no: Mapped[int] = mapped_column(Integer, default=1)
    # what this clone or promotion changed from its parent's config: {"dotted.field": [parent's, this one's]}
    changes_json: Mapped[str | None] = mapped_column(Text)
    # the bars' market regime (workbench.metrics.regime), set when a session ends or a backtest is saved
    regime: Mapped[str | None] = mapped_column(String(16))
    regime_json: Mapped[str | None] = mapped_column(Text)


class OrderRow(Base):
    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("session_id", "client_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(String(32), _session_fk())
    client_id: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))
    type: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[float] = mapped_column(Float)
    limit_price: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(24))
    filled_quantity: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(64), default="")
    exchange_id: Mapped[str | None] = mapped_column(String(64))


class FillRow(Base):
    __tablename__ = "fills"
    __table_args__ = (UniqueConstraint("session_id", "fill_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(String(32), _session_fk())
    client_id: Mapped[str] = mapped_column(String(64))
    fill_id: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))
    quantity: Mapped[float] = mapped_column(Float)
    price: Mapped[float] = mapped_column(Float)
    commission: Mapped[float] = mapped_column(Float)
    slippage: Mapped[float] = mapped_column(Float)
    time: Mapped[datetime] = mapped_column(UTCDateTime)


class PositionRow(Base):
    """Current position per session and symbol (upserted)."""

    __tablename__ = "positions"

    session_id: Mapped[str] = mapped_column(String(32), _session_fk(), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    quantity: Mapped[float] = mapped_column(Float)
    avg_price: Mapped[float] = mapped_column(Float)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    realized_pnl: Mapped[float] = mapped_column(Float, default=0.0)
    peak_price: Mapped[float] = mapped_column(Float, default=0.0)
    extra_json: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TradeRow(Base):
    """A round trip: ``status`` 'closed' (exit_* set) or 'open'; the columns of
    :data:`workbench.domain.TRADE_COLUMNS`, ``duration`` in seconds (NULL while open)."""

    __tablename__ = "trades"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(String(32), _session_fk(), index=True)
    symbol: Mapped[str] = mapped_column(String(32))
    entry_time: Mapped[datetime] = mapped_column(UTCDateTime)
    exit_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    entry_price: Mapped[float] = mapped_column(Float)
    exit_price: Mapped[float | None] = mapped_column(Float)
    quantity: Mapped[float] = mapped_column(Float)
    pnl: Mapped[float | None] = mapped_column(Float)
    return_pct: Mapped[float | None] = mapped_column(Float)
    commission: Mapped[float] = mapped_column(Float, default=0.0)
    slippage: Mapped[float] = mapped_column(Float, default=0.0)
    exit_reason: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    entry_fees: Mapped[float | None] = mapped_column(Float)  # revision 0002; NULL for rows saved before it
    exit_fees: Mapped[float | None] = mapped_column(Float)
    duration: Mapped[float | None] = mapped_column(Float)  # seconds
    side: Mapped[str | None] = mapped_column(String(8))  # revision 0008: long/short; NULL (long) before it
    funding: Mapped[float | None] = mapped_column(Float)  # carrying costs in the P&L (execution rule 16)
    interest: Mapped[float | None] = mapped_column(Float)


class EquityRow(Base):
    __tablename__ = "equity"
    __table_args__ = (Index("ix_equity_session_id_time", "session_id", "time"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(String(32), _session_fk())
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    equity: Mapped[float] = mapped_column(Float)
    cash: Mapped[float | None] = mapped_column(Float)
    exposure: Mapped[float | None] = mapped_column(Float)


class EventRow(Base):
    """Who did what, when and why; ``session_id`` NULL for store-wide events."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_session_id_time", "session_id", "time"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str | None] = mapped_column(String(32), _session_fk())
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    data_json: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64), default="system")


class CommandRow(Base):
    """A control command for a session's runner: pending → applied | rejected."""

    __tablename__ = "commands"
    __table_args__ = (Index("ix_commands_session_id_status", "session_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(String(32), _session_fk())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    command: Mapped[str] = mapped_column(String(64))
    args_json: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64), default="user")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[str] = mapped_column(Text, default="")


class TemplateRow(Base):
    __tablename__ = "templates"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    config_json: Mapped[str] = mapped_column(Text)
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SessionStateRow(Base):
    """The runner's own state (e.g. last processed bar) for crash recovery."""

    __tablename__ = "session_state"

    session_id: Mapped[str] = mapped_column(String(32), _session_fk(), primary_key=True)
    state_json: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UserRow(Base):
    """A team member and their role (viewer, operator, admin); any row turns team mode on (revision 0005)."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(64))


class SessionBarRow(Base):
    """A closed live bar a session was handed (revision 0007): what its fidelity twin backtests."""

    __tablename__ = "session_bars"

    session_id: Mapped[str] = mapped_column(String(32), _session_fk(), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    open: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    volume: Mapped[float] = mapped_column(Float)


metadata = Base.metadata


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


sessions = _table(SessionRow)
orders = _table(OrderRow)
fills = _table(FillRow)
positions = _table(PositionRow)
trades = _table(TradeRow)
equity = _table(EquityRow)
events = _table(EventRow)
commands = _table(CommandRow)
templates = _table(TemplateRow)
session_state = _table(SessionStateRow)
users = _table(UserRow)
session_bars = _table(SessionBarRow)

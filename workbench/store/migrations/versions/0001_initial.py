"""initial schema: sessions, orders, fills, positions, trades, equity, events, commands, templates, session_state

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = sa.DateTime(timezone=True)


def _session_fk(table: str, ondelete: str = "CASCADE") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], name=f"fk_{table}_session_id_sessions",
                                   ondelete=ondelete)


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("symbols", sa.Text(), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("initial_balance", sa.Float(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("started_at", UTC, nullable=True),
        sa.Column("ended_at", UTC, nullable=True),
        sa.Column("heartbeat_at", UTC, nullable=True),
        sa.Column("runner", sa.String(200), nullable=True),
        sa.Column("final_equity", sa.Float(), nullable=True),
        sa.Column("pnl", sa.Float(), nullable=True),
        sa.Column("total_return", sa.Float(), nullable=True),
        sa.Column("trade_count", sa.Integer(), nullable=True),
        sa.Column("metrics_json", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("parent_id", sa.String(32), nullable=True),
        sa.Column("run_no", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.ForeignKeyConstraint(["parent_id"], ["sessions.id"], name="fk_sessions_parent_id_sessions",
                                ondelete="SET NULL"),
    )
    for col in ("kind", "state", "strategy", "created_at"):
        op.create_index(f"ix_sessions_{col}", "sessions", [col])

    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("limit_price", sa.Float(), nullable=True),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("filled_quantity", sa.Float(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("exchange_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        _session_fk("orders"),
        sa.UniqueConstraint("session_id", "client_id", name="uq_orders_session_id"),
    )

    op.create_table(
        "fills",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("fill_id", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("commission", sa.Float(), nullable=False),
        sa.Column("slippage", sa.Float(), nullable=False),
        sa.Column("time", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fills"),
        _session_fk("fills"),
        sa.UniqueConstraint("session_id", "fill_id", name="uq_fills_session_id"),
    )

    op.create_table(
        "positions",
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("avg_price", sa.Float(), nullable=False),
        sa.Column("opened_at", UTC, nullable=True),
        sa.Column("realized_pnl", sa.Float(), nullable=False),
        sa.Column("peak_price", sa.Float(), nullable=False),
        sa.Column("extra_json", sa.Text(), nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("session_id", "symbol", name="pk_positions"),
        _session_fk("positions"),
    )

    op.create_table(
        "trades",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("entry_time", UTC, nullable=False),
        sa.Column("exit_time", UTC, nullable=True),
        sa.Column("entry_price", sa.Float(), nullable=False),
        sa.Column("exit_price", sa.Float(), nullable=True),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("pnl", sa.Float(), nullable=True),
        sa.Column("return_pct", sa.Float(), nullable=True),
        sa.Column("commission", sa.Float(), nullable=False),
        sa.Column("slippage", sa.Float(), nullable=False),
        sa.Column("exit_reason", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_trades"),
        _session_fk("trades"),
    )
    op.create_index("ix_trades_session_id", "trades", ["session_id"])

    op.create_table(
        "equity",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("time", UTC, nullable=False),
        sa.Column("equity", sa.Float(), nullable=False),
        sa.Column("cash", sa.Float(), nullable=True),
        sa.Column("exposure", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_equity"),
        _session_fk("equity"),
    )
    op.create_index("ix_equity_session_id_time", "equity", ["session_id", "time"])

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(32), nullable=True),
        sa.Column("time", UTC, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data_json", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        _session_fk("events"),
    )
    op.create_index("ix_events_session_id_time", "events", ["session_id", "time"])

    op.create_table(
        "commands",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("command", sa.String(64), nullable=False),
        sa.Column("args_json", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("applied_at", UTC, nullable=True),
        sa.Column("result", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_commands"),
        _session_fk("commands"),
    )
    op.create_index("ix_commands_session_id_status", "commands", ["session_id", "status"])

    op.create_table(
        "templates",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("builtin", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_templates"),
    )

    op.create_table(
        "session_state",
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("state_json", sa.Text(), nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("session_id", name="pk_session_state"),
        _session_fk("session_state"),
    )


def downgrade() -> None:
    for table in ("session_state", "templates", "commands", "events", "equity", "trades", "positions", "fills",
                  "orders", "sessions"):
        op.drop_table(table)

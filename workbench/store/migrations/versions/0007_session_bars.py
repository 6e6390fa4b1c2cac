"""``session_bars``: the closed live bars a session was handed, appended as they close, so its fidelity
twin backtests exactly the bars it saw (one row per session, symbol and bar open time).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "session_bars",
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("open", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("close", sa.Float(), nullable=False),
        sa.Column("volume", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "symbol", "time", name="pk_session_bars"),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], name="fk_session_bars_session_id_sessions",
                                ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("session_bars")

"""trades keep the whole TRADE_COLUMNS schema: entry_fees, exit_fees, duration (seconds)

Existing rows are kept: their fee split is unknown (NULL; ``commission`` still holds the sum) and
the duration of a closed trade is filled in as exit_time - entry_time.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_COLUMNS = ("entry_fees", "exit_fees", "duration")


def upgrade() -> None:
    with op.batch_alter_table("trades") as batch:
        for name in NEW_COLUMNS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))
    trades = sa.table(
        "trades", sa.column("id", sa.Integer()), sa.column("entry_time", sa.DateTime()),
        sa.column("exit_time", sa.DateTime()), sa.column("duration", sa.Float()),
    )
    conn = op.get_bind()
    closed = conn.execute(sa.select(trades.c.id, trades.c.entry_time, trades.c.exit_time)
                          .where(trades.c.exit_time.is_not(None))).all()
    if closed:  # computed here, not in SQL: date arithmetic differs between backends
        conn.execute(
            sa.update(trades).where(trades.c.id == sa.bindparam("row_id")).values(duration=sa.bindparam("seconds")),
            [{"row_id": r.id, "seconds": (r.exit_time - r.entry_time).total_seconds()} for r in closed],
        )


def downgrade() -> None:
    with op.batch_alter_table("trades") as batch:
        for name in reversed(NEW_COLUMNS):
            batch.drop_column(name)

"""trades: ``side`` (long/short), ``funding`` and ``interest`` (carrying costs in the trade's P&L), execution
rules 15-16. Rows saved before read as long trades with no carrying costs.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("trades") as batch:
        batch.add_column(sa.Column("side", sa.String(8), nullable=True))
        batch.add_column(sa.Column("funding", sa.Float(), nullable=True))
        batch.add_column(sa.Column("interest", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trades") as batch:
        batch.drop_column("interest")
        batch.drop_column("funding")
        batch.drop_column("side")

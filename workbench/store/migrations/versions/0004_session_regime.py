"""sessions carry their market regime (``workbench.metrics.regime``): ``regime`` the label
("trending", "ranging", "high-volatility") history filters on, ``regime_json`` the numbers behind it.
Existing rows have none.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("regime", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("regime_json", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("regime_json")
        batch.drop_column("regime")

"""Notices on reservations (GPU-idle warnings and the stop reason; issue 5).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reservation_notices",
        sa.Column(
            "reservation_id",
            sa.String(64),
            sa.ForeignKey("reservations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.String(1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("act_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stop_reason", sa.String(255), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("reservation_notices")

"""Trainings: the queue and each training's state, their events (metrics, messages) and
earlier attempts (issue 8).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "trainings",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("spec", sa.String(64), nullable=False),
        sa.Column("image", sa.String(64), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=True),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("processes", sa.Integer, nullable=False),
        sa.Column("max_run_seconds", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("submitted_at", TZ, nullable=False),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("finished_at", TZ, nullable=True),
        sa.Column("run_seconds", sa.Float, nullable=False),
        sa.Column("reservation_id", sa.String(64), nullable=True),
        sa.Column("node", sa.String(64), nullable=True),
        sa.Column("container", sa.String(128), nullable=True),
        sa.Column("log_cursor", sa.BigInteger, nullable=False),
        sa.Column("message", sa.String(2048), nullable=False),
        sa.Column("checkpoint_epoch", sa.Integer, nullable=True),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("cancelled_by", sa.String(255), nullable=True),
    )
    op.create_index("ix_trainings_owner", "trainings", ["owner"])
    op.create_index("ix_trainings_state", "trainings", ["state"])
    op.create_table(
        "training_events",
        sa.Column("training_id", sa.String(32), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("epoch", sa.Integer, nullable=True),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_table(
        "training_attempts",
        sa.Column("training_id", sa.String(32), primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("reservation_id", sa.String(64), nullable=True),
        sa.Column("container", sa.String(128), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(512), nullable=True),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("ended_at", TZ, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("training_attempts")
    op.drop_table("training_events")
    op.drop_table("trainings")

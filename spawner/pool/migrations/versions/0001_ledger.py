"""The ledger: reservations and their GPU shares, node drain flags, the GPUs agents
reported, when the reconciler first saw a container, the generation counter (issues 2-4).

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reservations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("spec", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("server_name", sa.String(255), nullable=False),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("cpu_millicores", sa.Integer, nullable=False),
        sa.Column("memory_mib", sa.Integer, nullable=False),
        sa.Column("disk_mib", sa.Integer, nullable=False),
        sa.Column("price_per_hour", sa.Float, nullable=False),
        sa.Column("container", sa.String(128), nullable=True),
        sa.Column("port", sa.Integer, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("released_at", TZ, nullable=True),
        sa.Column("release_reason", sa.String(255), nullable=True),
    )
    for col in ("owner", "node", "state"):
        op.create_index(f"ix_reservations_{col}", "reservations", [col])
    op.create_table(
        "reservation_gpus",
        sa.Column(
            "reservation_id",
            sa.String(64),
            sa.ForeignKey("reservations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("uuid", sa.String(128), primary_key=True),
        sa.Column("gpu_index", sa.Integer, nullable=False),
        sa.Column("memory_mib", sa.Integer, nullable=False),
        sa.Column("sm_percent", sa.Integer, nullable=False),
        sa.Column("whole", sa.Boolean, nullable=False),
    )
    op.create_table(
        "node_states",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("drained", sa.Boolean, nullable=False),
        sa.Column("changed_by", sa.String(255), nullable=True),
        sa.Column("changed_at", TZ, nullable=True),
    )
    op.create_table(
        "node_gpus",
        sa.Column("node", sa.String(64), primary_key=True),
        sa.Column("uuid", sa.String(128), primary_key=True),
        sa.Column("gpu_index", sa.Integer, nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("memory_mib", sa.Integer, nullable=False),
        sa.Column("reported_at", TZ, nullable=False),
    )
    op.create_table(
        "container_seen",
        sa.Column(
            "reservation_id",
            sa.String(64),
            sa.ForeignKey("reservations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("container_id", sa.String(128), nullable=False),
        sa.Column("seen_at", TZ, nullable=False),
    )
    op.create_table(
        "pool_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "pool_meta",
        "container_seen",
        "node_gpus",
        "node_states",
        "reservation_gpus",
        "reservations",
    ):
        op.drop_table(table)

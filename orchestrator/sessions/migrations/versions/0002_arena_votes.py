"""Arena votes: one per voter and fan-out (a judge: per pair of columns).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
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
        "arena_votes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fanout_id", sa.String(200), nullable=False),
        sa.Column("voter", sa.String(200), nullable=False),
        sa.Column("pair", sa.String(420), nullable=False),
        sa.Column("winner", sa.String(200), nullable=False),
        sa.Column("ranking", sa.Text, nullable=False),
        sa.Column("columns", sa.Text, nullable=False),
        sa.Column("running", sa.Text, nullable=False),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("session_id", sa.String(64), nullable=True),
        sa.Column("preset", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("fanout_id", "voter", "pair", name="uq_arena_votes_voter"),
    )
    op.create_index("ix_arena_votes_created_at", "arena_votes", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_arena_votes_created_at", table_name="arena_votes")
    op.drop_table("arena_votes")

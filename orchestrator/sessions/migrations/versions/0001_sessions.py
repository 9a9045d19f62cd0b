"""Sessions: members (agent, conversation, label, model), turns and answers.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("title", sa.Text, nullable=True),
        sa.Column("parent_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "session_members",
        sa.Column(
            "session_id",
            sa.String(64),
            sa.ForeignKey("sessions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("column_id", sa.String(200), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("agent_id", sa.String(200), nullable=False),
        sa.Column("conversation_id", sa.String(200), nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=True),
    )
    op.create_table(
        "session_turns",
        sa.Column(
            "session_id",
            sa.String(64),
            sa.ForeignKey("sessions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("fanout_id", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "session_answers",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("fanout_id", sa.String(64), primary_key=True),
        sa.Column("column_id", sa.String(200), primary_key=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("run_id", sa.String(200), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id", "fanout_id"],
            ["session_turns.session_id", "session_turns.fanout_id"],
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("session_answers")
    op.drop_table("session_turns")
    op.drop_table("session_members")
    op.drop_table("sessions")

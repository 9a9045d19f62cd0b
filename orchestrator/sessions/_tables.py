"""The tables of the state database (SQLAlchemy Core); the migrations create them."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = ["answers", "members", "metadata", "sessions", "turns"]

metadata = MetaData()

#: One row per session: a set of members that receive fan-outs together.
sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("title", Text, nullable=True),
    Column("parent_id", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
)

#: A session's members, in column order: an agent, its conversation, a label, a model.
members = Table(
    "session_members",
    metadata,
    Column(
        "session_id", String(64), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("column_id", String(200), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("agent_id", String(200), nullable=False),
    Column("conversation_id", String(200), nullable=False),
    Column("label", Text, nullable=False),
    Column("model", Text, nullable=True),
)

#: The fan-outs of a session, in order: its thread's turns.
turns = Table(
    "session_turns",
    metadata,
    Column(
        "session_id", String(64), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("fanout_id", String(64), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("message", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

#: How each member answered a turn (written when the fan-out ends).
answers = Table(
    "session_answers",
    metadata,
    Column("session_id", String(64), primary_key=True),
    Column("fanout_id", String(64), primary_key=True),
    Column("column_id", String(200), primary_key=True),
    Column("state", String(32), nullable=False),
    Column("text", Text, nullable=False, default=""),
    Column("run_id", String(200), nullable=True),
    Column("error", Text, nullable=True),
    ForeignKeyConstraint(
        ["session_id", "fanout_id"],
        ["session_turns.session_id", "session_turns.fanout_id"],
        ondelete="CASCADE",
    ),
)

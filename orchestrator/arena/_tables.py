"""The arena's table in the state database (SQLAlchemy Core); migration 0002 creates it."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = ["metadata", "votes"]

metadata = MetaData()

#: One row per vote: one per voter and fan-out (and, for a judge, per pair of columns).
#: ``columns``, ``ranking`` and ``running`` are JSON arrays.
votes = Table(
    "arena_votes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fanout_id", String(200), nullable=False),
    Column("voter", String(200), nullable=False),
    Column("pair", String(420), nullable=False, default=""),
    Column("winner", String(200), nullable=False),
    Column("ranking", Text, nullable=False),
    Column("columns", Text, nullable=False),
    Column("running", Text, nullable=False),
    Column("comment", Text, nullable=True),
    Column("session_id", String(64), nullable=True),
    Column("preset", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("fanout_id", "voter", "pair", name="uq_arena_votes_voter"),
    Index("ix_arena_votes_created_at", "created_at"),
)

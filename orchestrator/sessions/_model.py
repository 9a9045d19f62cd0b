"""What a session is: members, turns and answers (plain frozen values, JSON-ready)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._core._exceptions import OrchestratorError

__all__ = ["Answer", "SessionMember", "SessionRecord", "Turn", "UnknownSessionError"]


class UnknownSessionError(OrchestratorError, KeyError):
    """Raised when a session id is not in the database (never created, or deleted)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True, slots=True)
class SessionMember:
    """One column of a session: a Letta agent, its conversation, a label, maybe a model.

    ``column_id`` is the ``agent_id`` the events of this member carry: the Letta agent id
    when the agent appears once in the session, else one id per appearance.
    """

    column_id: str
    agent_id: str
    conversation_id: str
    label: str
    model: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The member as the HTTP API shows it."""
        return {
            "column_id": self.column_id,
            "agent_id": self.agent_id,
            "conversation_id": self.conversation_id,
            "label": self.label,
            "model": self.model,
        }


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session as stored: its id, title, members in column order, and its parent if forked."""

    session_id: str
    members: tuple[SessionMember, ...]
    title: str | None = None
    parent_id: str | None = None
    created_at: float = 0.0

    def member(self, column_id: str) -> SessionMember | None:
        """The member of that column, if any."""
        return next((m for m in self.members if m.column_id == column_id), None)

    def to_json(self) -> dict[str, Any]:
        """The session as the HTTP API shows it (without its thread)."""
        return {
            "session_id": self.session_id,
            "title": self.title,
            "parent_id": self.parent_id,
            "created_at": self.created_at,
            "agents": [m.to_json() for m in self.members],
        }


@dataclass(frozen=True, slots=True)
class Answer:
    """How one member answered one turn: ``state`` is ``running`` until the fan-out ends."""

    label: str
    text: str = ""
    state: str = "running"
    run_id: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "text": self.text,
            "state": self.state,
            "run_id": self.run_id,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class Turn:
    """One fan-out of a session: the prompt and each member's answer (by column id)."""

    fanout_id: str
    message: str
    created_at: float = 0.0
    answers: Mapping[str, Answer] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "fanout_id": self.fanout_id,
            "message": self.message,
            "created_at": self.created_at,
            "answers": {column: a.to_json() for column, a in self.answers.items()},
        }

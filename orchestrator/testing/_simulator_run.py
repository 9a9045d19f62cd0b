"""The server-side state of one simulated run, shared by the simulator and its streams."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["SimRun", "iso"]


def iso(dt: datetime) -> str:
    """A date as Letta's JSON writes it: microseconds and a "Z" for UTC."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class SimRun:
    """Server-side state of one ``POST .../messages`` (what ``GET /v1/runs/{id}`` shows)."""

    id: str
    agent_id: str
    created_at: datetime
    conversation_id: str | None = None
    status: str = "running"
    stop_reason: str | None = None
    completed_at: datetime | None = None
    cancel_requested: bool = False
    client_disconnected: bool = False
    #: Monotonic time at which the answer is complete if nobody cancels (None: never).
    planned_end: float | None = None
    frames_sent: int = 0

    def finish(self, status: str, stop_reason: str | None) -> None:
        """Record the run's outcome (the first outcome wins)."""
        if self.status in ("running", "created"):
            self.status = status
            self.stop_reason = stop_reason
            self.completed_at = datetime.now(UTC)

    def refresh(self, now: float) -> None:
        """A run whose client went away completes on the server when its answer would have."""
        if (
            self.status == "running"
            and self.client_disconnected
            and self.planned_end is not None
            and now >= self.planned_end
        ):
            self.finish("completed", "end_turn")

    def to_json(self) -> dict[str, Any]:
        """The run as ``GET /v1/runs/{id}`` returns it."""
        completed = (
            self.completed_at.strftime("%Y-%m-%dT%H:%M:%S.%f") if self.completed_at else None
        )
        return {
            "id": self.id,
            "status": self.status,
            "created_at": iso(self.created_at),
            "completed_at": completed,
            "agent_id": self.agent_id,
            "conversation_id": self.conversation_id,
            "base_template_id": None,
            "background": False,
            "metadata": {"run_type": "send_message"},
            "request_config": {
                "use_assistant_message": True,
                "assistant_message_tool_name": "send_message",
                "assistant_message_tool_kwarg": "message",
                "include_return_message_types": None,
            },
            "stop_reason": self.stop_reason,
            "callback_url": None,
            "callback_sent_at": None,
            "callback_status_code": None,
            "callback_error": None,
            "ttft_ns": None,
            "total_duration_ns": None,
        }

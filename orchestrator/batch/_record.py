"""One result record per prompt x agent x repeat, built from that agent's events.

The record is built from the merged event stream rather than from ``FanOut.result()`` so
it can be written the moment the agent ends, while the other agents of the same fan-out
are still streaming. Its JSON shape (one line of ``results.jsonl``)::

    {"key": "...", "prompt_id": "p1", "prompt": "...", "variables": {}, "repeat": 1,
     "agent": "critic", "agent_id": "agent-...", "label": "critic", "model": null | "...",
     "conversation_id": null | "conv-...",
     "status": "done" | "error" | "cancelled", "text": "...", "reasoning": "...",
     "tool_calls": [{"tool_call_id", "name", "arguments", "status", "result"}],
     "usage": {"prompt_tokens", "completion_tokens", "total_tokens", "step_count"},
     "metrics": {"ttft_s", "duration_s", "tokens_per_s"}, "stop_reason": "end_turn",
     "error": null | {"code", "message", "retryable"}, "cancel_reason": null,
     "attempts": 1, "run_id": "...", "fanout_id": "...", "finished_at": "ISO 8601",
     "grades": [{"name", "pass", "detail"}]}           # one per assertion of the prompt
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .._core._events import Event
from .._core._types import JSON
from ._grades import grade_record
from ._plan import Pair

_USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens", "step_count")


class PairRecorder:
    """Collects one agent's events of one fan-out into its result record."""

    def __init__(self, pair: Pair, fanout_id: str, attempt: int = 1) -> None:
        self.pair = pair
        self.fanout_id = fanout_id
        self.attempt = attempt
        self.agent_id: str | None = None
        self.label: str | None = None
        self.run_id: str | None = None
        self.model: str | None = getattr(pair.agent, "model", None)
        self.conversation_id: str | None = None
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._tools: dict[str, JSON] = {}
        self._usage: dict[str, int] = {}
        self.terminal: Event | None = None

    def add(self, event: Event) -> None:
        """Take one event of this agent into account."""
        self.agent_id = event.agent_id
        self.label = event.label
        kind = event.type
        if kind == "content":
            self._text.append(event.delta)
        elif kind == "reasoning":
            self._reasoning.append(event.delta)
        elif kind == "agent_start":
            self.run_id = event.get("run_id") or self.run_id
            self.conversation_id = event.get("conversation_id") or self.conversation_id
            self.model = event.get("model") or self.model
        elif kind == "tool_call":
            call_id = str(event.get("tool_call_id") or f"call-{len(self._tools)}")
            self._tools[call_id] = {
                "tool_call_id": call_id,
                "name": event.get("name"),
                "arguments": event.get("arguments"),
                "status": None,
                "result": None,
            }
        elif kind == "tool_result":
            call_id = str(event.get("tool_call_id"))
            entry = self._tools.setdefault(
                call_id, {"tool_call_id": call_id, "name": None, "arguments": None}
            )
            entry["status"] = event.get("status")
            entry["result"] = event.get("result")
        elif kind == "usage":
            # Some servers report usage once per step: add them up.
            for name in _USAGE_FIELDS:
                value = event.get(name)
                if isinstance(value, int) and not isinstance(value, bool):
                    self._usage[name] = self._usage.get(name, 0) + value
        elif event.is_terminal:
            self.terminal = event

    @property
    def status(self) -> str | None:
        """``done``, ``error`` or ``cancelled`` once the agent ended, else ``None``."""
        if self.terminal is None:
            return None
        return {"agent_done": "done", "agent_error": "error"}.get(self.terminal.type, "cancelled")

    @property
    def retryable_error(self) -> tuple[str, bool] | None:
        """``(code, retryable)`` when the agent ended with an error, else ``None``."""
        if self.terminal is None or self.terminal.type != "agent_error":
            return None
        return str(self.terminal.get("code", "source_error")), bool(
            self.terminal.get("retryable", False)
        )

    def to_record(self) -> JSON:
        """The JSON record of this pair (see the module docstring)."""
        pair = self.pair
        terminal = self.terminal
        metrics: Any = terminal.get("metrics") if terminal is not None else None
        error: JSON | None = None
        if terminal is not None and terminal.type == "agent_error":
            error = {
                "code": terminal.get("code", "source_error"),
                "message": terminal.get("message", ""),
                "retryable": bool(terminal.get("retryable", False)),
            }
        record: JSON = {
            "key": pair.key,
            "prompt_id": pair.prompt.prompt_id,
            "prompt": pair.prompt.text,
            "variables": dict(pair.prompt.variables),
            "repeat": pair.repeat,
            "agent": pair.agent.key,
            "agent_id": self.agent_id,
            "label": self.label or pair.agent.label or pair.agent.key,
            "model": self.model,
            "conversation_id": self.conversation_id,
            "status": self.status,
            "text": "".join(self._text),
            "reasoning": "".join(self._reasoning),
            "tool_calls": list(self._tools.values()),
            "usage": dict(self._usage),
            "metrics": dict(metrics)
            if isinstance(metrics, dict)
            else {"ttft_s": None, "duration_s": None, "tokens_per_s": None},
            "stop_reason": terminal.get("stop_reason") if terminal is not None else None,
            "error": error,
            "cancel_reason": terminal.get("reason")
            if terminal is not None and terminal.type == "agent_cancelled"
            else None,
            "attempts": self.attempt,
            "run_id": self.run_id,
            "fanout_id": self.fanout_id,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        record["grades"] = grade_record(record, pair.prompt.assertions)
        return record


def record_failed(record: JSON) -> bool:
    """Whether a record counts as a failure for the exit status.

    Errors and deadline cancellations fail; agents cancelled by the completion policy
    (``first``, ``quorum:K``) did what was asked and do not.
    """
    status = record.get("status")
    if status == "error":
        return True
    return status == "cancelled" and record.get("cancel_reason") != "policy"

"""Request and response bodies of the API (pydantic), shared by HTTP and WebSocket."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator import AgentRef, FanOutOptions, OnDisconnect


class AgentSpec(BaseModel):
    """One agent of a fan-out: by ``agent_id`` or by ``name``; ``label`` is for display."""

    # The schema says what the validator below enforces, so generated clients and fuzzers
    # know that one of the two references is required.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["agent_id"], "properties": {"agent_id": {"type": "string"}}},
                {"required": ["name"], "properties": {"name": {"type": "string"}}},
            ]
        },
    )

    agent_id: str | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, min_length=1)
    label: str | None = None

    @model_validator(mode="after")
    def _one_reference(self) -> AgentSpec:
        if not (self.agent_id or self.name):
            raise ValueError("an agent needs 'agent_id' or 'name'")
        return self

    def to_ref(self) -> AgentRef:
        """The orchestrator's reference for this agent."""
        return AgentRef(agent_id=self.agent_id, name=self.name, label=self.label)


class OptionsSpec(BaseModel):
    """How the fan-out runs (see ``FanOutOptions``) and what a disconnect does.

    ``on_disconnect`` defaults to ``cancel`` for streaming requests (SSE, WebSocket) and to
    ``continue`` for background ones (``201``).
    """

    model_config = ConfigDict(extra="forbid")

    buffer: int = Field(default=64, ge=1, le=100_000)
    overflow: Literal["coalesce", "block"] = "coalesce"
    policy: str = Field(default="all", pattern=r"^(all|first|quorum:[1-9][0-9]*)$")
    timeout_s: float | None = Field(default=None, gt=0)
    first_token_timeout_s: float | None = Field(default=None, gt=0)
    on_disconnect: Literal["cancel", "continue"] | None = None

    def to_options(self) -> FanOutOptions:
        """The core options (validated again by the core when the fan-out starts)."""
        return FanOutOptions(
            buffer=self.buffer,
            overflow=self.overflow,
            policy=self.policy,
            timeout_s=self.timeout_s,
            first_token_timeout_s=self.first_token_timeout_s,
        )

    def disconnect_policy(self, *, streaming: bool) -> OnDisconnect:
        """``on_disconnect`` as given, else the default for the kind of request."""
        if self.on_disconnect is not None:
            return self.on_disconnect
        return "cancel" if streaming else "continue"


class FanOutRequest(BaseModel):
    """Body of ``POST /v1/fanouts`` (and of a WebSocket ``start`` frame)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "agents": [{"agent_id": "agent-1", "label": "critic"}, {"name": "poet"}],
                    "message": "Name one prime number.",
                    "options": {"policy": "all", "timeout_s": 60},
                }
            ]
        },
    )

    agents: list[AgentSpec] = Field(min_length=1)
    message: str
    options: OptionsSpec = Field(default_factory=OptionsSpec)


class StartFrame(FanOutRequest):
    """WebSocket frame ``{"type": "start", ...}``; ``request_id`` is echoed in the ack."""

    type: Literal["start"]
    request_id: str | None = None


class CancelRequest(BaseModel):
    """Body of ``POST /v1/fanouts/{id}/cancel``: one agent, or all when omitted."""

    model_config = ConfigDict(extra="forbid")

    agent_id: str | None = None


class CancelFrame(CancelRequest):
    """WebSocket frame ``{"type": "cancel", "fanout_id", "agent_id"?}``."""

    type: Literal["cancel"]
    fanout_id: str
    request_id: str | None = None


class FanOutCreated(BaseModel):
    """Answer of ``POST /v1/fanouts`` without ``Accept: text/event-stream``."""

    fanout_id: str
    events_url: str


class CancelAccepted(BaseModel):
    """Answer of ``POST /v1/fanouts/{id}/cancel``; ``cancelled`` is false if all had ended."""

    fanout_id: str
    agent_id: str | None
    cancelled: bool


class AgentListing(BaseModel):
    """One agent the directory knows (``GET /v1/agents``)."""

    agent_id: str
    name: str
    model: str | None = None
    description: str | None = None


class ErrorDetail(BaseModel):
    """What went wrong: a stable ``code`` and a message naming the problem."""

    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """Every error response has this body."""

    error: ErrorDetail

"""Request and response bodies of the API (pydantic), shared by HTTP and WebSocket.

Every string a client sends is checked at the edge: :data:`Text` (a message) and
:data:`Name` (an id, a name, a label, a request id) refuse lone surrogates such as
``"\\ud800"`` (valid JSON, but not Unicode text: no UTF-8 encoder, JSON writer or HTTP
response can carry them) and control characters (``Text`` keeps tab and line breaks),
with an error naming the field. The same rule holds for config and prompt files.

Response models say what each endpoint returns, so the OpenAPI document is the contract.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from orchestrator import (
    AgentRef,
    AgentState,
    CancelReason,
    FanOutOptions,
    OnDisconnect,
    Overflow,
    text_problem,
)

# What a string may not hold is orchestrator's one rule (``text_problem``), as for files.
# The same rules as JSON Schema patterns, so generated clients and fuzzers know them.
# Surrogates are left out: a JSON Schema pattern may be matched per UTF-16 code unit, where
# a range of surrogates would also refuse every character outside the BMP.
_TEXT_CHAR = r"[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]"
_NAME_CHAR = r"[^\u0000-\u001f\u007f-\u009f]"
_TEXT_PATTERN = f"^{_TEXT_CHAR}*$"
_NAME_PATTERN = f"^{_NAME_CHAR}*$"
_MESSAGE_PATTERN = (
    rf"^{_TEXT_CHAR}*[^\s\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]{_TEXT_CHAR}*$"
)


def _check_text(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise PydanticCustomError("invalid_text", "{problem}", {"problem": problem[1]})
    return value


def _check_name(value: str) -> str:
    problem = text_problem(value, name=True)
    if problem is not None:
        raise PydanticCustomError("invalid_text", "{problem}", {"problem": problem[1]})
    return value


def _check_message(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError(
            "blank_message", "message must hold some text, not only whitespace"
        )
    return value


def not_bool(value: object) -> object:
    """Refuse ``true`` and ``"64"`` where a JSON integer belongs (before lax validation).

    Lax int validation would take them as 1 and 64; it also takes ``3.0`` as 3, which JSON
    Schema counts as an integer too.
    """
    if isinstance(value, bool | str):
        raise PydanticCustomError("int_type", "Input should be a JSON integer")
    return value


class _Pattern:
    """Adds ``pattern`` to a string's JSON Schema (the validators above enforce it)."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["pattern"] = self.pattern
        return schema


#: Free text (a prompt): valid Unicode, no control characters but tab, LF and CR.
Text = Annotated[str, AfterValidator(_check_text), _Pattern(_TEXT_PATTERN)]
#: One line naming something (an id, a name, a label): valid Unicode, no control character.
Name = Annotated[str, AfterValidator(_check_name), _Pattern(_NAME_PATTERN)]
#: The message of a fan-out: text with at least one character that is not whitespace.
Message = Annotated[
    str,
    AfterValidator(_check_text),
    AfterValidator(_check_message),
    _Pattern(_MESSAGE_PATTERN),
]
#: A number of seconds: finite (``Infinity`` and ``NaN`` are refused, naming the field), and
#: a JSON number (not ``true`` or ``"5"``).
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]


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

    agent_id: Annotated[Name, Field(min_length=1)] | None = None
    name: Annotated[Name, Field(min_length=1)] | None = None
    label: Name | None = None

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
    ``continue`` for background ones (``201``). Times are finite numbers of seconds.
    """

    model_config = ConfigDict(extra="forbid")

    buffer: Annotated[int, BeforeValidator(not_bool)] = Field(default=64, ge=1, le=100_000)
    overflow: Overflow = "coalesce"
    policy: str = Field(default="all", pattern=r"^(all|first|quorum:[1-9][0-9]*)$")
    timeout_s: Seconds | None = None
    first_token_timeout_s: Seconds | None = None
    #: An agent silent this long ends with ``agent_error`` ``stalled``; ``0`` turns it
    #: off; null keeps the core's default.
    idle_timeout_s: Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)] | None = None
    on_disconnect: OnDisconnect | None = None

    def to_options(self) -> FanOutOptions:
        """The core options (validated again by the core when the fan-out starts)."""
        options = FanOutOptions(
            buffer=self.buffer,
            overflow=self.overflow,
            policy=self.policy,
            timeout_s=self.timeout_s,
            first_token_timeout_s=self.first_token_timeout_s,
        )
        if self.idle_timeout_s is None:
            return options
        return FanOutOptions.resolve(options, {"idle_timeout_s": self.idle_timeout_s})

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
    message: Message
    options: OptionsSpec = Field(default_factory=OptionsSpec)


class StartFrame(FanOutRequest):
    """WebSocket frame ``{"type": "start", ...}``; ``request_id`` is echoed in the ack.

    With ``session_id`` the message goes to that session's members (``agents`` is then
    left out).
    """

    agents: list[AgentSpec] = Field(default_factory=list)
    type: Literal["start"]
    request_id: Name | None = None
    session_id: Annotated[Name, Field(min_length=1)] | None = None
    coalesce_ms: Annotated[int, BeforeValidator(not_bool)] = Field(
        default=0,
        ge=0,
        le=10_000,
        description=(
            "Delivery window in ms: consecutive text deltas of one agent and message that "
            "arrive within it go out as one event (the last index it covers); 0 sends every "
            "event as it comes."
        ),
    )

    @model_validator(mode="after")
    def _agents_or_session(self) -> StartFrame:
        if self.session_id is None and not self.agents:
            raise ValueError("a start frame needs 'agents' (at least one) or 'session_id'")
        if self.session_id is not None and self.agents:
            raise ValueError("a start frame takes 'agents' or 'session_id', not both")
        return self


class CancelRequest(BaseModel):
    """Body of ``POST /v1/fanouts/{id}/cancel``: one agent, or all when omitted."""

    model_config = ConfigDict(extra="forbid")

    agent_id: Name | None = None


class CancelFrame(CancelRequest):
    """WebSocket frame ``{"type": "cancel", "fanout_id", "agent_id"?}``."""

    type: Literal["cancel"]
    fanout_id: Name
    request_id: Name | None = None


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


class FanOutBrief(BaseModel):
    """One fan-out in ``GET /v1/fanouts``: its state and size, without its agents."""

    fanout_id: str
    state: Literal["running", "finished"]
    prompt: str
    #: Unix times.
    created_at: float
    finished_at: float | None
    #: Events so far (the next event's index).
    events: int
    #: Streaming readers connected now to this replica (null for another replica's).
    watchers: int | None
    #: Why the fan-out failed as a whole (a bug, not an agent's error), else null.
    error: str | None
    #: The replica that runs it (with the Redis hub; absent with the in-memory hub).
    owner: str | None = None


class FanOutList(BaseModel):
    """Answer of ``GET /v1/fanouts``: retained fan-outs, newest first."""

    fanouts: list[FanOutBrief]


class OptionsView(BaseModel):
    """The options a fan-out runs with (``FanOutOptions``) and its ``on_disconnect``."""

    # Options the core adds later are passed on as they are.
    model_config = ConfigDict(extra="allow")

    buffer: int
    overflow: Overflow
    policy: str
    timeout_s: float | None = None
    first_token_timeout_s: float | None = None
    cancel_timeout_s: float | None = None
    idle_timeout_s: float | None = None
    on_disconnect: OnDisconnect


class MetricsView(BaseModel):
    """An agent's timing: time to first token, duration, output rate (null until known)."""

    ttft_s: float | None = None
    duration_s: float | None = None
    tokens_per_s: float | None = None


class AgentSummary(BaseModel):
    """One agent of ``GET /v1/fanouts/{id}``.

    While the fan-out runs: ``buffered`` and ``paused`` (its buffer). Once it has ended, the
    per-agent summary of ``fanout_done``: ``stop_reason`` and ``text_length`` (done),
    ``code`` and ``message`` (error) or ``reason`` (cancelled), and ``metrics``.
    """

    model_config = ConfigDict(extra="allow")

    label: str
    state: AgentState
    events: int
    buffered: int | None = None
    paused: bool | None = None
    stop_reason: str | None = None
    text_length: int | None = None
    code: str | None = None
    message: str | None = None
    reason: CancelReason | None = None
    metrics: MetricsView | None = None


class FanOutSummary(FanOutBrief):
    """Answer of ``GET /v1/fanouts/{id}``: state, options and every agent by id."""

    options: OptionsView
    #: The oldest event a reader can still replay.
    first_retained_index: int
    agents: dict[str, AgentSummary]


class LettaHealth(BaseModel):
    """Whether the agent directory (the Letta server) answered the health check."""

    ok: bool
    #: Agents listed (when ``ok``).
    agents: int | None = None
    #: What went wrong (when not ``ok``): the error's type and text, or what timed out.
    error: str | None = None


class HubHealth(BaseModel):
    """The hub's backend: ``memory`` (one process) or ``redis`` (shared by replicas)."""

    backend: Literal["memory", "redis"]
    ok: bool
    #: The Redis URL without its password (``redis`` only).
    url: str | None = None
    #: This replica's id in Redis (``redis`` only).
    replica: str | None = None
    #: Fan-outs this replica owns now, and dead replicas' fan-outs it took over.
    owned: int | None = None
    takeovers: int | None = None
    #: Why Redis is not usable (when not ``ok``).
    error: str | None = None


class Health(BaseModel):
    """Answer of ``GET /healthz``."""

    status: Literal["ok", "degraded"]
    protocol_version: int
    letta: LettaHealth
    hub: HubHealth | None = None
    active_fanouts: int


class PresetAgent(BaseModel):
    """An agent of a preset, as a ``POST /v1/fanouts`` body names it."""

    label: Name
    agent_id: Name | None = None
    name: Name | None = None


class Preset(BaseModel):
    """A panel config of the configs folder, ready to send back as a fan-out."""

    #: The file's name without its extension.
    id: Name
    file: Name
    title: Name
    description: Text | None = None
    agents: list[PresetAgent]
    prompts: list[Text]
    #: Only what a ``POST /v1/fanouts`` body accepts.
    options: OptionsSpec


class PresetError(BaseModel):
    """A file of the configs folder that could not be offered, and why."""

    file: str
    message: str


class PresetList(BaseModel):
    """Answer of ``GET /v1/presets``.

    Files that are not panels (batch configs) are left out; files that could not be read
    (too large, unreadable) or hold values a fan-out would refuse are listed in ``errors``.
    """

    presets: list[Preset]
    errors: list[PresetError] = Field(default_factory=list)


class ErrorDetail(BaseModel):
    """What went wrong: a stable ``code`` and a message naming the problem."""

    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """Every error response has this body."""

    error: ErrorDetail

"""A Letta protocol simulator: the slice of the Letta API the orchestrator uses, cheaply.

For tests and benchmarks, not for production. A real Letta server on two cores serves
about 20 concurrent streams before its time to first token passes 6 s; this ASGI app
speaks the same wire format as ``letta==0.16.8`` and serves a thousand.

Endpoints (``AsyncLetta(base_url=simulator_url)`` works unchanged):

- ``GET /v1/health/``, ``GET /v1/agents/`` (``name``, ``after``, ``before``, ``limit``,
  ``order``), ``GET /v1/agents/{agent_id}``;
- ``POST /v1/agents/{agent_id}/messages``: with ``streaming: true`` an SSE stream:
  ``ping`` (carries ``run_id``) first, then ``reasoning_message`` / ``assistant_message``
  token deltas (deltas of one message share ``id`` and ``otid``), ``tool_call_message`` and
  ``tool_return_message``, then ``stop_reason``, ``usage_statistics`` and ``data: [DONE]``;
  a model error ends with ``stop_reason`` ``llm_api_error``, ``event: error`` and ``[DONE]``;
  without ``streaming`` a ``LettaResponse`` JSON body;
- ``POST /v1/agents/{agent_id}/messages/cancel`` (``{"run_ids": [...]}``),
  ``GET /v1/runs/{run_id}`` and ``GET /v1/runs/`` (``agent_id``, ``conversation_id``,
  ``statuses``); ``POST /v1/runs/{run_id}/stream`` answers as a Letta server without Redis
  does: 503 for a known run (404 for an unknown one), since the simulator stores no
  background streams;
- conversations: ``POST /v1/conversations/?agent_id=``, ``GET`` and ``DELETE
  /v1/conversations/{id}``, ``POST /v1/conversations/{id}/messages`` (streams like the agent
  endpoint, ``override_model`` accepted; ``default`` with ``agent_id`` in the body is the
  agent's default conversation; ``background`` is accepted and ignored: the stream is the
  same, without ``seq_id``), ``POST /v1/conversations/{id}/cancel``,
  ``POST /v1/conversations/{id}/fork`` and ``GET /v1/conversations/{id}/messages``. Each
  conversation (and each agent's default one) keeps its own history: the ``history``
  directive answers with the number of user turns it holds, as the scripted model does.

Like the real server, a cancelled stream notices the cancellation at its next chunk (at
most every ``cancel_check_s``) and a run whose client went away keeps "running" until its
answer would have been complete: only the cancel call stops it.

Behaviour per agent comes from the directive grammar of the scripted model server
(:mod:`orchestrator.testing._modelserver`): ``tps=N words=N reasoning tool=NAME fail=STATUS@K
stall@K``, given per agent at construction and overridden by a ``[[ ... ]]`` block in the
user message. Answers are :func:`~orchestrator.testing._modelserver.expected_answer` of the
agent's persona, so tests know the exact text.

Run it alone with ``python -m orchestrator.testing._simulator --port 8283 --agents 100``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._modelserver import (
    DEFAULT_MODEL,
    Directives,
    expected_answer,
    expected_history_answer,
    expected_reasoning,
    parse_directives,
    strip_directives,
)
from ._simulator_run import SimRun, iso
from ._simulator_stream import (
    StreamPlan,
    StreamResponse,
    plan_answer,
    plan_stream,
    render_response,
)

__all__ = ["SimAgent", "SimConversation", "SimRun", "Simulator", "create_agents", "create_app"]

_AGENT_PATTERN = "^agent-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
_AGENT_ID = re.compile(_AGENT_PATTERN)
_NAMESPACE = uuid.UUID("6f1d3c52-9a0e-4b7c-8d21-5f3e2a9c4b10")

#: Tools every simulated agent has, as a ``letta_v1_agent`` does by default.
DEFAULT_TOOLS = ("conversation_search", "memory_insert", "memory_replace")


def _stable_uuid4(seed: str) -> str:
    # Letta only accepts version-4 shaped ids ("agent-{uuid4}"); derive one from a name so
    # that the same agents get the same ids in every run.
    digest = hashlib.sha256(f"{_NAMESPACE}\x00{seed}".encode()).digest()[:16]
    return str(uuid.UUID(bytes=digest, version=4))


@dataclass(frozen=True)
class SimAgent:
    """One simulated agent: identity, persona (the answer depends on it) and behaviour."""

    id: str
    name: str
    persona: str
    directives: str = ""
    tools: tuple[str, ...] = DEFAULT_TOOLS
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, Any]:
        """The agent as ``GET /v1/agents/{id}`` returns it (every key, simulated values)."""
        user = "user-00000000-0000-4000-8000-000000000000"
        created = iso(self.created_at)
        persona = {"label": "persona", "value": self.persona, "limit": 20000}
        llm = {
            "model": "scripted",
            "display_name": "scripted",
            "model_endpoint_type": "openai",
            "model_endpoint": "http://127.0.0.1/v1",
            "provider_name": "openai-proxy",
            "context_window": 32000,
            "handle": "openai-proxy/scripted",
            "temperature": 0.7,
            "max_tokens": 4096,
        }
        embedding = {
            "embedding_endpoint_type": "openai",
            "embedding_model": "text-embedding-3-small",
            "embedding_dim": 1536,
            "handle": "openai/text-embedding-3-small",
        }
        return {
            "created_by_id": user,
            "last_updated_by_id": user,
            "created_at": created,
            "updated_at": created,
            "id": self.id,
            "name": self.name,
            "tool_rules": [],
            "message_ids": [],
            "system": "You are a simulated Letta agent.",
            "agent_type": "letta_v1_agent",
            "llm_config": llm,
            "embedding_config": embedding,
            "model": "openai-proxy/scripted",
            "embedding": "openai/text-embedding-3-small",
            "model_settings": None,
            "compaction_settings": None,
            "response_format": None,
            "description": None,
            "metadata": {"simulated": True},
            "memory": {"agent_type": "letta_v1_agent", "blocks": [persona]},
            "blocks": [persona],
            "tools": [{"id": f"tool-{_stable_uuid4(n)}", "name": n} for n in self.tools],
            "sources": [],
            "tags": [],
            "tool_exec_environment_variables": [],
            "secrets": [],
            "project_id": None,
            "template_id": None,
            "base_template_id": None,
            "deployment_id": None,
            "entity_id": None,
            "identity_ids": [],
            "identities": [],
            "pending_approval": None,
            "message_buffer_autoclear": False,
            "enable_sleeptime": None,
            "multi_agent_group": None,
            "managed_group": None,
            "last_run_completion": None,
            "last_run_duration_ms": None,
            "last_stop_reason": None,
            "timezone": "UTC",
            "max_files_open": 5,
            "per_file_view_window_char_limit": 15000,
            "hidden": None,
        }


def create_agents(count: int, *, prefix: str = "sim", directives: str = "") -> list[SimAgent]:
    """Create ``count`` agents named ``{prefix}-0`` ... with stable ids and personas.

    The persona of ``{prefix}-k`` starts with ``Sim{k}``, so its answers start ``"Sim{k}: "``.
    Ids are derived from the names: the same call always gives the same ids.
    """
    agents = []
    for k in range(count):
        name = f"{prefix}-{k}"
        agent_id = f"agent-{_stable_uuid4(f'{prefix}/{k}')}"
        persona = f"Sim{k} is a simulated agent that answers briefly."
        agents.append(SimAgent(agent_id, name, persona, directives))
    return agents


@dataclass
class SimConversation:
    """One simulated conversation: its agent and its messages (user and assistant)."""

    id: str
    agent_id: str
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: (message_type, text, run_id), oldest first.
    messages: list[tuple[str, str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The conversation as ``GET /v1/conversations/{id}`` returns it."""
        created = iso(self.created_at)
        return {
            "id": self.id,
            "agent_id": self.agent_id,
            "created_at": created,
            "updated_at": created,
            "archived": False,
            "summary": None,
            "model": None,
            "in_context_message_ids": [],
        }


class Simulator:
    """State and ASGI app of one simulated Letta server.

    ``tick_s`` is the pacing quantum: tokens due within one tick go out in one write, which
    keeps a thousand 50 tokens/s streams cheap without changing the average rate.
    ``cancel_check_s`` is how often a stream looks for a cancellation (letta: 0.5 s).
    ``accept_delays`` maps a conversation id (or an agent id, for its default conversation)
    to how long a streaming request there waits, after its run was created, before the
    response starts (the real server takes about 0.8 s): a client meanwhile has no run id,
    which is what tests of an early cancel need.
    Counters for tests and benchmarks: ``streams_opened``, ``streams_closed``,
    ``cancel_calls``, ``frames_sent``; ``runs`` maps run ids to :class:`SimRun`.
    """

    def __init__(
        self,
        agents: Sequence[SimAgent] | int = 4,
        *,
        directives: str = "",
        tick_s: float = 0.02,
        cancel_check_s: float = 0.5,
        keepalive_s: float = 20.0,
    ) -> None:
        if isinstance(agents, int):
            agents = create_agents(agents, directives=directives)
        self.agents: dict[str, SimAgent] = {a.id: a for a in agents}
        self.base = parse_directives(f"[[{directives}]]")
        self.tick_s = tick_s
        self.cancel_check_s = cancel_check_s
        self.keepalive_s = keepalive_s
        self.accept_delays: dict[str, float] = {}
        self.runs: dict[str, SimRun] = {}
        self.conversations: dict[str, SimConversation] = {}
        # Each agent's default conversation, created on first use.
        self._defaults: dict[str, SimConversation] = {}
        self.streams_opened = 0
        self.streams_closed = 0
        self.cancel_calls = 0
        self.frames_sent = 0
        self.app = self._create_app()

    @property
    def active_streams(self) -> int:
        """Streams whose HTTP response is still open."""
        return self.streams_opened - self.streams_closed

    def add_agent(self, agent: SimAgent) -> None:
        """Register another agent (visible to the next request)."""
        self.agents[agent.id] = agent

    def run_status(self, run_id: str) -> str:
        """The current status of a run, as ``GET /v1/runs/{id}`` would report it."""
        run = self.runs[run_id]
        run.refresh(_monotonic())
        return run.status

    def stats(self) -> dict[str, Any]:
        """Counters as a JSON-able dict (also served at ``GET /_sim/stats``)."""
        now = _monotonic()
        by_status: dict[str, int] = {}
        for run in self.runs.values():
            run.refresh(now)
            by_status[run.status] = by_status.get(run.status, 0) + 1
        return {
            "agents": len(self.agents),
            "streams_opened": self.streams_opened,
            "streams_closed": self.streams_closed,
            "active_streams": self.active_streams,
            "cancel_calls": self.cancel_calls,
            "frames_sent": self.frames_sent,
            "runs": by_status,
        }

    # -- routes ---------------------------------------------------------------------------

    def _create_app(self) -> Starlette:
        routes = [
            Route("/v1/health/", self._health, methods=["GET"]),
            Route("/v1/health", self._health, methods=["GET"]),
            Route("/v1/agents/", self._list_agents, methods=["GET"]),
            Route("/v1/agents", self._list_agents, methods=["GET"]),
            Route("/v1/agents/{agent_id}", self._retrieve_agent, methods=["GET"]),
            Route("/v1/agents/{agent_id}/messages", self._send_message, methods=["POST"]),
            Route("/v1/agents/{agent_id}/messages/cancel", self._cancel, methods=["POST"]),
            Route("/v1/runs/", self._list_runs, methods=["GET"]),
            Route("/v1/runs", self._list_runs, methods=["GET"]),
            Route("/v1/runs/{run_id}", self._retrieve_run, methods=["GET"]),
            Route("/v1/runs/{run_id}/stream", self._run_stream, methods=["POST"]),
            Route("/v1/conversations/", self._create_conversation, methods=["POST"]),
            Route("/v1/conversations", self._create_conversation, methods=["POST"]),
            Route("/v1/conversations/{cid}", self._retrieve_conversation, methods=["GET"]),
            Route("/v1/conversations/{cid}", self._delete_conversation, methods=["DELETE"]),
            Route("/v1/conversations/{cid}/messages", self._send_message, methods=["POST"]),
            Route("/v1/conversations/{cid}/messages", self._list_messages, methods=["GET"]),
            Route("/v1/conversations/{cid}/cancel", self._cancel_conversation, methods=["POST"]),
            Route("/v1/conversations/{cid}/fork", self._fork, methods=["POST"]),
            Route("/_sim/stats", self._stats, methods=["GET"]),
        ]
        app = Starlette(routes=routes)
        app.state.simulator = self
        return app

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"version": "0.16.8", "status": "ok"})

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    async def _list_agents(self, request: Request) -> Response:
        params = request.query_params
        agents = sorted(self.agents.values(), key=lambda a: (a.created_at, a.id))
        if params.get("order", "desc") == "desc":
            agents.reverse()
        if name := params.get("name"):
            agents = [a for a in agents if a.name == name]
        ids = [a.id for a in agents]
        if (after := params.get("after")) and after in ids:
            agents = agents[ids.index(after) + 1 :]
        elif (before := params.get("before")) and before in ids:
            agents = agents[: ids.index(before)]
        limit = int(params.get("limit") or 50)
        return JSONResponse([a.to_json() for a in agents[:limit]])

    def _agent_or_error(self, agent_id: str) -> SimAgent | Response:
        if not _AGENT_ID.match(agent_id):
            error = {
                "type": "string_pattern_mismatch",
                "loc": ("path", "agent_id"),
                "msg": "String should match pattern 'agent-{uuid4}'",
                "input": agent_id,
                "ctx": {"pattern": _AGENT_PATTERN},
            }
            body = {
                "trace_id": "",
                "detail": repr([error]),
                "examples": ["agent-123e4567-e89b-42d3-8456-426614174000"],
            }
            return JSONResponse(body, status_code=422)
        agent = self.agents.get(agent_id)
        if agent is None:
            return JSONResponse({"detail": f"Agent with ID {agent_id} not found"}, 404)
        return agent

    async def _retrieve_agent(self, request: Request) -> Response:
        found = self._agent_or_error(request.path_params["agent_id"])
        return found if isinstance(found, Response) else JSONResponse(found.to_json())

    async def _retrieve_run(self, request: Request) -> Response:
        run = self.runs.get(request.path_params["run_id"])
        if run is None:
            detail = f"Run not found with id='{[request.path_params['run_id']]}'"
            return JSONResponse({"detail": detail}, status_code=404)
        run.refresh(_monotonic())
        return JSONResponse(run.to_json())

    async def _run_stream(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if run_id not in self.runs:
            return JSONResponse({"detail": f"Run not found with id='{run_id}'"}, status_code=404)
        detail = (
            "INTERNAL_SERVER_ERROR: Background streaming requires Redis to be running. Please "
            "ensure Redis is properly configured. LETTA_REDIS_HOST: None, LETTA_REDIS_PORT: 6379"
        )
        return JSONResponse({"detail": detail}, status_code=503)

    async def _cancel(self, request: Request) -> Response:
        found = self._agent_or_error(request.path_params["agent_id"])
        if isinstance(found, Response):
            return found
        self.cancel_calls += 1
        body = await _json_body(request)
        run_ids = body.get("run_ids") if isinstance(body, dict) else None
        if not run_ids:
            run_ids = [r.id for r in self.runs.values() if r.agent_id == found.id and _active(r)]
        if not run_ids:
            detail = f"CONFLICT: No active runs to cancel for agent {found.id}"
            return JSONResponse({"detail": detail}, status_code=409)
        results: dict[str, str] = {}
        for run_id in run_ids:
            run = self.runs.get(str(run_id))
            if run is None or run.agent_id != found.id:
                results[str(run_id)] = "failed"
                continue
            run.refresh(_monotonic())
            run.cancel_requested = True
            run.finish("cancelled", "cancelled")
            results[run.id] = "cancelled"
        return JSONResponse(results)

    def _default_conversation(self, agent_id: str) -> SimConversation:
        conversation = self._defaults.get(agent_id)
        if conversation is None:
            conversation = self._defaults[agent_id] = SimConversation(
                f"default/{agent_id}", agent_id
            )
        return conversation

    def _conversation_or_error(self, cid: str) -> SimConversation | Response:
        conversation = self.conversations.get(cid)
        if conversation is None:
            return JSONResponse({"detail": f"Conversation {cid} not found"}, status_code=404)
        return conversation

    async def _list_runs(self, request: Request) -> Response:
        params = request.query_params
        runs = sorted(self.runs.values(), key=lambda r: r.created_at, reverse=True)
        now = _monotonic()
        for run in runs:
            run.refresh(now)
        if agent_id := params.get("agent_id"):
            runs = [r for r in runs if r.agent_id == agent_id]
        if conversation_id := params.get("conversation_id"):
            runs = [r for r in runs if r.conversation_id == conversation_id]
        if statuses := params.getlist("statuses"):
            runs = [r for r in runs if r.status in statuses]
        limit = int(params.get("limit") or 100)
        return JSONResponse([r.to_json() for r in runs[:limit]])

    async def _create_conversation(self, request: Request) -> Response:
        found = self._agent_or_error(request.query_params.get("agent_id", ""))
        if isinstance(found, Response):
            return found
        conversation = SimConversation(f"conv-{uuid.uuid4()}", found.id)
        self.conversations[conversation.id] = conversation
        return JSONResponse(conversation.to_json())

    async def _retrieve_conversation(self, request: Request) -> Response:
        found = self._conversation_or_error(request.path_params["cid"])
        return found if isinstance(found, Response) else JSONResponse(found.to_json())

    async def _delete_conversation(self, request: Request) -> Response:
        found = self._conversation_or_error(request.path_params["cid"])
        if isinstance(found, Response):
            return found
        del self.conversations[found.id]
        return JSONResponse(None)

    async def _fork(self, request: Request) -> Response:
        found = self._conversation_or_error(request.path_params["cid"])
        if isinstance(found, Response):
            return found
        fork = SimConversation(f"conv-{uuid.uuid4()}", found.agent_id, messages=[*found.messages])
        self.conversations[fork.id] = fork
        return JSONResponse(fork.to_json())

    async def _list_messages(self, request: Request) -> Response:
        found = self._conversation_or_error(request.path_params["cid"])
        if isinstance(found, Response):
            return found
        items = [
            {
                "id": f"message-{_stable_uuid4(f'{found.id}/{n}')}",
                "date": iso(found.created_at),
                "message_type": kind,
                "content": text,
                "run_id": run_id,
                "otid": None,
            }
            for n, (kind, text, run_id) in enumerate(found.messages)
        ]
        params = request.query_params
        if params.get("order", "desc") == "desc":
            items.reverse()
        ids = [item["id"] for item in items]
        if (after := params.get("after")) and after in ids:
            items = items[ids.index(after) + 1 :]
        limit = int(params.get("limit") or 100)
        return JSONResponse(items[:limit])

    async def _cancel_conversation(self, request: Request) -> Response:
        found = self._conversation_or_error(request.path_params["cid"])
        if isinstance(found, Response):
            return found
        self.cancel_calls += 1
        results: dict[str, str] = {}
        for run in self.runs.values():
            if run.conversation_id == found.id and _active(run):
                run.cancel_requested = True
                run.finish("cancelled", "cancelled")
                results[run.id] = "cancelled"
        if not results:
            detail = f"CONFLICT: No active runs to cancel for conversation {found.id}"
            return JSONResponse({"detail": detail}, status_code=409)
        return JSONResponse(results)

    async def _send_message(self, request: Request) -> Response:
        conversation: SimConversation | None = None
        body = await _json_body(request)
        if request.path_params.get("cid") == "default":
            # Agent-direct mode: the agent's default conversation, named by agent_id.
            agent_id = body.get("agent_id") if isinstance(body, dict) else None
            found = self._agent_or_error(str(agent_id or ""))
        elif "cid" in request.path_params:
            conv = self._conversation_or_error(request.path_params["cid"])
            if isinstance(conv, Response):
                return conv
            conversation = conv
            found = self._agent_or_error(conversation.agent_id)
        else:
            found = self._agent_or_error(request.path_params["agent_id"])
        if isinstance(found, Response):
            return found
        if conversation is None:
            conversation = self._default_conversation(found.id)
        if not isinstance(body, dict) or not body.get("messages"):
            return JSONResponse({"detail": "Messages must not be empty"}, status_code=422)
        message = _user_text(body["messages"])
        try:
            directives = parse_directives(message, self._agent_base(found))
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        streaming = bool(body.get("streaming"))
        if streaming and not _is_v1_sdk(request):
            detail = "streaming=true is only supported for SDK v1.0+ clients."
            return JSONResponse({"detail": detail}, status_code=422)
        if not streaming and body.get("stream_tokens"):
            detail = (
                "Streaming options set without streaming enabled. "
                "stream_tokens can only be true when streaming=true. "
                "Either set streaming=true or use default values for streaming options."
            )
            return JSONResponse({"detail": detail}, status_code=422)
        run = SimRun(
            f"run-{uuid.uuid4()}",
            found.id,
            datetime.now(UTC),
            conversation_id=None if conversation.id.startswith("default/") else conversation.id,
        )
        self.runs[run.id] = run
        model = str(body.get("override_model") or DEFAULT_MODEL).rpartition("/")[2]
        conversation.messages.append(("user_message", message, run.id))
        turns = sum(1 for kind, _, _ in conversation.messages if kind == "user_message")
        plan = self._plan(found, message, directives, run, history=(turns, model))
        conversation.messages.append(("assistant_message", plan_answer(plan), run.id))
        if not streaming:
            return render_response(plan, run)
        include_pings = body.get("include_pings", True) is not False
        delay = self.accept_delays.get(run.conversation_id or found.id, 0.0)
        if delay > 0:
            await anyio.sleep(delay)
        return StreamResponse(self, plan, run, include_pings=include_pings)

    def _agent_base(self, agent: SimAgent) -> Directives:
        return parse_directives(f"[[{agent.directives}]]", self.base)

    def _plan(
        self,
        agent: SimAgent,
        message: str,
        d: Directives,
        run: SimRun,
        *,
        history: tuple[int, str],
    ) -> StreamPlan:
        reasoning = expected_reasoning(agent.persona, message) if d.reasoning else None
        tool = d.tool if d.tool else None
        if d.history:
            answer = expected_history_answer(agent.persona, *history)
        else:
            # The agent's own directives may set the length: say it in a block of our own.
            answer = expected_answer(
                agent.persona, f"[[words={d.words}]] {strip_directives(message)}"
            )
        return plan_stream(
            answer=answer,
            reasoning=reasoning,
            tool=tool,
            directives=d,
            prompt_tokens=len(agent.persona.split()) + len(message.split()),
            run_id=run.id,
        )


def _active(run: SimRun) -> bool:
    run.refresh(_monotonic())
    return run.status == "running"


def _monotonic() -> float:
    return time.monotonic()


def _is_v1_sdk(request: Request) -> bool:
    # Letta refuses streaming to pre-1.0 SDKs: it looks at the Stainless version header, then
    # at a "letta-client/<version>" User-Agent; no User-Agent at all counts as new.
    if request.headers.get("x-stainless-package-version"):
        return True
    agent = request.headers.get("user-agent")
    if not agent:
        return True
    parts = agent.split("/")
    if len(parts) == 3 and parts[:2] != ["@letta-ai", "letta-client"]:
        return False
    if len(parts) == 2 and parts[0] != "letta-client":
        return False
    if len(parts) not in (2, 3):
        return False
    major = parts[-1].split(".")[0]
    return major.isdigit() and int(major) >= 1


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if not isinstance(message, Mapping) or message.get("role", "user") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def create_app(
    agents: Sequence[SimAgent] | int = 4,
    *,
    directives: str = "",
    tick_s: float = 0.02,
    cancel_check_s: float = 0.5,
) -> Starlette:
    """Create the simulator's ASGI app; its :class:`Simulator` is ``app.state.simulator``."""
    sim = Simulator(agents, directives=directives, tick_s=tick_s, cancel_check_s=cancel_check_s)
    return sim.app


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the simulator on loopback (``python -m orchestrator.testing._simulator``)."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8283)
    parser.add_argument("--agents", type=int, default=4, help="number of simulated agents")
    parser.add_argument("--directives", default="", help='default behaviour, e.g. "tps=50"')
    parser.add_argument("--tick", type=float, default=0.02, help="pacing quantum in seconds")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    app = create_app(args.agents, directives=args.directives, tick_s=args.tick)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        http="httptools",
        loop="uvloop" if _has_uvloop() else "asyncio",
        backlog=4096,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=2,
    )


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()

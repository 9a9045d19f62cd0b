"""The simulator's wire format and token pacing: one ``POST .../messages`` as letta 0.16.8 sends it.

Frames are written by hand from templates rather than through a JSON model because a
thousand streams at 50 tokens/s are 50 000 frames a second; the key order and the
separators are the ones pydantic gives the real server (checked against recordings in
``tests/letta/test_contract.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ._modelserver import Directives
from ._simulator_run import SimRun

__all__ = [
    "StepPlan",
    "StreamPlan",
    "StreamResponse",
    "plan_answer",
    "plan_stream",
    "render_response",
]

#: Prompt tokens Letta's system prompt, memory blocks and tool schemas add to every step.
SYSTEM_PROMPT_TOKENS = 370

_DONE = "data: [DONE]\n\n"
# The real server writes this one frame with json.dumps (spaces after separators).
_CANCELLED = "data: " + json.dumps({"message_type": "stop_reason", "stop_reason": "cancelled"})


@dataclass(frozen=True)
class StepPlan:
    """One agent step: one LLM request's deltas and, for a tool call, its return."""

    reasoning: tuple[str, ...]
    content: tuple[str, ...]
    tool: tuple[str, str, str] | None = None  # (tool_call_id, name, arguments JSON)
    tool_return: str = ""

    @property
    def delta_count(self) -> int:
        return len(self.reasoning) + len(self.content) + (1 if self.tool else 0)


@dataclass(frozen=True)
class StreamPlan:
    """What one request will stream, decided when it arrives."""

    steps: tuple[StepPlan, ...]
    tps: float
    fail_status: int | None
    fail_at: int
    stall_at: int | None
    prompt_tokens: int

    def duration_s(self) -> float | None:
        """Seconds the answer takes when nothing interrupts it (None: it never ends)."""
        if self.stall_at is not None:
            return None
        if self.tps <= 0:
            return 0.0
        return sum(step.delta_count for step in self.steps) / self.tps


def _tokens(text: str) -> tuple[str, ...]:
    parts = text.split(" ")
    return (parts[0], *(f" {p}" for p in parts[1:]))


def plan_stream(
    *,
    answer: str,
    reasoning: str | None,
    tool: str | None,
    directives: Directives,
    prompt_tokens: int,
    run_id: str,
) -> StreamPlan:
    """Plan the steps of one answer (a tool call makes it two steps, as in Letta)."""
    thinking = _tokens(reasoning) if reasoning else ()
    steps: list[StepPlan] = []
    if tool:
        seed = hashlib.sha256(f"{run_id}\x00{tool}".encode()).hexdigest()
        result = {"message": "Showing 0 results:", "results": []}
        steps.append(StepPlan(thinking, (), (f"call_{seed[:24]}", tool, "{}"), str(result)))
    steps.append(StepPlan(thinking, _tokens(answer)))
    return StreamPlan(
        tuple(steps),
        directives.tps,
        directives.fail_status,
        directives.fail_at,
        directives.stall_at,
        prompt_tokens + SYSTEM_PROMPT_TOKENS,
    )


def plan_answer(plan: StreamPlan) -> str:
    """The answer text a plan streams when nothing interrupts it."""
    return "".join(plan.steps[-1].content)


_date_cache: tuple[int, str] = (0, "")


def _date() -> str:
    # Letta serialises message dates to the second; one string per second is enough.
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"))
    return _date_cache[1]


def _otid(message_id: str, index: int) -> str:
    # Letta derives each message part's otid from the message id: low 7 bits = part index.
    value = (uuid.UUID(message_id.removeprefix("message-")).int & ~0x7F) | (index & 0x7F)
    return str(uuid.UUID(int=value))


def _j(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _envelope(
    message_id: str, kind: str, otid: str | None, step_id: str | None, run_id: str, name: str
) -> str:
    return (
        f'data: {{"id":"{message_id}","date":"{_date()}","name":{name},'
        f'"message_type":"{kind}","otid":{_j(otid) if otid else "null"},"sender_id":null,'
        f'"step_id":{_j(step_id) if step_id else "null"},"is_err":null,"seq_id":null,'
        f'"run_id":"{run_id}"'
    )


def _ping(run_id: str) -> str:
    return _envelope(f"ping-{uuid.uuid4()}", "ping", None, None, run_id, "null") + "}"


class _Step:
    """Frame factory for one step: its message id, step id and part indexes."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.message_id = f"message-{uuid.uuid4()}"
        self.step_id = f"step-{uuid.uuid4()}"
        self.index = -1
        self.kind = ""
        self.prefix = ""
        self.date = ""

    def delta(self, kind: str, text: str) -> str:
        if kind != self.kind or self.date != _date():
            if kind != self.kind:
                self.index += 1
                self.kind = kind
            self.date = _date()
            head = _envelope(
                self.message_id,
                kind,
                _otid(self.message_id, self.index),
                self.step_id,
                self.run_id,
                "null",
            )
            field = {"reasoning_message": '"source":"reasoner_model","reasoning":'}
            self.prefix = head + "," + field.get(kind, '"content":')
        if kind == "reasoning_message":
            return f'{self.prefix}{_j(text)},"signature":null}}'
        return f"{self.prefix}{_j(text)}}}"

    def tool_call(self, call_id: str, name: str, arguments: str) -> str:
        if self.kind != "tool_call_message":
            self.index += 1
            self.kind = "tool_call_message"
        call = json.dumps(
            {"name": name, "arguments": arguments, "tool_call_id": call_id},
            separators=(",", ":"),
            ensure_ascii=False,
        )
        head = _envelope(
            self.message_id,
            "tool_call_message",
            _otid(self.message_id, self.index),
            self.step_id,
            self.run_id,
            "null",
        )
        return f'{head},"tool_call":{call},"tool_calls":{call}}}'

    def tool_return(self, call_id: str, name: str, result: str) -> str:
        message_id = f"message-{uuid.uuid4()}"
        head = _envelope(
            message_id,
            "tool_return_message",
            _otid(message_id, 0),
            self.step_id,
            self.run_id,
            _j(name),
        )
        fields = (
            f'"tool_return":{_j(result)},"status":"success","tool_call_id":{_j(call_id)},'
            '"stdout":null,"stderr":null'
        )
        return f'{head},{fields},"tool_returns":[{{"type":"tool",{fields}}}]}}'


def _stop(reason: str) -> str:
    return f'data: {{"message_type":"stop_reason","stop_reason":"{reason}"}}'


def _usage(completion: int, prompt: int, steps: int, context: int) -> str:
    return (
        f'data: {{"message_type":"usage_statistics","completion_tokens":{completion},'
        f'"prompt_tokens":{prompt},"total_tokens":{completion + prompt},"step_count":{steps},'
        '"run_ids":null,"cached_input_tokens":null,"cache_write_tokens":null,'
        f'"reasoning_tokens":null,"context_tokens":{context}}}'
    )


def _error(run_id: str, error_type: str, message: str, detail: str) -> str:
    body = {
        "message_type": "error_message",
        "run_id": run_id,
        "error_type": error_type,
        "message": message,
        "detail": detail,
        "seq_id": None,
    }
    return "event: error\n" + "data: " + json.dumps(body, separators=(",", ":"))


def _llm_failure(status: int) -> tuple[str, str, str]:
    # What letta reports when the LLM request itself fails (before any chunk of the run).
    body = {"error": {"message": f"scripted failure {status}", "code": str(status)}}
    if status == 429:
        return (
            "llm_rate_limit",
            "Rate limit exceeded for LLM model provider. Please wait before making another request.",
            f"RATE_LIMIT_EXCEEDED: Rate limited by OpenAI: Error code: 429 - {body}",
        )
    if status in (401, 403):
        return (
            "llm_authentication",
            "Authentication failed with the LLM model provider.",
            f"AUTHENTICATION_ERROR: Error code: {status} - {body}",
        )
    return (
        "llm_error",
        "An error occurred with the LLM request.",
        f"INTERNAL_SERVER_ERROR: OpenAI API error: Error code: {status} - {body}",
    )


class _Stop(Exception):
    """Internal: the stream ends here (its last frames were queued)."""


class StreamHost(Protocol):
    """What a stream needs of the simulator that serves it: pacing and counters."""

    tick_s: float
    cancel_check_s: float
    keepalive_s: float
    streams_opened: int
    streams_closed: int
    frames_sent: int


class StreamResponse(Response):
    """The SSE response of one streaming request: paces tokens, notices cancel and disconnect."""

    def __init__(
        self, sim: StreamHost, plan: StreamPlan, run: SimRun, *, include_pings: bool = True
    ) -> None:
        super().__init__(media_type="text/event-stream")
        self.sim = sim
        self.plan = plan
        self.run = run
        self.include_pings = include_pings
        self._batch: list[str] = []
        self._send: Send | None = None
        self._last_check = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sim, run = self.sim, self.run
        sim.streams_opened += 1
        duration = self.plan.duration_s()
        start = time.monotonic()
        run.planned_end = None if duration is None else start + duration
        self._send = send
        self._last_check = start
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
                }
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_disconnect, receive, tg.cancel_scope)
                with contextlib.suppress(_Stop):
                    await self._pump()
                await self._flush()
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                tg.cancel_scope.cancel()
        finally:
            sim.streams_closed += 1

    async def _watch_disconnect(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        # Like Letta, the run goes on without its client; only a cancel call stops it.
        self.run.client_disconnected = True
        scope.cancel()

    def _queue(self, frame: str) -> None:
        self._batch.append(frame + "\n\n" if not frame.endswith("\n\n") else frame)

    async def _flush(self) -> None:
        if not self._batch or self._send is None:
            return
        body = "".join(self._batch).encode()
        self.sim.frames_sent += len(self._batch)
        self.run.frames_sent += len(self._batch)
        self._batch.clear()
        await self._send({"type": "http.response.body", "body": body, "more_body": True})

    def _check_cancel(self) -> None:
        # Letta's cancellation-aware wrapper looks at the run between chunks, at most every
        # 0.5 s, so a cancelled stream still sends a few chunks and a stalled one never ends.
        now = time.monotonic()
        if now - self._last_check < self.sim.cancel_check_s:
            return
        self._last_check = now
        if self.run.cancel_requested:
            self._queue(_CANCELLED)
            raise _Stop

    async def _pace(self, due: float) -> None:
        now = time.monotonic()
        if due > now:
            await self._flush()
            await anyio.sleep(max(due - now, self.sim.tick_s))

    async def _stall(self) -> None:
        await self._flush()
        while True:
            # Letta's keepalive: a ping after every ``keepalive_s`` of silence.
            await anyio.sleep(self.sim.keepalive_s)
            self._queue(_ping(self.run.id))
            await self._flush()

    async def _pump(self) -> None:
        plan, run = self.plan, self.run
        if self.include_pings:
            self._queue(_ping(run.id))
        interval = 1.0 / plan.tps if plan.tps > 0 else 0.0
        sent_any = False
        completion = 0
        context = 0
        for number, step in enumerate(plan.steps, start=1):
            frames = _Step(run.id)
            parts: list[tuple[str, str]] = [("reasoning_message", t) for t in step.reasoning]
            parts += [("assistant_message", t) for t in step.content]
            step_start = time.monotonic()
            for k in range(step.delta_count):
                if plan.stall_at is not None and k >= plan.stall_at:
                    await self._stall()
                if plan.fail_status is not None and k >= plan.fail_at:
                    self._fail(plan.fail_status, sent_any)
                if interval:
                    await self._pace(step_start + (k + 1) * interval)
                self._check_cancel()
                if k < len(parts):
                    self._queue(frames.delta(*parts[k]))
                else:
                    assert step.tool is not None
                    self._queue(frames.tool_call(*step.tool))
                sent_any = True
                completion += 1
            if plan.stall_at is not None and plan.stall_at >= step.delta_count:
                await self._stall()
            if step.tool is not None:
                self._check_cancel()
                self._queue(frames.tool_return(step.tool[0], step.tool[1], step.tool_return))
            context = plan.prompt_tokens + completion
            if number == len(plan.steps):
                self._queue(_stop("end_turn"))
                prompt = plan.prompt_tokens * number + (completion - step.delta_count)
                self._queue(_usage(completion, prompt, number, context))
                self._queue(_DONE)
        run.finish("completed", "end_turn")

    def _fail(self, status: int, sent_any: bool) -> None:
        run = self.run
        if not sent_any:
            error_type, message, detail = _llm_failure(status)
            self._queue(_stop("llm_api_error"))
            self._queue(_error(run.id, error_type, message, detail))
            self._queue(_DONE)
            run.finish("failed", "llm_api_error")
        else:
            # Mid-answer the agent loop reports the error itself: an extra ``error`` stop
            # reason, a generic internal_error and no [DONE]; the run is marked completed.
            self._queue(_stop("error"))
            self._queue(_stop("llm_api_error"))
            detail = f"INVALID_ARGUMENT: OpenAI API error: scripted failure {status}"
            self._queue(
                _error(
                    run.id, "internal_error", "An error occurred during agent execution.", detail
                )
            )
            run.finish("completed", "llm_api_error")
        raise _Stop


def render_response(plan: StreamPlan, run: SimRun) -> Response:
    """The non-streaming answer: a ``LettaResponse`` with whole messages, no pacing."""
    if plan.fail_status is not None and plan.fail_at == 0:
        _error_type, message, detail = _llm_failure(plan.fail_status)
        run.finish("failed", "llm_api_error")
        return JSONResponse({"detail": f"{message} {detail}"}, status_code=500)
    messages: list[dict[str, Any]] = []
    completion = 0
    for step in plan.steps:
        frames = _Step(run.id)
        if step.reasoning:
            messages.append(_whole(frames.delta("reasoning_message", "".join(step.reasoning))))
        if step.content:
            messages.append(_whole(frames.delta("assistant_message", "".join(step.content))))
        if step.tool:
            messages.append(_whole(frames.tool_call(*step.tool)))
            messages.append(
                _whole(frames.tool_return(step.tool[0], step.tool[1], step.tool_return))
            )
        completion += step.delta_count
    run.finish("completed", "end_turn")
    steps = len(plan.steps)
    usage = json.loads(
        _usage(completion, plan.prompt_tokens * steps, steps, plan.prompt_tokens + completion)[6:]
    )
    return JSONResponse(
        {
            "messages": messages,
            "stop_reason": {"message_type": "stop_reason", "stop_reason": "end_turn"},
            "usage": usage,
        }
    )


def _whole(frame: str) -> dict[str, Any]:
    return dict(json.loads(frame.removeprefix("data: ")))

"""A scripted, deterministic OpenAI-compatible model server.

It is the LLM behind the local Letta stack in tests and in the demo: the answer
to a chat completion depends only on the agent's persona and the last user
message, so a test can compute the exact text that Letta will stream back with
:func:`expected_answer`.

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions`` (streaming SSE
with ``data: [DONE]`` and non-streaming; ``stream_options.include_usage`` adds a
final usage chunk) and ``POST /v1/embeddings`` (deterministic unit vectors).

How the persona is recognised
    The persona is the value of the ``<persona>`` memory block that Letta
    renders into the system prompt, i.e. the text between ``<value>`` and
    ``</value>`` inside ``<persona> ... </persona>``. Line-number prefixes
    (``"1→ "``) that Letta adds for some agent types are removed and the result
    is stripped. Without such a block the persona is ``""``.

Directive grammar
    A user message may contain one ``[[ ... ]]`` block of space-separated
    directives; the block is not part of the "prompt" the answer is built from.
    A model preset (see :data:`MODEL_PRESETS`) contributes defaults that the
    message's directives override.

    - ``tps=N``: stream at N tokens per second (``0``, the default: no delay).
    - ``words=N``: the answer has N words (default 12).
    - ``reasoning``: stream a reasoning part (``delta.reasoning_content``) first,
      its text is :func:`expected_reasoning`.
    - ``tool=NAME``: first call the agent's tool NAME (arguments made from its
      JSON schema); the request that carries the tool result gets the answer.
    - ``fail=STATUS@K``: HTTP error STATUS (e.g. 429, 500) at token K. ``K=0``:
      the response itself has that status; ``K>0``: after K tokens an SSE
      ``error`` event is sent and the stream ends.
    - ``stall@K``: after K tokens stop sending but keep the connection open.
    - ``fail_times=N``: fail only the first N requests with this prompt (same
      persona and user message), then succeed; without ``fail=`` the failure is
      ``500@0``.
    - ``history``: answer with what the request carried instead of words: the
      number of user turns in it and the requested model, see
      :func:`expected_history_answer`. Tests of conversation isolation use it: a
      fresh conversation answers ``turns=1``, a follow-up ``turns=2``.

    Example: ``"Summarise the news [[tps=50 words=40 reasoning fail=429@5]]"``.

Every chat request is also recorded in memory (model, user turns, last user
message; the newest :data:`REQUEST_RECORDS` of them) and served at
``GET /_scripted/requests``, so a test can check which model a request asked for.

Run it alone with ``python -m orchestrator.testing._modelserver --port 8799``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = [
    "DEFAULT_EMBEDDING_DIM",
    "DEFAULT_MODEL",
    "HISTORY_MODEL",
    "MODEL_PRESETS",
    "REQUEST_RECORDS",
    "Directives",
    "create_app",
    "expected_answer",
    "expected_history_answer",
    "expected_reasoning",
    "extract_persona",
    "parse_directives",
    "strip_directives",
]

DEFAULT_MODEL = "scripted"
"""The model id of the default preset; in Letta its handle is ``openai-proxy/scripted``."""

HISTORY_MODEL = "scripted-history"
"""A model id that answers with what it was sent (the ``history`` directive)."""

MODEL_PRESETS: Mapping[str, str] = {
    "scripted": "",
    "scripted-slow": "tps=20",
    "scripted-reasoning": "reasoning",
    HISTORY_MODEL: "history",
}
"""Model ids served by ``GET /v1/models`` and the directives each one implies."""

DEFAULT_EMBEDDING_DIM = 1536
"""Embedding size when the request names none (Letta's OpenAI embedding configs use 1536)."""

DEFAULT_WORDS = 12

REQUEST_RECORDS = 1000
"""How many chat requests ``GET /_scripted/requests`` remembers (the newest)."""

_DIRECTIVE_BLOCK = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)
_PERSONA_VALUE = re.compile(r"<persona>.*?<value>\n?(.*?)\n?</value>", re.DOTALL)
_LINE_NUMBER = re.compile(r"^\d+→ ?", re.MULTILINE)

# A small fixed vocabulary keeps answers readable and tokenisation trivial:
# one word is one streamed token.
_VOCABULARY = (
    "amber anchor apple arrow aspen autumn badge basil beacon birch blossom breeze "
    "bridge brook cabin canyon cedar chalk cinder clover cobalt comet copper coral "
    "cotton crane crystal dawn delta desert dune ember falcon feather fern field "
    "flint forest fossil garden glacier granite harbor hazel heron horizon island "
    "ivory jasper juniper kettle lantern lark laurel lemon linen lotus maple marble "
    "meadow meteor mint mist moss nectar nova oak ocean olive onyx orchid otter "
    "pebble pepper pine planet plume prairie quartz quill raven reef ridge river "
    "robin saffron sage shore silver slate sparrow spruce stone summit thistle "
    "thunder timber topaz tulip valley velvet violet walnut willow winter wren"
)
_WORDS = tuple(_VOCABULARY.split())


@dataclass(frozen=True)
class Directives:
    """Behaviour selected by a ``[[ ... ]]`` block and the model preset."""

    tps: float = 0.0
    words: int = DEFAULT_WORDS
    reasoning: bool = False
    tool: str | None = None
    fail_status: int | None = None
    fail_at: int = 0
    stall_at: int | None = None
    fail_times: int | None = None
    history: bool = False


def parse_directives(user_message: str, base: Directives | None = None) -> Directives:
    """Parse the ``[[ ... ]]`` block of ``user_message`` on top of ``base``.

    A message without a block gives ``base`` (or the defaults). Unknown
    directives raise ``ValueError`` so that a typo in a test is loud.
    """
    match = _DIRECTIVE_BLOCK.search(user_message)
    return _parse_tokens(match.group(1) if match else "", base or Directives())


def _parse_tokens(body: str, result: Directives) -> Directives:
    for token in body.split():
        key, sep, value = token.partition("=")
        if token == "reasoning":
            result = replace(result, reasoning=True)
        elif token == "history":
            result = replace(result, history=True)
        elif token.startswith("stall@"):
            result = replace(result, stall_at=int(token.removeprefix("stall@")))
        elif sep and key == "tps":
            result = replace(result, tps=float(value))
        elif sep and key == "words":
            result = replace(result, words=max(1, int(value)))
        elif sep and key == "tool":
            result = replace(result, tool=value)
        elif sep and key == "fail":
            status, _, at = value.partition("@")
            result = replace(result, fail_status=int(status), fail_at=int(at or "0"))
        elif sep and key == "fail_times":
            result = replace(result, fail_times=int(value))
        else:
            raise ValueError(f"unknown model server directive {token!r}")
    return result


def strip_directives(user_message: str) -> str:
    """Return the prompt without its ``[[ ... ]]`` block, whitespace-normalised."""
    return " ".join(_DIRECTIVE_BLOCK.sub(" ", user_message).split())


def extract_persona(system_prompt: str) -> str:
    """Return the persona found in a Letta system prompt (``""`` if there is none)."""
    match = _PERSONA_VALUE.search(system_prompt)
    if match is None:
        return ""
    return _LINE_NUMBER.sub("", match.group(1)).strip()


def _words(seed: str, count: int) -> list[str]:
    out: list[str] = []
    counter = 0
    while len(out) < count:
        digest = hashlib.sha256(f"{seed}\x00{counter}".encode()).digest()
        out.extend(_WORDS[b % len(_WORDS)] for b in digest[: count - len(out)])
        counter += 1
    return out


def _persona_name(persona: str) -> str:
    first = persona.strip().split()
    return re.sub(r"\W", "", first[0]) if first else "Agent"


def expected_answer(persona: str, user_message: str) -> str:
    """Return the exact answer text the scripted model gives.

    ``persona`` is the persona memory block value the agent was created with and
    ``user_message`` the message exactly as sent (directives included: ``words=``
    sets the length, the block itself is ignored). Model presets that change the
    length are not taken into account: pass ``words=`` in the message instead.
    Format: ``"<Name>: w1 w2 ... wN."`` where ``Name`` is the persona's first word.
    """
    directives = parse_directives(user_message)
    prompt = strip_directives(user_message)
    words = _words(f"answer\x00{persona.strip()}\x00{prompt}", directives.words)
    return f"{_persona_name(persona) or 'Agent'}: {' '.join(words)}."


def expected_history_answer(persona: str, user_turns: int, model: str) -> str:
    """Return the answer of the ``history`` directive (or the ``scripted-history`` model).

    ``user_turns`` is the number of user messages in the model request (the current one
    included) and ``model`` the model id the request named (in Letta, the handle without
    its provider prefix: ``scripted-history`` for ``openai-proxy/scripted-history``).
    Format: ``"<Name>: turns=N model=M."``.
    """
    return f"{_persona_name(persona) or 'Agent'}: turns={user_turns} model={model}."


def expected_reasoning(persona: str, user_message: str) -> str:
    """Return the exact reasoning text streamed before the answer with ``reasoning``."""
    prompt = strip_directives(user_message)
    words = _words(f"reasoning\x00{persona.strip()}\x00{prompt}", 8)
    return f"Thinking about {' '.join(words)}."


def _tokens(text: str) -> list[str]:
    parts = text.split(" ")
    return [parts[0], *(f" {p}" for p in parts[1:])]


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _unwrap_user_text(text: str) -> str:
    # Older Letta agent types pack user input as JSON {"type": "user_message", "message": ...}.
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            return text
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            return str(data["message"])
    return text


@dataclass(frozen=True)
class _Turn:
    persona: str
    user_message: str
    after_tool_result: bool
    user_turns: int = 1


def _read_turn(messages: Sequence[Mapping[str, Any]]) -> _Turn:
    system = "\n".join(
        _content_text(m.get("content"))
        for m in messages
        if m.get("role") in ("system", "developer")
    )
    user_message = ""
    after_tool = False
    for message in reversed(messages):
        role = message.get("role")
        if role == "tool":
            after_tool = True
        if role == "user":
            user_message = _unwrap_user_text(_content_text(message.get("content")))
            break
    turns = sum(1 for m in messages if m.get("role") == "user")
    return _Turn(extract_persona(system), user_message, after_tool, turns)


def _tool_arguments(tool: Mapping[str, Any]) -> dict[str, Any]:
    params = tool.get("function", {}).get("parameters", {}) or {}
    props: Mapping[str, Any] = params.get("properties", {}) or {}
    samples: dict[str, Any] = {
        "string": "scripted",
        "integer": 1,
        "number": 1.0,
        "boolean": True,
        "array": [],
        "object": {},
    }
    args: dict[str, Any] = {}
    for name in params.get("required", []) or []:
        kind = props.get(name, {}).get("type", "string")
        args[name] = samples.get(kind if isinstance(kind, str) else "string", "scripted")
    return args


class _ScriptedModel:
    """Per-app state: the per-prompt request counters of ``fail_times``."""

    def __init__(self, request_log: str | None = None) -> None:
        self.attempts: dict[tuple[str, str], int] = {}
        self.request_log = request_log
        self.records: deque[dict[str, Any]] = deque(maxlen=REQUEST_RECORDS)

    def requests(self, request: Request) -> Response:
        return JSONResponse(list(self.records))

    def log(self, body: Mapping[str, Any]) -> None:
        if self.request_log:
            with open(self.request_log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(body) + "\n")

    def models(self, request: Request) -> Response:
        created = 1_700_000_000
        data = [
            {"id": mid, "object": "model", "created": created, "owned_by": "letta-fanout"}
            for mid in MODEL_PRESETS
        ]
        return JSONResponse({"object": "list", "data": data})

    async def embeddings(self, request: Request) -> Response:
        body = await request.json()
        inputs = body.get("input", "")
        items = inputs if isinstance(inputs, list) else [inputs]
        dim = int(body.get("dimensions") or DEFAULT_EMBEDDING_DIM)
        data = [
            {"object": "embedding", "index": i, "embedding": _embed(str(text), dim)}
            for i, text in enumerate(items)
        ]
        tokens = sum(len(str(t).split()) for t in items)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", "text-embedding-3-small"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def chat(self, request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        self.log(body)
        model = str(body.get("model", DEFAULT_MODEL))
        messages: list[dict[str, Any]] = list(body.get("messages", []))
        turn = _read_turn(messages)
        self.records.append(
            {
                "model": model,
                "user_turns": turn.user_turns,
                "user_message": turn.user_message,
                "persona": turn.persona,
            }
        )
        try:
            base = _parse_tokens(MODEL_PRESETS.get(model, ""), Directives())
            directives = parse_directives(turn.user_message, base)
        except ValueError as exc:
            return _error(400, str(exc), "invalid_request_error")

        fail_status = directives.fail_status
        if directives.fail_times is not None:
            key = (turn.persona, strip_directives(turn.user_message))
            attempt = self.attempts.get(key, 0) + 1
            self.attempts[key] = attempt
            if attempt > directives.fail_times:
                fail_status = None
            elif fail_status is None:
                fail_status = 500

        plan = _plan(turn, directives, body.get("tools") or [], model)
        prompt_tokens = sum(len(_content_text(m.get("content")).split()) for m in messages)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": plan.token_count,
            "total_tokens": prompt_tokens + plan.token_count,
        }
        if fail_status is not None and directives.fail_at == 0:
            return _error(fail_status, f"scripted failure {fail_status}", _error_type(fail_status))

        if not body.get("stream"):
            if directives.stall_at is not None:
                await anyio.sleep_forever()
            if fail_status is not None:
                return _error(
                    fail_status, f"scripted failure {fail_status}", _error_type(fail_status)
                )
            return JSONResponse(_completion(model, plan, usage))

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        stream = _stream(model, plan, directives, fail_status, usage if include_usage else None)
        return StreamingResponse(stream, media_type="text/event-stream")


@dataclass(frozen=True)
class _Plan:
    reasoning: list[str]
    content: list[str]
    tool_call: tuple[str, str, str] | None  # (id, name, arguments json)

    @property
    def token_count(self) -> int:
        return len(self.reasoning) + len(self.content) + (1 if self.tool_call else 0)


def _plan(
    turn: _Turn, directives: Directives, tools: Sequence[Mapping[str, Any]], model: str
) -> _Plan:
    reasoning: list[str] = []
    if directives.reasoning:
        reasoning = _tokens(expected_reasoning(turn.persona, turn.user_message))
    if directives.tool and not turn.after_tool_result:
        tool = next(
            (t for t in tools if t.get("function", {}).get("name") == directives.tool),
            {"function": {"name": directives.tool}},
        )
        seed = hashlib.sha256(f"{turn.persona}\x00{turn.user_message}".encode()).hexdigest()
        call = (f"call_{seed[:24]}", directives.tool, json.dumps(_tool_arguments(tool)))
        return _Plan(reasoning, [], call)
    if directives.history:
        answer = expected_history_answer(turn.persona, turn.user_turns, model)
    else:
        answer = expected_answer(turn.persona, turn.user_message)
    return _Plan(reasoning, _tokens(answer), None)


def _chunk(cid: str, model: str, delta: dict[str, Any], finish: str | None = None) -> str:
    payload = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(payload)}\n\n"


async def _stream(
    model: str,
    plan: _Plan,
    directives: Directives,
    fail_status: int | None,
    usage: dict[str, int] | None,
) -> AsyncIterator[str]:
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    delay = 1.0 / directives.tps if directives.tps > 0 else 0.0
    yield _chunk(cid, model, {"role": "assistant", "content": ""})

    deltas: list[dict[str, Any]] = [{"reasoning_content": t} for t in plan.reasoning]
    deltas += [{"content": t} for t in plan.content]
    if plan.tool_call is not None:
        call_id, name, arguments = plan.tool_call
        deltas.append(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }
                ]
            }
        )
    for sent, delta in enumerate(deltas):
        if directives.stall_at is not None and sent >= directives.stall_at:
            await anyio.sleep_forever()
        if fail_status is not None and sent >= directives.fail_at:
            error = {
                "error": {
                    "message": f"scripted failure {fail_status}",
                    "type": _error_type(fail_status),
                    "code": str(fail_status),
                }
            }
            yield f"data: {json.dumps(error)}\n\n"
            return
        if delay:
            await anyio.sleep(delay)
        yield _chunk(cid, model, delta)
    if directives.stall_at is not None and directives.stall_at >= len(deltas):
        await anyio.sleep_forever()
    finish = "tool_calls" if plan.tool_call is not None else "stop"
    yield _chunk(cid, model, {}, finish)
    if usage is not None:
        payload = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [],
            "usage": usage,
        }
        yield f"data: {json.dumps(payload)}\n\n"
    yield "data: [DONE]\n\n"


def _completion(model: str, plan: _Plan, usage: dict[str, int]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": "".join(plan.content) or None}
    if plan.reasoning:
        message["reasoning_content"] = "".join(plan.reasoning)
    if plan.tool_call is not None:
        call_id, name, arguments = plan.tool_call
        message["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        ]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if plan.tool_call else "stop",
            }
        ],
        "usage": usage,
    }


def _error_type(status: int) -> str:
    return {429: "rate_limit_error", 400: "invalid_request_error"}.get(status, "server_error")


def _error(status: int, message: str, kind: str) -> Response:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "code": str(status)}}, status_code=status
    )


def _embed(text: str, dim: int) -> list[float]:
    raw: list[float] = []
    counter = 0
    while len(raw) < dim:
        digest = hashlib.sha256(f"{text}\x00{counter}".encode()).digest()
        raw.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    vector = raw[:dim]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [round(v / norm, 6) for v in vector]


def create_app(request_log: str | None = None) -> Starlette:
    """Create the ASGI app of the scripted model server (fresh ``fail_times`` counters).

    ``request_log`` names a file to append every chat request body to (JSON lines).
    """
    model = _ScriptedModel(request_log)
    routes = [
        Route("/v1/models", model.models, methods=["GET"]),
        Route("/v1/chat/completions", model.chat, methods=["POST"]),
        Route("/v1/embeddings", model.embeddings, methods=["POST"]),
        Route("/_scripted/requests", model.requests, methods=["GET"]),
    ]
    return Starlette(routes=routes)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the scripted model on loopback (``python -m orchestrator.testing._modelserver``)."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--request-log", default=None, help="append chat request bodies here")
    args = parser.parse_args(argv)
    uvicorn.run(
        create_app(args.request_log), host=args.host, port=args.port, log_level=args.log_level
    )


if __name__ == "__main__":
    main()

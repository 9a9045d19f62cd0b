"""Scripted sources and directories: deterministic agents for tests, demos and benchmarks.

They satisfy the same :class:`~orchestrator.Source` and :class:`~orchestrator.AgentDirectory`
protocols as the Letta adapter, so code written against those protocols can be tested with
them, without a Letta server.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing
from typing import Any

import anyio

from .._core._directory import AgentInfo, AgentRef, FailedSource
from .._core._events import SourceEvent
from .._core._exceptions import ConfigError, SourceError
from .._core._source import Checkpoint, Source

__all__ = ["ScriptedDirectory", "ScriptedFactory", "ScriptedSource"]


class ScriptedSource:
    """A deterministic source for tests, demos and benchmarks.

    Streams ``tokens`` as ``content`` deltas, ``delay_s`` apart. ``reasoning`` (text or
    tokens) and ``tool_calls`` (mappings with ``name``, ``arguments`` and ``result``) come
    first. ``fail_at=k`` raises :class:`SourceError` once ``k`` tokens were sent;
    ``stall_at=k`` stops sending after ``k`` tokens and never ends by itself.

    It records what happened to it: ``cancel_calls``, ``streams_opened``, ``streams_closed``
    and ``produced`` (events handed to the reader), so tests can check the fan-out's effects.
    """

    def __init__(
        self,
        agent_id: str,
        tokens: Sequence[str],
        *,
        delay_s: float = 0.0,
        fail_at: int | None = None,
        stall_at: int | None = None,
        label: str | None = None,
        reasoning: str | Sequence[str] | None = None,
        tool_calls: Sequence[Mapping[str, Any]] = (),
        fail_code: str = "scripted_failure",
        resumable: bool = False,
        skip: int = 0,
    ) -> None:
        if delay_s < 0:
            raise ConfigError(f"ScriptedSource {agent_id!r}: delay_s must be >= 0, got {delay_s}")
        for name, value in (("fail_at", fail_at), ("stall_at", stall_at)):
            if value is not None and value < 0:
                raise ConfigError(f"ScriptedSource {agent_id!r}: {name} must be >= 0, got {value}")
        self._agent_id = agent_id
        self._label = label or agent_id
        self.tokens = list(tokens)
        self.delay_s = delay_s
        self.fail_at = fail_at
        self.stall_at = stall_at
        self.fail_code = fail_code
        self.reasoning = [reasoning] if isinstance(reasoning, str) else list(reasoning or ())
        self.tool_calls = [dict(call) for call in tool_calls]
        self.cancel_calls = 0
        self.streams_opened = 0
        self.streams_closed = 0
        self.produced = 0
        self.messages: list[str] = []
        # Resumable like a background LettaSource: events carry ``cursor`` and a revived copy
        # (``skip``) replays the script without pacing and yields only what comes after.
        self.resumable = resumable
        self.skip = skip
        self._position = 0

    @property
    def agent_id(self) -> str:
        return self._agent_id

    @property
    def label(self) -> str:
        return self._label

    @property
    def text(self) -> str:
        """The full answer this source streams when nothing goes wrong."""
        return "".join(self.tokens)

    @property
    def closed(self) -> bool:
        """True when every stream opened so far has been closed (its ``finally`` ran)."""
        return self.streams_opened == self.streams_closed

    async def cancel(self) -> None:
        self.cancel_calls += 1

    def resume_spec(self) -> Mapping[str, Any] | None:
        """How a hub on another replica rebuilds this source (``None`` unless resumable)."""
        if not self.resumable:
            return None
        return {"kind": "scripted", "agent_id": self._agent_id, "label": self._label}

    def stream(self, message: str) -> AsyncIterator[SourceEvent]:
        self._position = 0
        # The plain script is the stream itself: benchmarks of the core read it per token.
        return self._resumable(message) if self.resumable else self._script(message)

    async def _resumable(self, message: str) -> AsyncIterator[SourceEvent]:
        async with aclosing(self._script(message)) as script:
            async for sev in script:
                self._position += 1
                if self._position > self.skip:
                    yield SourceEvent(sev.type, {**sev.data, "cursor": self._position})

    async def _script(self, message: str) -> AsyncGenerator[SourceEvent, None]:
        self.streams_opened += 1
        self.messages.append(message)
        run = self.streams_opened
        try:
            yield SourceEvent("agent_start", {"run_id": f"run-{self._agent_id}-{run}"})
            self.produced += 1
            reasoning_id = f"{self._agent_id}-r{run}"
            for piece in self.reasoning:
                await self._pace()
                yield SourceEvent.reasoning(piece, reasoning_id)
                self.produced += 1
            for n, call in enumerate(self.tool_calls):
                call_id = call.get("tool_call_id", f"{self._agent_id}-call-{n}")
                yield SourceEvent(
                    "tool_call",
                    {
                        "name": call["name"],
                        "arguments": call.get("arguments", {}),
                        "tool_call_id": call_id,
                    },
                )
                self.produced += 1
                yield SourceEvent(
                    "tool_result",
                    {
                        "tool_call_id": call_id,
                        "status": call.get("status", "success"),
                        "result": call.get("result"),
                    },
                )
                self.produced += 1
            message_id = f"{self._agent_id}-m{run}"
            for k, token in enumerate(self.tokens):
                await self._interrupt_at(k)
                await self._pace()
                yield SourceEvent.content(token, message_id)
                self.produced += 1
            await self._interrupt_at(len(self.tokens))
            n = len(self.tokens)
            yield SourceEvent(
                "usage",
                {
                    "prompt_tokens": len(message.split()),
                    "completion_tokens": n,
                    "total_tokens": len(message.split()) + n,
                    "step_count": 1,
                },
            )
            self.produced += 1
            yield SourceEvent("agent_done", {"stop_reason": "end_turn"})
            self.produced += 1
        finally:
            self.streams_closed += 1

    async def _pace(self) -> None:
        if self.delay_s > 0 and self._position >= self.skip:
            await anyio.sleep(self.delay_s)

    async def _interrupt_at(self, k: int) -> None:
        if self.fail_at is not None and k == self.fail_at:
            raise SourceError(
                f"{self._agent_id}: scripted failure at token {k}", code=self.fail_code
            )
        if self.stall_at is not None and k == self.stall_at:
            await anyio.sleep_forever()


ScriptedFactory = Callable[[str, str], ScriptedSource]
"""Builds a fresh scripted source from ``(agent_id, label)``."""


class ScriptedDirectory:
    """A directory of scripted agents, for tests and demos without a Letta server.

    ``agents`` maps an agent id to a factory of fresh :class:`ScriptedSource` objects (one
    per fan-out, so their counters describe that fan-out). Names equal ids. Every source
    handed out is kept in ``created`` so tests can check what happened to it.
    """

    def __init__(self, agents: Mapping[str, ScriptedFactory]) -> None:
        self._agents = dict(agents)
        self.created: list[ScriptedSource] = []

    async def list_agents(self) -> list[AgentInfo]:
        return [AgentInfo(agent_id=a, name=a, model="scripted") for a in self._agents]

    async def sources(self, refs: Sequence[AgentRef]) -> list[Source]:
        out: list[Source] = []
        for ref in refs:
            key = ref.key
            label = ref.label or key
            factory = self._agents.get(key)
            if factory is None:
                out.append(
                    FailedSource(
                        key, code="agent_not_found", message=f"agent {key!r} not found", label=label
                    )
                )
                continue
            source = factory(key, label)
            self.created.append(source)
            out.append(source)
        return out

    async def revive(self, checkpoint: Checkpoint) -> Source | None:
        """A resumable scripted agent of a dead replica's fan-out, continued after its
        checkpoint; ``None`` for one that is not resumable (it ends ``replica_lost``)."""
        factory = self._agents.get(str(checkpoint.spec.get("agent_id")))
        if factory is None or checkpoint.spec.get("kind") != "scripted":
            return None
        source = factory(checkpoint.agent_id, checkpoint.label)
        if not source.resumable:
            return None
        source.skip = checkpoint.cursor or 0
        self.created.append(source)
        return source

    async def aclose(self) -> None:
        return None

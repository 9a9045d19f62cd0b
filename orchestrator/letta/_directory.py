"""``LettaDirectory``: the agents of a Letta server, as sources; ``agents sync`` behind it.

A directory owns one ``AsyncLetta`` client (one connection pool) that every source it hands
out shares. References by name are resolved to ids when sources are made; a name that does
not resolve gives a :class:`~orchestrator.FailedSource` (``agent_not_found``), an unknown id
fails on its own with the server's 404, so the other agents of a fan-out still run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from letta_client import AsyncLetta

from .._core._directory import AgentInfo, AgentRef, FailedSource
from .._core._exceptions import ConfigError, SourceError
from .._core._source import Checkpoint, Source
from ..config._config import AgentConfig, LettaConnection
from ._client import connect_retrying, create_letta_client
from ._mapping import classify_error
from ._source import LettaSource

__all__ = ["LettaDirectory", "SyncResult", "create_letta_directory"]


# What a reference may carry for its source besides id, name and label.
_SOURCE_FIELDS = (
    "model",
    "column_id",
    "conversation_id",
    "fresh_conversation",
    "keep_conversation",
    "background",
)


def _info(agent: Any) -> AgentInfo:
    llm = getattr(agent, "llm_config", None)
    model = (
        getattr(agent, "model", None) or getattr(llm, "handle", None) or getattr(llm, "model", None)
    )
    return AgentInfo(
        agent_id=agent.id,
        name=agent.name,
        model=model,
        description=getattr(agent, "description", None),
    )


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What ``agents sync`` did with one config entry."""

    key: str
    label: str
    action: Literal["created", "reused", "found", "missing"]
    agent_id: str | None
    model: str | None = None


class LettaDirectory:
    """Agents of one Letta server, as sources that share one client.

    Build it from a :class:`LettaConnection`, a ``base_url`` (+ ``api_key``), or an existing
    ``AsyncLetta`` (then the caller keeps ownership and :meth:`aclose` leaves it open). Use
    it as an async context manager or call :meth:`aclose`. ``source_options`` go to every
    :class:`LettaSource` (e.g. ``connect_retries``, ``retry_initial_s``, ``background``);
    ``background`` defaults to ``connection.background``.
    """

    def __init__(
        self,
        client: AsyncLetta | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        connection: LettaConnection | None = None,
        stream_tokens: bool = True,
        **source_options: Any,
    ) -> None:
        if client is not None and (base_url or api_key or connection):
            raise ConfigError("LettaDirectory: give a client or connection settings, not both")
        if connection is None:
            connection = LettaConnection(base_url=base_url, api_key=api_key)
        elif base_url or api_key:
            connection = connection.model_copy(
                update={
                    "base_url": base_url or connection.base_url,
                    "api_key": api_key or connection.api_key,
                }
            )
        self._owns_client = client is None
        self._client = client if client is not None else create_letta_client(connection)
        self.stream_tokens = stream_tokens
        self.source_options: dict[str, Any] = {
            "connect_retries": connection.connect_retries,
            "background": connection.background,
            **source_options,
        }
        self._closed = False

    @property
    def client(self) -> AsyncLetta:
        """The shared ``AsyncLetta`` client."""
        return self._client

    async def __aenter__(self) -> LettaDirectory:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client if this directory created it. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._client.close()

    async def list_agents(self) -> list[AgentInfo]:
        """Every agent on the server (raises :class:`SourceError` when it cannot be reached)."""
        try:
            return [_info(agent) async for agent in self._client.agents.list()]
        except Exception as exc:
            raise classify_error(exc) from exc

    async def find(self, name: str) -> AgentInfo | None:
        """The oldest agent called ``name``, or ``None`` (raises :class:`SourceError`)."""
        retrying = connect_retrying(
            self.source_options["connect_retries"],
            self.source_options.get("retry_initial_s", 0.2),
            self.source_options.get("retry_max_s", 2.0),
        )
        try:
            async for attempt in retrying:
                with attempt:
                    page = await self._client.agents.list(
                        name=name, order="asc", order_by="created_at", limit=10
                    )
                    for agent in page.items:
                        # The server's name filter is exact today; do not rely on it.
                        if agent.name == name:
                            return _info(agent)
                    return None
        except Exception as exc:
            raise classify_error(exc) from exc
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def sources(self, refs: Sequence[AgentRef]) -> list[Source]:
        """One :class:`LettaSource` per reference, in order; names are resolved to ids.

        A name that matches no agent gives a source that ends with ``agent_not_found``; a
        server that cannot be reached, one that ends with ``unavailable``. References may
        carry more than :class:`AgentRef` does (the batch runner's do): ``model`` (sent as
        ``override_model``), ``column_id``, ``conversation_id``, ``fresh_conversation``,
        ``keep_conversation`` and ``background`` go to the source when present.
        """
        out: list[Source] = []
        for ref in refs:
            label = ref.label or ref.key
            agent_id = ref.agent_id
            if agent_id is None:
                name = ref.name or ""
                try:
                    info = await self.find(name)
                except SourceError as exc:
                    out.append(
                        FailedSource(
                            name,
                            code=exc.code,
                            message=exc.message,
                            retryable=exc.retryable,
                            label=label,
                        )
                    )
                    continue
                if info is None:
                    out.append(
                        FailedSource(
                            name,
                            code="agent_not_found",
                            message=f"no agent named {name!r} on the Letta server",
                            label=label,
                        )
                    )
                    continue
                agent_id = info.agent_id
            extra = {
                name: getattr(ref, name)
                for name in _SOURCE_FIELDS
                if getattr(ref, name, None) is not None
            }
            out.append(
                LettaSource(
                    self._client,
                    agent_id,
                    label=label,
                    stream_tokens=self.stream_tokens,
                    **{**self.source_options, **extra},
                )
            )
        return out

    async def revive(self, checkpoint: Checkpoint) -> Source:
        """The source that continues an agent's run after its replica was lost.

        ``checkpoint.spec`` is a :meth:`LettaSource.resume_spec`; see
        :meth:`LettaSource.revived`. A spec of another kind gives a source that ends with
        ``agent_error`` ``replica_lost`` (retryable). Never raises.
        """
        try:
            return LettaSource.revived(self._client, checkpoint, **self.source_options)
        except ConfigError as exc:
            return FailedSource(
                checkpoint.agent_id,
                code="replica_lost",
                message=f"cannot continue the agent's run here: {exc}",
                retryable=True,
                label=checkpoint.label,
            )

    async def sync(self, agents: Sequence[AgentConfig]) -> list[SyncResult]:
        """Make every agent of a config exist: create missing specs, reuse the rest by name.

        Idempotent: a second run creates nothing. References (no spec) are only looked up
        (``found`` or ``missing``). Raises :class:`SourceError` when the server fails.
        """
        results: list[SyncResult] = []
        for agent in agents:
            results.append(await self._sync_one(agent))
        return results

    async def _sync_one(self, agent: AgentConfig) -> SyncResult:
        label = agent.display
        if agent.id is not None:
            try:
                state = await self._client.agents.retrieve(agent.id)
            except Exception as exc:
                error = classify_error(exc)
                if error.code == "agent_not_found":
                    return SyncResult(agent.id, label, "missing", None)
                raise error from exc
            info = _info(state)
            return SyncResult(agent.id, label, "found", info.agent_id, info.model)
        name = agent.name or ""
        existing = await self.find(name)
        if existing is not None:
            action: Literal["reused", "found"] = "reused" if agent.is_spec else "found"
            return SyncResult(name, label, action, existing.agent_id, existing.model)
        if not agent.is_spec:
            return SyncResult(name, label, "missing", None)
        try:
            state = await self._client.agents.create(**_create_params(agent))
        except Exception as exc:
            raise classify_error(exc) from exc
        info = _info(state)
        return SyncResult(name, label, "created", info.agent_id, info.model or agent.model)


def _create_params(agent: AgentConfig) -> dict[str, Any]:
    params: dict[str, Any] = {
        "name": agent.name,
        "model": agent.model,
        "memory_blocks": [
            {
                "label": block.label,
                "value": block.value,
                **({"description": block.description} if block.description else {}),
                **({"limit": block.limit} if block.limit else {}),
            }
            for block in agent.memory_blocks()
        ],
    }
    optional = {
        "description": agent.description,
        "embedding": agent.embedding,
        "system": agent.system,
        "include_base_tools": agent.include_base_tools,
    }
    params.update({k: v for k, v in optional.items() if v is not None})
    if agent.tools:
        params["tools"] = list(agent.tools)
    if agent.tags:
        params["tags"] = list(agent.tags)
    return params


def create_letta_directory(**source_options: Any) -> LettaDirectory:
    """A directory for the server named by ``LETTA_BASE_URL`` / ``LETTA_API_KEY``.

    Without ``LETTA_BASE_URL`` it is the project's local stack. ``source_options`` go to
    every :class:`LettaSource`.
    """
    return LettaDirectory(connection=LettaConnection(), **source_options)

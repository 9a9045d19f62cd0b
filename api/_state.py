"""What the app's endpoints share: settings, the agent directory, the hub and metrics.

:data:`State` is the dependency that hands an endpoint the app's :class:`ApiState`;
:func:`find` is the one lookup of a fan-out (``404`` unknown, ``410`` expired) and
:func:`launch` the one way a fan-out starts, for HTTP and WebSocket alike, so both apply
the same limits and report the same errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from orchestrator import (
    AgentDirectory,
    CapacityError,
    ConfigError,
    FanOutExpiredError,
    FanOutHub,
    HubFanOut,
    HubUnavailableError,
    UnknownFanOutError,
)

from ._errors import ApiError, describe_exception, hub_unavailable
from ._metrics import ApiMetrics
from ._models import FanOutRequest
from ._settings import ApiSettings


@dataclass
class ApiState:
    """The app's shared objects; ``hub`` exists while the app's lifespan runs."""

    settings: ApiSettings
    directory: AgentDirectory
    metrics: ApiMetrics
    hub: FanOutHub | None = None

    def require_hub(self) -> FanOutHub:
        """The running hub; a ``503`` :class:`ApiError` outside the lifespan."""
        if self.hub is None:
            raise ApiError(503, "not_ready", "the server is starting or shutting down")
        return self.hub


def get_state(conn: HTTPConnection) -> ApiState:
    """The :class:`ApiState` of the app serving ``conn`` (a FastAPI dependency)."""
    state: ApiState = conn.app.state.api
    return state


#: An endpoint parameter of this type receives the app's :class:`ApiState`.
State = Annotated[ApiState, Depends(get_state)]


async def find(state: ApiState, fanout_id: str) -> HubFanOut:
    """The fan-out of that id, on any replica; ``404`` unknown, ``410`` expired, ``503``
    when the hub's Redis is down and this replica does not hold it."""
    try:
        return await state.require_hub().find(fanout_id)
    except UnknownFanOutError as exc:
        raise ApiError(404, "fanout_not_found", str(exc)) from None
    except FanOutExpiredError as exc:
        raise ApiError(410, "fanout_expired", str(exc)) from None
    except HubUnavailableError as exc:
        raise hub_unavailable(exc) from None


def check_limits(settings: ApiSettings, body: FanOutRequest) -> None:
    """Raise an :class:`ApiError` naming the limit that ``body`` exceeds."""
    if len(body.agents) > settings.max_agents:
        raise ApiError(
            422,
            "too_many_agents",
            f"a fan-out may have at most {settings.max_agents} agents, got {len(body.agents)}",
        )
    size = len(body.message.encode())
    if size > settings.max_message_bytes:
        raise ApiError(
            413,
            "message_too_large",
            f"message is {size} bytes, the maximum is {settings.max_message_bytes}",
        )


async def launch(
    state: ApiState, body: FanOutRequest, *, streaming: bool, transport: str
) -> HubFanOut:
    """Start the fan-out ``body`` describes in the hub.

    Unknown agents are not an error here: they end at once with ``agent_error``
    ``agent_not_found`` in the stream. Raises :class:`ApiError` for a limit (``413``,
    ``422``), bad options (``422``) or a full server (``429`` with ``Retry-After``).
    """
    hub = state.require_hub()
    check_limits(state.settings, body)
    # Fail fast before asking the directory (which may call the Letta server).
    if hub.active >= hub.max_active:
        raise _busy(hub)
    options = body.options.to_options()
    try:
        options.validate(len(body.agents))
    except ConfigError as exc:
        raise ApiError(422, "invalid_options", str(exc)) from None
    try:
        sources = await state.directory.sources([a.to_ref() for a in body.agents])
    except Exception as exc:
        raise ApiError(
            502, "directory_unavailable", f"could not resolve agents: {describe_exception(exc)}"
        ) from None
    try:
        entry = await hub.submit(
            sources,
            body.message,
            options,
            on_disconnect=body.options.disconnect_policy(streaming=streaming),
        )
    except CapacityError:
        raise _busy(hub) from None
    except HubUnavailableError as exc:
        raise hub_unavailable(exc) from None
    except ConfigError as exc:
        raise ApiError(422, "invalid_options", str(exc)) from None
    state.metrics.fanouts.labels(transport).inc()
    return entry


def _busy(hub: FanOutHub) -> ApiError:
    retry = max(1, round(hub.retry_after_s))
    return ApiError(
        429,
        "too_many_fanouts",
        f"{hub.active} fan-outs are running, the maximum is {hub.max_active}; retry later",
        headers={"Retry-After": str(retry)},
    )

"""Endpoints about the server itself: agents, health, metrics, and the OpenAPI additions."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response

from orchestrator import PROTOCOL_VERSION, event_schema

from ._errors import ApiError
from ._models import AgentListing
from ._state import ApiState, get_state

State = Annotated[ApiState, Depends(get_state)]

router = APIRouter(tags=["server"])
open_router = APIRouter(tags=["server"])


@router.get("/v1/agents", response_model=list[AgentListing], responses={502: {}})
async def list_agents(state: State) -> list[AgentListing]:
    """The agents the server can fan out to (for pickers in UIs)."""
    try:
        with anyio.fail_after(max(state.settings.health_timeout_s, 10.0)):
            infos = await state.directory.list_agents()
    except Exception as exc:
        raise ApiError(
            502, "directory_unavailable", f"could not list agents: {type(exc).__name__}: {exc}"
        ) from None
    return [
        AgentListing(agent_id=i.agent_id, name=i.name, model=i.model, description=i.description)
        for i in infos
    ]


@router.get("/metrics", response_class=Response)
async def metrics(state: State) -> Response:
    """Prometheus metrics: fan-outs, agent streams, events, time to first token, cancels."""
    return Response(state.metrics.render(), media_type=state.metrics.content_type)


@open_router.get("/healthz")
async def healthz(state: State) -> dict[str, Any]:
    """Liveness, and whether the agent directory (the Letta server) answers.

    Always `200` while the API runs; `status` is `degraded` when Letta does not answer.
    """
    letta: dict[str, Any]
    try:
        with anyio.fail_after(state.settings.health_timeout_s):
            agents = await state.directory.list_agents()
        letta = {"ok": True, "agents": len(agents)}
    except Exception as exc:
        letta = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    hub = state.hub
    return {
        "status": "ok" if letta["ok"] else "degraded",
        "protocol_version": PROTOCOL_VERSION,
        "letta": letta,
        "active_fanouts": hub.active if hub else 0,
    }


def install_openapi(app: FastAPI) -> None:
    """Add the event's JSON Schema to the OpenAPI document (as ``Event``)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schema = {k: v for k, v in event_schema().items() if k not in ("$schema", "$id")}
            doc.setdefault("components", {}).setdefault("schemas", {})["Event"] = schema
            _drop_null_parameters(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _drop_null_parameters(doc: dict[str, Any]) -> None:
    # ``int | None = None`` makes FastAPI document a parameter as "integer or null", but a
    # query or header value cannot be null on the wire (it is absent instead): a client
    # sending the text "null" would follow the schema and get a 422.
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
                if len(branches) == 1 and len(schema["anyOf"]) == 2:
                    del schema["anyOf"]
                    schema.update(branches[0])

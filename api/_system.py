"""Endpoints about the server itself: agents, health, metrics, and the OpenAPI additions."""

from __future__ import annotations

import json
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response

from orchestrator import PROTOCOL_VERSION, AgentDirectory, AgentInfo, event_schema

from ._errors import ApiError, describe_exception, error_responses
from ._models import AgentListing, Health, HubHealth, LettaHealth
from ._state import State

# Behind the API key (when the app has one); ``open_router`` is not.
router = APIRouter(tags=["server"], responses=error_responses(401))
open_router = APIRouter(tags=["server"])


@router.get("/v1/agents", response_model=list[AgentListing], responses=error_responses(502))
async def list_agents(state: State) -> list[AgentListing]:
    """The agents the server can fan out to (for pickers in UIs)."""
    timeout_s = max(state.settings.health_timeout_s, 10.0)
    try:
        infos = await _list_agents(state.directory, timeout_s)
    except Exception as exc:
        raise ApiError(
            502, "directory_unavailable", f"could not list agents: {describe_exception(exc)}"
        ) from None
    return [
        AgentListing(agent_id=i.agent_id, name=i.name, model=i.model, description=i.description)
        for i in infos
    ]


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "The Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(state: State) -> Response:
    """Prometheus metrics: fan-outs, agent streams, events, time to first token, cancels."""
    return Response(state.metrics.render(), media_type=state.metrics.content_type)


@open_router.get("/healthz", response_model=Health, response_model_exclude_none=True)
async def healthz(state: State) -> Health:
    """Liveness, and whether the agent directory (the Letta server) answers.

    Always `200` while the API runs; `status` is `degraded` when Letta does not answer
    (`letta.error` says why: the error's type and text, or how long it waited) or when the
    hub's Redis cannot be reached (`hub.error`; new fan-outs get `503 hub_unavailable`).
    """
    try:
        agents = await _list_agents(state.directory, state.settings.health_timeout_s)
        letta = LettaHealth(ok=True, agents=len(agents))
    except Exception as exc:
        letta = LettaHealth(ok=False, error=describe_exception(exc))
    hub = state.hub
    hub_health = HubHealth.model_validate(hub.health()) if hub is not None else None
    healthy = letta.ok and (hub_health is None or hub_health.ok)
    return Health(
        status="ok" if healthy else "degraded",
        protocol_version=PROTOCOL_VERSION,
        letta=letta,
        hub=hub_health,
        active_fanouts=hub.active if hub else 0,
    )


async def _list_agents(directory: AgentDirectory, timeout_s: float) -> list[AgentInfo]:
    # anyio's deadline raises a TimeoutError without text: say what waited, and how long.
    with anyio.move_on_after(timeout_s):
        return list(await directory.list_agents())
    raise TimeoutError(
        f"the agent directory (the Letta server) did not answer within {timeout_s:g} s"
    )


def install_openapi(app: FastAPI) -> None:
    """Add the event's JSON Schema to the OpenAPI document (as ``Event``), and document
    every ``422`` with the error body the app really sends."""

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
            _document_validation_errors(doc)
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


_ERROR_REF = "#/components/schemas/ErrorResponse"
_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def _document_validation_errors(doc: dict[str, Any]) -> None:
    # FastAPI documents a 422 it adds by itself with its own body (``{"detail": [...]}``);
    # the app's handler answers every validation error with ``ErrorResponse`` instead.
    schemas = doc.get("components", {}).get("schemas", {})
    if "ErrorResponse" not in schemas:
        return
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            response = operation.get("responses", {}).get("422")
            content = (response or {}).get("content", {}).get("application/json", {})
            if content.get("schema", {}).get("$ref") == _FASTAPI_422:
                content["schema"] = {"$ref": _ERROR_REF}
                response["description"] = "invalid_request"
    if _FASTAPI_422 not in json.dumps(doc.get("paths", {})):
        schemas.pop("HTTPValidationError", None)
        if "#/components/schemas/ValidationError" not in json.dumps(doc):
            schemas.pop("ValidationError", None)

"""The OpenAPI document is the API's contract: every JSON endpoint names its response schema,
and real responses validate against the document (not only against the pydantic models).

Also the shape of ``api/`` the architecture issue asks for: the app state and the fan-out
lookup live in one module, and no optional import fails silently.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from api import ApiSettings

from .conftest import open_api

API_DIR = Path(__file__).resolve().parents[2] / "api"

#: (method, path) -> the schema its 2xx answer is documented with.
RESPONSES = {
    ("get", "/v1/fanouts"): "FanOutList",
    ("get", "/v1/fanouts/{fanout_id}"): "FanOutSummary",
    ("post", "/v1/fanouts"): "FanOutCreated",
    ("post", "/v1/fanouts/{fanout_id}/cancel"): "CancelAccepted",
    ("get", "/healthz"): "Health",
    ("get", "/v1/presets"): "PresetList",
}


def _success_schema(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    responses = doc["paths"][path][method]["responses"]
    status = next(code for code in responses if code.startswith("2"))
    schema: dict[str, Any] = responses[status]["content"]["application/json"]["schema"]
    return schema


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    # References point into the document's components: validate with the document as root.
    return Draft202012Validator({**schema, "components": doc["components"]})


def _check(doc: dict[str, Any], method: str, path: str, response: httpx.Response) -> None:
    assert response.headers["content-type"].startswith("application/json")
    schema = _success_schema(doc, method, path)
    errors = list(_validator(doc, schema).iter_errors(response.json()))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


async def test_every_json_endpoint_names_its_response_schema() -> None:
    async with open_api() as api:
        doc = (await api.client.get("/openapi.json")).json()
    for (method, path), name in RESPONSES.items():
        schema = _success_schema(doc, method, path)
        assert schema.get("$ref", "").rsplit("/", 1)[-1].startswith(name), (path, schema)
    assert {"FanOutBrief", "AgentSummary", "LettaHealth", "Preset", "ErrorResponse"} <= set(
        doc["components"]["schemas"]
    )
    # Errors are documented with the body they really have, not FastAPI's default.
    get_fanout = doc["paths"]["/v1/fanouts/{fanout_id}"]["get"]["responses"]
    for status in ("401", "404", "410"):
        ref = get_fanout[status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorResponse"), (status, ref)
    # FastAPI's own validation body never appears: every 422 is an ErrorResponse.
    assert "HTTPValidationError" not in str(doc)


async def test_no_answer_is_documented_as_just_any_json() -> None:
    async with open_api() as api:
        doc = (await api.client.get("/openapi.json")).json()
    empty = [
        (method, path, status, media)
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
        for media, content in response.get("content", {}).items()
        if not content.get("schema")
    ]
    assert empty == []


async def test_real_responses_validate_against_the_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "pair.yaml").write_text(
        "agents: [{id: alpha, label: A}, {name: beta}]\noptions: {timeout_s: 30}\n"
    )
    async with open_api() as api:
        doc = (await api.client.get("/openapi.json")).json()
        body = {
            "agents": [{"agent_id": "alpha"}, {"agent_id": "staller"}, {"agent_id": "failer"}],
            "message": "hi",
        }
        created = await api.client.post("/v1/fanouts", json=body)
        _check(doc, "post", "/v1/fanouts", created)
        fanout_id = created.json()["fanout_id"]
        # Running: per-agent buffers; then finished: the summary of fanout_done.
        running = await api.client.get(f"/v1/fanouts/{fanout_id}")
        _check(doc, "get", "/v1/fanouts/{fanout_id}", running)
        cancel = await api.client.post(
            f"/v1/fanouts/{fanout_id}/cancel", json={"agent_id": "staller"}
        )
        _check(doc, "post", "/v1/fanouts/{fanout_id}/cancel", cancel)
        await api.app.state.api.hub.get(fanout_id).wait()
        finished = await api.client.get(f"/v1/fanouts/{fanout_id}")
        _check(doc, "get", "/v1/fanouts/{fanout_id}", finished)
        agents = finished.json()["agents"]
        assert {a: s["state"] for a, s in agents.items()} == {
            "alpha": "done",
            "staller": "cancelled",
            "failer": "error",
        }
        # The summary keeps each state's own fields and no others.
        assert {"stop_reason", "text_length"} <= set(agents["alpha"])
        assert agents["staller"]["reason"] == "user"
        assert {"code", "message"} <= set(agents["failer"])
        assert "code" not in agents["alpha"]
        _check(doc, "get", "/v1/fanouts", await api.client.get("/v1/fanouts"))
        _check(doc, "get", "/healthz", await api.client.get("/healthz"))
        presets = await api.client.get("/v1/presets")
        _check(doc, "get", "/v1/presets", presets)
        assert presets.json()["presets"][0]["agents"] == [
            {"label": "A", "agent_id": "alpha"},
            {"label": "beta", "name": "beta"},
        ]


async def test_a_degraded_health_and_an_error_validate_too() -> None:
    class Down:
        async def list_agents(self) -> list[Any]:
            raise ConnectionError("letta is down")

    async with open_api(ApiSettings(api_key="k" * 20)) as api:
        doc = (await api.client.get("/openapi.json")).json()
        api.app.state.api.directory = Down()
        health = await api.client.get("/healthz")
        _check(doc, "get", "/healthz", health)
        assert health.json()["letta"] == {"ok": False, "error": "ConnectionError: letta is down"}
        unauthorized = await api.client.get("/v1/fanouts")
    assert unauthorized.status_code == 401
    schema = doc["paths"]["/v1/fanouts"]["get"]["responses"]["401"]["content"]
    validator = _validator(doc, schema["application/json"]["schema"])
    assert not list(validator.iter_errors(unauthorized.json()))


def _modules() -> dict[str, ast.Module]:
    return {p.name: ast.parse(p.read_text(), str(p)) for p in sorted(API_DIR.glob("*.py"))}


def test_state_and_the_fanout_lookup_live_in_one_module() -> None:
    defined: dict[str, list[str]] = {"State": [], "find": [], "ApiState": []}
    for name, tree in _modules().items():
        for node in tree.body:
            targets: list[str] = []
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                targets = [node.name]
            elif isinstance(node, ast.Assign):
                targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                targets = [node.target.id]
            for target in targets:
                if target in defined:
                    defined[target].append(name)
    assert defined == {"State": ["_state.py"], "find": ["_state.py"], "ApiState": ["_state.py"]}


def test_no_import_error_is_swallowed() -> None:
    """A failed import raises; one of a package (an optional dependency) names the extra."""
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Try):
                continue
            static = any(
                isinstance(n, ast.Import | ast.ImportFrom) for b in node.body for n in ast.walk(b)
            )
            for handler in node.handlers:
                caught = handler.type
                kinds = caught.elts if isinstance(caught, ast.Tuple) else [caught]
                names = {k.id for k in kinds if isinstance(k, ast.Name)}
                if caught is not None and not names & {"ImportError", "ModuleNotFoundError"}:
                    continue
                where = f"api/{name}:{handler.lineno}"
                assert any(isinstance(n, ast.Raise) for n in ast.walk(handler)), (
                    f"{where} swallows an ImportError"
                )
                if static:
                    text = ast.unparse(handler)
                    assert "pip install" in text or "extra" in text, (
                        f"{where}: say which extra to install"
                    )

"""Every endpoint and error code, in-process (httpx ``ASGITransport``)."""

from __future__ import annotations

from typing import Any

import pytest

from api import ApiSettings

from .conftest import Api, open_api, read_sse

SSE = {"Accept": "text/event-stream"}


def body(*agents: str, **options: Any) -> dict[str, Any]:
    return {"agents": [{"agent_id": a} for a in agents], "message": "hi", "options": options}


def error_code(response: Any) -> str:
    return str(response.json()["error"]["code"])


async def test_post_with_sse_streams_the_merged_events(api: Api) -> None:
    response, events = await read_sse(
        api.client, "POST", "/v1/fanouts", json=body("alpha", "beta"), headers=SSE
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-fanout-id"] == events[0].fanout_id
    assert [e.index for e in events] == list(range(len(events)))
    assert events[0].type == "fanout_start"
    assert events[-1].type == "fanout_done"
    text = {
        a: "".join(e.delta for e in events if e.agent_id == a and e.type == "content")
        for a in ("alpha", "beta")
    }
    assert text == {"alpha": "Hello, world.", "beta": "Bonjour le monde"}
    assert {e.type for e in events} >= {
        "reasoning",
        "tool_call",
        "tool_result",
        "usage",
        "agent_done",
    }


async def test_post_without_sse_runs_in_background(api: Api) -> None:
    response = await api.client.post("/v1/fanouts", json=body("alpha"))
    assert response.status_code == 201
    created = response.json()
    assert created["events_url"] == f"/v1/fanouts/{created['fanout_id']}/events"
    assert response.headers["location"] == created["events_url"]
    _, events = await read_sse(api.client, "GET", created["events_url"])
    assert events[-1].type == "fanout_done"
    assert all(e.fanout_id == created["fanout_id"] for e in events)


async def test_unknown_agents_are_reported_per_agent_in_the_stream(api: Api) -> None:
    _, events = await read_sse(
        api.client, "POST", "/v1/fanouts", json=body("alpha", "ghost"), headers=SSE
    )
    ghost = [e for e in events if e.agent_id == "ghost" and e.is_terminal]
    assert [(e.type, e.get("code")) for e in ghost] == [("agent_error", "agent_not_found")]
    alpha = [e for e in events if e.agent_id == "alpha" and e.is_terminal]
    assert alpha[0].type == "agent_done"


async def test_resume_replays_after_last_event_id_or_after(api: Api) -> None:
    created = (await api.client.post("/v1/fanouts", json=body("alpha", "beta"))).json()
    url = created["events_url"]
    _, full = await read_sse(api.client, "GET", url)
    _, tail = await read_sse(api.client, "GET", url, headers={"Last-Event-ID": "5"})
    assert [e.to_json() for e in tail] == [e.to_json() for e in full[6:]]
    _, tail = await read_sse(api.client, "GET", url + "?after=9")
    assert [e.index for e in tail] == [e.index for e in full[10:]]
    # The header wins over the query (browsers resend it on the same URL).
    _, tail = await read_sse(api.client, "GET", url + "?after=1", headers={"Last-Event-ID": "9"})
    assert tail[0].index == 10
    _, none = await read_sse(api.client, "GET", url, headers={"Last-Event-ID": str(full[-1].index)})
    assert none == []


async def test_events_errors_404_410_422() -> None:
    settings = ApiSettings(max_log_events=4, retention_s=60)
    async with open_api(settings) as api:
        response = await api.client.get("/v1/fanouts/f-nope/events")
        assert (response.status_code, error_code(response)) == (404, "fanout_not_found")
        created = (await api.client.post("/v1/fanouts", json=body("alpha"))).json()
        hub = api.app.state.api.hub
        await hub.get(created["fanout_id"]).wait()
        response = await api.client.get(created["events_url"], headers={"Last-Event-ID": "0"})
        assert (response.status_code, error_code(response)) == (410, "events_expired")
        response = await api.client.get(created["events_url"] + "?after=x")
        assert response.status_code == 422
        # The retained tail is still there.
        _, tail = await read_sse(
            api.client, "GET", created["events_url"], headers={"Last-Event-ID": "8"}
        )
        assert tail[-1].type == "fanout_done"
        # Past the retention window the whole fan-out is gone: 410.
        hub._ended_at[created["fanout_id"]] -= 61
        for path in (created["events_url"], f"/v1/fanouts/{created['fanout_id']}"):
            response = await api.client.get(path)
            assert (response.status_code, error_code(response)) == (410, "fanout_expired")


async def test_cancel_one_agent_and_all(api: Api) -> None:
    created = (await api.client.post("/v1/fanouts", json=body("staller", "alpha", "failer"))).json()
    fid = created["fanout_id"]
    response = await api.client.post(f"/v1/fanouts/{fid}/cancel", json={"agent_id": "staller"})
    assert response.status_code == 202
    assert response.json() == {"fanout_id": fid, "agent_id": "staller", "cancelled": True}
    _, events = await read_sse(api.client, "GET", created["events_url"])
    ends = {e.agent_id: (e.type, e.get("reason") or e.get("code")) for e in events if e.is_terminal}
    assert ends == {
        "staller": ("agent_cancelled", "user"),
        "alpha": ("agent_done", None),
        "failer": ("agent_error", "scripted_failure"),
    }
    staller = next(s for s in api.directory.created if s.agent_id == "staller")
    assert staller.cancel_calls == 1
    # All ended: still 202, nothing cancelled.
    response = await api.client.post(f"/v1/fanouts/{fid}/cancel")
    assert (response.status_code, response.json()["cancelled"]) == (202, False)
    response = await api.client.post(f"/v1/fanouts/{fid}/cancel", json={"agent_id": "ghost"})
    assert (response.status_code, error_code(response)) == (404, "agent_not_found")
    response = await api.client.post("/v1/fanouts/f-nope/cancel")
    assert response.status_code == 404


async def test_cancel_all_before_reading(api: Api) -> None:
    created = (await api.client.post("/v1/fanouts", json=body("staller"))).json()
    response = await api.client.post(f"/v1/fanouts/{created['fanout_id']}/cancel", json={})
    assert response.json()["cancelled"] is True
    _, events = await read_sse(api.client, "GET", created["events_url"])
    assert [e.get("reason") for e in events if e.is_terminal] == ["user"]


async def test_get_and_list_fanouts(api: Api) -> None:
    first = (await api.client.post("/v1/fanouts", json=body("alpha"))).json()
    second = (await api.client.post("/v1/fanouts", json=body("staller"))).json()
    state = (await api.client.get(f"/v1/fanouts/{second['fanout_id']}")).json()
    assert state["state"] == "running"
    assert state["options"]["on_disconnect"] == "continue"
    assert set(state["agents"]) == {"staller"}
    listing = (await api.client.get("/v1/fanouts")).json()["fanouts"]
    assert [f["fanout_id"] for f in listing] == [second["fanout_id"], first["fanout_id"]]
    assert len((await api.client.get("/v1/fanouts?limit=1")).json()["fanouts"]) == 1
    await api.client.post(f"/v1/fanouts/{second['fanout_id']}/cancel")
    await api.app.state.api.hub.get(second["fanout_id"]).wait()
    state = (await api.client.get(f"/v1/fanouts/{second['fanout_id']}")).json()
    assert state["state"] == "finished"
    assert state["agents"]["staller"]["state"] == "cancelled"
    response = await api.client.get("/v1/fanouts/f-nope")
    assert (response.status_code, error_code(response)) == (404, "fanout_not_found")


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"message": "hi"}, 422, "invalid_request"),
        ({"agents": [], "message": "hi"}, 422, "invalid_request"),
        ({"agents": [{}], "message": "hi"}, 422, "invalid_request"),
        ({"agents": [{"agent_id": "alpha"}], "message": "hi", "extra": 1}, 422, "invalid_request"),
        (body("alpha", buffer=0), 422, "invalid_request"),
        (body("alpha", overflow="drop"), 422, "invalid_request"),
        (body("alpha", policy="most"), 422, "invalid_request"),
        (body("alpha", on_disconnect="maybe"), 422, "invalid_request"),
        (body("alpha", policy="quorum:3"), 422, "invalid_options"),
        (body("alpha", "alpha"), 422, "invalid_options"),
        (body(*[f"a{n}" for n in range(17)]), 422, "too_many_agents"),
        ({"agents": [{"agent_id": "alpha"}], "message": "x" * 70_000}, 413, "message_too_large"),
    ],
)
async def test_bad_requests_name_the_problem(
    api: Api, payload: Any, status: int, code: str
) -> None:
    response = await api.client.post("/v1/fanouts", json=payload)
    assert (response.status_code, error_code(response)) == (status, code)
    assert response.json()["error"]["message"]


async def test_bad_json_is_422(api: Api) -> None:
    response = await api.client.post(
        "/v1/fanouts", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert (response.status_code, error_code(response)) == (422, "invalid_json")


async def test_too_many_fanouts_is_429_with_retry_after() -> None:
    async with open_api(ApiSettings(max_active_fanouts=1, retry_after_s=7)) as api:
        running = (await api.client.post("/v1/fanouts", json=body("staller"))).json()
        response = await api.client.post("/v1/fanouts", json=body("alpha"))
        assert (response.status_code, error_code(response)) == (429, "too_many_fanouts")
        assert response.headers["retry-after"] == "7"
        await api.client.post(f"/v1/fanouts/{running['fanout_id']}/cancel")
        await api.app.state.api.hub.get(running["fanout_id"]).wait()
        assert (await api.client.post("/v1/fanouts", json=body("alpha"))).status_code == 201


async def test_api_key_is_required_when_configured() -> None:
    async with open_api(ApiSettings(api_key="s3cret")) as api:
        for method, path in (
            ("GET", "/v1/fanouts"),
            ("GET", "/v1/agents"),
            ("GET", "/metrics"),
            ("POST", "/v1/fanouts"),
        ):
            response = await api.client.request(method, path, json=body("alpha"))
            assert (response.status_code, error_code(response)) == (401, "unauthorized"), path
            assert response.headers["www-authenticate"] == "Bearer"
        wrong = await api.client.get("/v1/fanouts", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await api.client.get("/v1/fanouts", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        # The key in a URL only where a browser cannot send a header (issue 12, finding 7).
        assert (await api.client.get("/v1/fanouts?access_token=s3cret")).status_code == 401
        assert (await api.client.get("/healthz")).status_code == 200


async def test_cors_is_off_by_default_and_configurable(api: Api) -> None:
    preflight = {"Origin": "http://ui.example", "Access-Control-Request-Method": "POST"}
    response = await api.client.options("/v1/fanouts", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    async with open_api(ApiSettings(cors_origins=("http://ui.example",))) as other:
        response = await other.client.options("/v1/fanouts", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "http://ui.example"


async def test_agents_healthz_and_metrics(api: Api) -> None:
    agents = (await api.client.get("/v1/agents")).json()
    assert {
        "agent_id": "alpha",
        "name": "alpha",
        "model": "scripted",
        "description": None,
    } in agents
    health = (await api.client.get("/healthz")).json()
    assert health["status"] == "ok"
    assert health["letta"] == {"ok": True, "agents": len(agents)}
    created = (await api.client.post("/v1/fanouts", json=body("staller", "alpha"))).json()
    await api.client.post(
        f"/v1/fanouts/{created['fanout_id']}/cancel", json={"agent_id": "staller"}
    )
    await read_sse(api.client, "GET", created["events_url"])
    text = (await api.client.get("/metrics")).text
    assert "fanout_active_fanouts 0.0" in text
    assert "fanout_active_agent_streams 0.0" in text
    assert 'fanout_agent_cancellations_total{reason="user"} 1.0' in text
    assert 'fanout_events_total{type="fanout_done"} 1.0' in text
    assert "fanout_time_to_first_token_seconds_count 2.0" in text
    assert 'fanout_fanouts_total{transport="rest"} 1.0' in text


async def test_healthz_reports_a_directory_that_does_not_answer(api: Api) -> None:
    class Broken:
        async def list_agents(self) -> list[Any]:
            raise ConnectionError("letta is down")

    api.app.state.api.directory = Broken()
    health = (await api.client.get("/healthz")).json()
    assert health["status"] == "degraded"
    assert health["letta"]["ok"] is False
    assert "letta is down" in health["letta"]["error"]
    response = await api.client.get("/v1/agents")
    assert (response.status_code, error_code(response)) == (502, "directory_unavailable")


async def test_openapi_documents_the_event_schema(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    event = doc["components"]["schemas"]["Event"]
    assert "fanout_done" in event["properties"]["type"]["enum"]
    sse = doc["paths"]["/v1/fanouts"]["post"]["responses"]["200"]["content"]["text/event-stream"]
    data = sse["schema"]["properties"]["data"]
    assert data["contentMediaType"] == "application/json"
    assert {"$ref": "#/components/schemas/Event"} in data["contentSchema"]["anyOf"]
    assert "/v1/fanouts/{fanout_id}/events" in doc["paths"]
    assert (await api.client.get("/docs")).status_code == 200


async def test_unknown_route_is_a_json_404(api: Api) -> None:
    response = await api.client.get("/v1/nothing")
    assert (response.status_code, error_code(response)) == (404, "not_found")

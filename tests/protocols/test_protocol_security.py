"""The frontend endpoints are guarded like every other: the API key, stream tokens for the
agent stream a browser reads, the Origin check and the body size limit."""

from __future__ import annotations

from typing import Any

from api import ApiSettings
from tests.api.conftest import open_api

KEY = "frontend-key-0123"
AUTH = {"Authorization": f"Bearer {KEY}"}
RUN = {
    "threadId": "t-1",
    "runId": "r-1",
    "messages": [{"id": "m1", "role": "user", "content": "Hi"}],
    "forwardedProps": {"agents": [{"agent_id": "alpha"}]},
}
CHAT = {
    "id": "c-1",
    "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}],
    "agents": [{"agent_id": "alpha"}],
}


async def test_the_post_endpoints_need_the_key() -> None:
    async with open_api(ApiSettings(api_key=KEY)) as api:
        for path, body in (("/v1/ag-ui", RUN), ("/v1/ui-message-stream", CHAT)):
            refused = await api.client.post(path, json=body)
            assert refused.status_code == 401, refused.text
            assert refused.json()["error"]["code"] == "unauthorized"
            # A query token is never enough for a POST.
            token = (await api.client.post("/v1/stream-tokens", headers=AUTH)).json()["token"]
            assert (
                await api.client.post(f"{path}?access_token={token}", json=body)
            ).status_code == 401
            accepted = await api.client.post(path, json=body, headers=AUTH)
            assert accepted.status_code == 200, accepted.text
            assert accepted.headers["content-type"].startswith("text/event-stream")


async def test_an_agent_stream_takes_a_stream_token_of_its_fan_out_only() -> None:
    async with open_api(ApiSettings(api_key=KEY)) as api:

        async def fanout() -> str:
            body: dict[str, Any] = {"agents": [{"agent_id": "alpha"}], "message": "Hi"}
            created = await api.client.post("/v1/fanouts", json=body, headers=AUTH)
            return str(created.json()["fanout_id"])

        async def token(fanout_id: str) -> str:
            issued = await api.client.post(
                "/v1/stream-tokens", json={"fanout_id": fanout_id}, headers=AUTH
            )
            return str(issued.json()["token"])

        mine, other = await fanout(), await fanout()
        url = f"/v1/fanouts/{mine}/agents/alpha/ui-message-stream"
        assert (await api.client.get(url)).status_code == 401
        assert (await api.client.get(f"{url}?access_token={await token(other)}")).status_code == 401
        response = await api.client.get(f"{url}?access_token={await token(mine)}")
        assert response.status_code == 200, response.text
        assert response.text.endswith("data: [DONE]\n\n")
        # The token of a fan-out opens that fan-out's streams, not its status.
        status = await api.client.get(f"/v1/fanouts/{mine}?access_token={await token(mine)}")
        assert status.status_code == 401


async def test_another_origin_and_a_large_body_are_refused() -> None:
    async with open_api(ApiSettings(max_body_bytes=2048)) as api:
        foreign = await api.client.post(
            "/v1/ag-ui", json=RUN, headers={"Origin": "https://evil.example"}
        )
        assert foreign.status_code == 403
        big = {**RUN, "state": {"x": "y" * 4096}}
        assert (await api.client.post("/v1/ag-ui", json=big)).status_code == 413

"""``orchestrator serve`` options, the bind check, and SSE keep-alive pings."""

from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner

from api import ApiSettings, check_bind, is_loopback
from api._serve import load_factory
from orchestrator import ConfigError, ScriptedDirectory
from orchestrator.cli import app

from .conftest import serve_live


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_non_loopback_bind_needs_an_api_key() -> None:
    with pytest.raises(ConfigError, match="without an API key"):
        check_bind("0.0.0.0", ApiSettings())
    check_bind("0.0.0.0", ApiSettings(api_key="k"))
    check_bind("127.0.0.1", ApiSettings())


def test_serve_refuses_before_starting() -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["serve", "--host", "0.0.0.0", "--scripted", "tests.api.scripted:directory"]
    )
    assert result.exit_code == 2
    assert "without an API key" in result.output
    result = runner.invoke(app, ["serve"], env={"LETTA_BASE_URL": ""})
    assert result.exit_code == 2
    assert "--letta-base-url" in result.output


def test_load_factory() -> None:
    assert isinstance(load_factory("tests.api.scripted:directory"), ScriptedDirectory)
    for spec in ("nocolon", "tests.api.scripted:nothing", "no.such.module:f", "builtins:dict"):
        with pytest.raises(ConfigError):
            load_factory(spec)


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="max_agents"):
        ApiSettings(max_agents=0)
    with pytest.raises(ConfigError, match="api_key"):
        ApiSettings(api_key=" ")


async def test_sse_sends_keepalive_pings_while_agents_are_silent() -> None:
    async with serve_live(ApiSettings(ping_s=0.05)) as live:
        body = {"agents": [{"agent_id": "staller"}], "message": "hi"}
        async with (
            httpx.AsyncClient(base_url=live.base_url) as client,
            client.stream(
                "POST", "/v1/fanouts", json=body, headers={"Accept": "text/event-stream"}
            ) as response,
        ):
            pings = 0
            async for line in response.aiter_lines():
                if line.startswith(": ping"):
                    pings += 1
                    if pings == 2:
                        break
        assert pings == 2

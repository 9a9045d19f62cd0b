"""Fixtures for tests against the real Letta server of the local stack.

``letta_stack`` brings the stack up itself (installing it on first use): a
missing stack is an error, never a skip. The slow first ``up`` runs once per
session in ``pytest_collection_finish``, outside any per-test timeout; the
fixture then only confirms it (fast when warm). When the session started the
stack and runs in CI (``CI`` set), the stack is stopped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from letta_client import AsyncLetta

from orchestrator.stack._stack import StackInfo, stack_down, stack_status, stack_up
from orchestrator.testing._modelserver import DEFAULT_MODEL

SCRIPTED_MODEL = f"openai-proxy/{DEFAULT_MODEL}"
"""Model handle of the scripted model server inside the Letta server."""

EMBEDDING = "openai/text-embedding-3-small"
"""Embedding handle served (deterministically) by the scripted model server."""

_started_here: list[bool] = []


def _stack_was_running() -> bool:
    return any(row.name == "letta" and row.healthy for row in stack_status())


def pytest_collection_finish(session: pytest.Session) -> None:
    if not any(item.get_closest_marker("letta") for item in session.items):
        return
    if session.config.option.collectonly:
        return
    _started_here.append(not _stack_was_running())
    stack_up()


@pytest.fixture(scope="session")
def letta_stack() -> Iterator[StackInfo]:
    """The running local stack (brought up if needed); ``.base_url`` is the Letta server."""
    if not _started_here:
        _started_here.append(not _stack_was_running())
    info = stack_up()
    yield info
    if _started_here[0] and os.environ.get("CI"):
        stack_down()


@pytest.fixture
async def letta_client(letta_stack: StackInfo) -> AsyncIterator[AsyncLetta]:
    """An ``AsyncLetta`` client for the stack's server, closed after the test."""
    client = AsyncLetta(base_url=letta_stack.base_url)
    try:
        yield client
    finally:
        await client.close()


CreateAgent = Callable[..., Awaitable[str]]


@pytest.fixture
async def scripted_agent(letta_client: AsyncLetta) -> AsyncIterator[CreateAgent]:
    """Factory ``await scripted_agent(persona, model=SCRIPTED_MODEL) -> agent_id``.

    Agents answer with ``expected_answer(persona, message)``; they are deleted
    after the test.
    """
    created: list[str] = []

    async def create(persona: str, *, model: str = SCRIPTED_MODEL) -> str:
        agent = await letta_client.agents.create(
            name=f"test-{uuid.uuid4().hex[:12]}",
            model=model,
            embedding=EMBEDDING,
            memory_blocks=[
                {"label": "persona", "value": persona},
                {"label": "human", "value": "A test."},
            ],
        )
        created.append(agent.id)
        return agent.id

    yield create
    for agent_id in created:
        await letta_client.agents.delete(agent_id)

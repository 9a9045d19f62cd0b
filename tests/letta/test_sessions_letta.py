"""Sessions against the real Letta server of the local stack, with the history-aware
scripted model: a request that carries turns of another conversation answers with more
user turns than expected, so every isolation claim here can fail.

The stack's model server must know the ``history`` directive (``orchestrator stack down``
then ``up`` restarts it with the current code); the fixture says so when it does not.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from letta_client import AsyncLetta

from api import ApiSettings, create_app
from orchestrator import Event, LettaDirectory, LettaSource, collect
from orchestrator.batch import BatchRunner, load_batch, read_jsonl
from orchestrator.sessions import MemberSpec, Sessions, open_session_store
from orchestrator.stack._stack import StackInfo
from orchestrator.testing._modelserver import expected_answer, expected_history_answer
from tests._servers import serve_app
from tests.letta.conftest import SCRIPTED_MODEL, CreateAgent
from tests.letta.test_letta_source import PERSONAS, texts, wait_run_status

pytestmark = pytest.mark.letta

HISTORY = "What have you been told? [[history]]"
MODEL = SCRIPTED_MODEL.rpartition("/")[2]


@pytest.fixture
async def model_records(letta_stack: StackInfo) -> str:
    """The URL of the stack's model server's request records (it must know ``history``)."""
    url = letta_stack.model_base_url.removesuffix("/v1") + "/_scripted/requests"
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    if response.status_code != 200:
        pytest.fail(
            "the stack's model server predates the history directive: restart it with "
            "'orchestrator stack down && orchestrator stack up'"
        )
    return url


@pytest.fixture
async def sessions(
    letta_stack: StackInfo, tmp_path: Path, model_records: str
) -> AsyncIterator[Sessions]:
    async with (
        open_session_store(f"sqlite:///{tmp_path / 'state.db'}") as store,
        LettaDirectory(base_url=letta_stack.base_url) as directory,
    ):
        yield Sessions(store, directory)


async def _send(sessions: Sessions, session_id: str, message: str = HISTORY) -> dict[str, str]:
    async with sessions.open_fanout(session_id, message) as fanout:
        async for _ in fanout:
            pass
    result = fanout.result()
    assert all(a.state == "done" for a in result), result
    return result.texts


def _history(
    personas: list[str], columns: list[str], turns: int, model: str = MODEL
) -> dict[str, str]:
    return {
        column: expected_history_answer(persona, turns, model)
        for column, persona in zip(columns, personas, strict=True)
    }


async def test_two_sessions_on_the_same_agents_running_together_see_only_their_turns(
    sessions: Sessions, scripted_agent: CreateAgent
) -> None:
    personas = list(PERSONAS[:2])
    ids = [await scripted_agent(p) for p in personas]
    one = await sessions.create(ids)
    two = await sessions.create(ids)
    seen: dict[str, list[dict[str, str]]] = {one.session_id: [], two.session_id: []}

    async def talk(session_id: str) -> None:
        for _ in range(2):
            seen[session_id].append(await _send(sessions, session_id))

    async with anyio.create_task_group() as tg:
        tg.start_soon(talk, one.session_id)
        tg.start_soon(talk, two.session_id)
    for rounds in seen.values():
        # A follow-up sees the previous turn, and only its own session's.
        assert rounds == [_history(personas, ids, 1), _history(personas, ids, 2)]


async def test_fork_sees_its_parents_turns_then_diverges(
    sessions: Sessions, scripted_agent: CreateAgent
) -> None:
    persona = PERSONAS[0]
    agent = await scripted_agent(persona)
    parent = await sessions.create([agent])
    await _send(sessions, parent.session_id)
    await _send(sessions, parent.session_id)
    fork = await sessions.fork(parent.session_id)
    assert await _send(sessions, fork.session_id) == _history([persona], [agent], 3)
    assert await _send(sessions, fork.session_id) == _history([persona], [agent], 4)
    assert await _send(sessions, parent.session_id) == _history([persona], [agent], 3)
    thread = await sessions.thread(fork.session_id)
    assert [t.answers[agent].text for t in thread] == [
        expected_history_answer(persona, n, MODEL) for n in (1, 2, 3, 4)
    ]


async def test_the_agents_default_conversation_is_untouched_by_session_fanouts(
    sessions: Sessions, scripted_agent: CreateAgent, letta_client: AsyncLetta
) -> None:
    persona = PERSONAS[1]
    agent = await scripted_agent(persona)
    before = (await letta_client.agents.retrieve(agent)).message_ids
    record = await sessions.create([agent])
    await _send(sessions, record.session_id)
    await _send(sessions, record.session_id)
    assert (await letta_client.agents.retrieve(agent)).message_ids == before
    # And the default conversation holds none of the session's turns.
    result = await collect([LettaSource(letta_client, agent)], HISTORY)
    assert result[agent].text == expected_history_answer(persona, 1, MODEL)


async def test_the_same_agent_with_two_models_and_the_model_reaches_the_model_server(
    sessions: Sessions, scripted_agent: CreateAgent, model_records: str
) -> None:
    persona = PERSONAS[2]
    agent = await scripted_agent(persona)
    record = await sessions.create(
        [MemberSpec(agent_id=agent), MemberSpec(agent_id=agent, model="openai-proxy/scripted-slow")]
    )
    columns = [m.column_id for m in record.members]
    assert columns == [f"{agent}.1", f"{agent}.2"]
    prompt = f"Which model answers? {record.session_id} [[history]]"
    assert await _send(sessions, record.session_id, prompt) == {
        columns[0]: expected_history_answer(persona, 1, MODEL),
        columns[1]: expected_history_answer(persona, 1, "scripted-slow"),
    }
    async with httpx.AsyncClient() as http:
        records = (await http.get(model_records)).json()
    models = sorted(r["model"] for r in records if r["user_message"] == prompt)
    assert models == sorted([MODEL, "scripted-slow"])


async def test_an_overlapping_fanout_in_one_session_gets_409(
    letta_stack: StackInfo, scripted_agent: CreateAgent, tmp_path: Path, model_records: str
) -> None:
    agent = await scripted_agent(PERSONAS[0])
    settings = ApiSettings(database_url=f"sqlite:///{tmp_path / 'state.db'}")
    async with LettaDirectory(base_url=letta_stack.base_url) as directory:
        app = create_app(settings, directory)
        async with serve_app(app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
            created = await http.post("/v1/sessions", json={"agents": [{"agent_id": agent}]})
            assert created.status_code == 201, created.text
            sid = created.json()["session_id"]
            long = {"message": "Tell it slowly [[words=40 tps=10]]"}
            first = await http.post(f"/v1/sessions/{sid}/fanouts", json=long)
            assert first.status_code == 201
            second = await http.post(f"/v1/sessions/{sid}/fanouts", json={"message": HISTORY})
            assert second.status_code == 409
            assert second.json()["error"]["code"] == "conversation_busy"
            assert second.json()["error"]["agents"] == [agent]
            fanout_id = first.json()["fanout_id"]
            await http.post(f"/v1/fanouts/{fanout_id}/cancel", json={})


async def test_a_fresh_batch_with_parallel_fanouts_sees_one_user_turn_per_pair(
    letta_stack: StackInfo, scripted_agent: CreateAgent, tmp_path: Path, model_records: str
) -> None:
    personas = list(PERSONAS[:2])
    ids = [await scripted_agent(p) for p in personas]
    path = tmp_path / "batch.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            letta: {{base_url: "{letta_stack.base_url}"}}
            agents: [{{id: {ids[0]}}}, {{id: {ids[1]}}}]
            prompts:
              - {{id: p1, text: "One [[history]]"}}
              - {{id: p2, text: "Two [[history]]"}}
              - {{id: p3, text: "Three [[history]]"}}
              - {{id: p4, text: "Four [[history]]"}}
            limits: {{fanouts: 2, streams: 4}}
            """
        )
    )
    batch = load_batch(path)
    assert batch.plan.conversation == "fresh"
    out = tmp_path / "out"
    async with LettaDirectory(base_url=letta_stack.base_url) as directory:
        summary = await BatchRunner(directory, batch.plan, out).run()
    assert summary.ok, summary.failures
    records = list(read_jsonl(out / "results.jsonl"))
    assert len(records) == 8
    by_id = dict(zip(ids, personas, strict=True))
    for record in records:
        assert record["text"] == expected_history_answer(by_id[record["agent_id"]], 1, MODEL)


@pytest.mark.parametrize("moment", ["at_once", "fanout_start", "agent_start", "content"])
async def test_cancelling_in_one_session_never_touches_a_run_of_another(
    sessions: Sessions,
    scripted_agent: CreateAgent,
    letta_client: AsyncLetta,
    moment: str,
) -> None:
    persona = PERSONAS[0]
    agent = await scripted_agent(persona)
    bystander = await sessions.create([agent])
    victim = await sessions.create([agent])
    long = "Keep talking [[words=40 tps=10]]"
    short = "Be brief [[words=30 tps=10]]"
    bystander_events: list[Event] = []
    running = anyio.Event()

    async def listen() -> None:
        async with sessions.open_fanout(bystander.session_id, long) as fanout:
            async for event in fanout:
                bystander_events.append(event)
                if event.type == "content":
                    running.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listen)
        await running.wait()
        async with sessions.open_fanout(victim.session_id, short) as fanout:
            if moment == "at_once":
                fanout.cancel()
            async for event in fanout:
                if event.type == moment or (moment == "agent_start" and event.type == "content"):
                    fanout.cancel()
        victim_result = fanout.result()[agent]
    assert victim_result.state == "cancelled"
    # The bystander's run (same agent, another session) finished whole.
    assert texts(bystander_events)[agent] == expected_answer(persona, long)
    bystander_run = next(
        e.get("run_id") for e in bystander_events if e.type == "agent_start" and e.get("run_id")
    )
    # The server settles a run's status just after its stream ends.
    assert await wait_run_status(letta_client, bystander_run, "completed", 10) == "completed"
    if victim_result.run_id is not None:
        assert (
            await wait_run_status(letta_client, victim_result.run_id, "cancelled", 10)
            == "cancelled"
        )
    # Nothing of the victim's conversation is still running on the server.
    conversation = victim.members[0].conversation_id
    active = await letta_client.runs.list(
        agent_id=agent, conversation_id=conversation, statuses=["created", "running"]
    )
    assert [r.id for r in active.items if r.conversation_id == conversation] == []


async def test_the_lookup_before_a_run_id_finds_only_this_conversations_run(
    scripted_agent: CreateAgent, letta_client: AsyncLetta
) -> None:
    # What cancel() does while its stream has not announced the run: find the active runs
    # of its own conversation. Here three runs of one agent are active at once: in two
    # conversations and in the default one; each lookup must find exactly its own.
    agent = await scripted_agent(PERSONAS[1])
    conversations = [(await letta_client.conversations.create(agent_id=agent)).id for _ in range(2)]
    long: Any = [{"role": "user", "content": "Go on [[words=40 tps=10]]"}]
    streams: dict[str | None, Any] = {}
    runs: dict[str | None, str] = {}
    for conversation in [*conversations, None]:
        stream: Any
        if conversation is None:
            stream = await letta_client.agents.messages.create(
                agent_id=agent, messages=long, streaming=True, stream_tokens=True
            )
        else:
            stream = await letta_client.conversations.messages.create(
                conversation, messages=long, streaming=True, stream_tokens=True
            )
        async for chunk in stream:
            run_id = getattr(chunk, "run_id", None)
            if run_id:
                runs[conversation] = run_id
                break
        streams[conversation] = stream
    try:
        for conversation, run_id in runs.items():
            source = LettaSource(letta_client, agent, conversation_id=conversation)
            assert await source._own_active_runs() == [run_id]
    finally:
        for conversation, run_id in runs.items():
            await letta_client.agents.messages.cancel(agent_id=agent, run_ids=[run_id])
            await streams[conversation].close()

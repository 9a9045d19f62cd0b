"""Sessions over the Letta protocol simulator: members, isolation, follow-ups, forks,
threads, the busy rule; the real server: tests/letta/test_sessions_letta.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from letta_client import AsyncLetta

from orchestrator import ConfigError, ConversationBusyError, open_hub
from orchestrator.letta import LettaDirectory
from orchestrator.sessions import (
    MemberSpec,
    Sessions,
    UnknownSessionError,
    open_session_store,
)
from orchestrator.testing._modelserver import expected_history_answer
from orchestrator.testing._simulator import SimAgent, Simulator
from tests.testing._sim_fixtures import SimServer, sim_server, simulator

__all__ = ["sim_server", "simulator"]

pytestmark = pytest.mark.anyio

HISTORY = "What do you see? [[history]]"


@pytest.fixture
async def sessions(sim_server: SimServer, tmp_path: Path) -> AsyncIterator[Sessions]:
    async with (
        open_session_store(f"sqlite:///{tmp_path / 'state.db'}") as store,
        LettaDirectory(base_url=sim_server.base_url, connect_retries=0) as directory,
    ):
        yield Sessions(store, directory)


def _agents(sim: Simulator) -> list[SimAgent]:
    return list(sim.agents.values())


async def _send(sessions: Sessions, session_id: str, message: str = HISTORY) -> dict[str, str]:
    async with sessions.open_fanout(session_id, message) as fanout:
        async for _ in fanout:
            pass
    result = fanout.result()
    assert all(a.state == "done" for a in result), result
    return result.texts


async def test_members_from_ids_and_names_same_agent_twice_with_two_models(
    sessions: Sessions, simulator: Simulator
) -> None:
    a, b = _agents(simulator)[:2]
    record = await sessions.create(
        [
            a.id,
            MemberSpec(name=b.name, model="openai-proxy/m1"),
            MemberSpec(agent_id=b.id, model="openai-proxy/m2", label="B two"),
        ],
        title="compare",
    )
    columns = [m.column_id for m in record.members]
    assert columns == [a.id, f"{b.id}.1", f"{b.id}.2"]
    assert [m.label for m in record.members] == [a.name, f"{b.name} (openai-proxy/m1)", "B two"]
    assert [m.model for m in record.members] == [None, "openai-proxy/m1", "openai-proxy/m2"]
    conversations = {m.conversation_id for m in record.members}
    assert len(conversations) == 3
    assert conversations <= set(simulator.conversations)
    texts = await _send(sessions, record.session_id)
    assert texts == {
        a.id: expected_history_answer(a.persona, 1, "scripted"),
        f"{b.id}.1": expected_history_answer(b.persona, 1, "m1"),
        f"{b.id}.2": expected_history_answer(b.persona, 1, "m2"),
    }
    assert await sessions.get(record.session_id) == record
    assert (await sessions.get(record.session_id)).record == record.record


async def test_unknown_agents_are_refused_before_anything_is_created(
    sessions: Sessions, simulator: Simulator
) -> None:
    a = _agents(simulator)[0]
    with pytest.raises(ConfigError, match=r"agents\[1\].*nobody"):
        await sessions.create([a.id, MemberSpec(name="nobody")])
    with pytest.raises(ConfigError, match=r"agents\[0\]"):
        await sessions.create(["agent-00000000-0000-4000-8000-00000000dead"])
    assert simulator.conversations == {}
    with pytest.raises(ConfigError):
        await sessions.create([])


async def test_two_sessions_on_the_same_agents_each_see_only_their_turns(
    sessions: Sessions, simulator: Simulator
) -> None:
    agents = _agents(simulator)[:2]
    one = await sessions.create([a.id for a in agents])
    two = await sessions.create([a.id for a in agents])
    results: dict[str, list[dict[str, str]]] = {one.session_id: [], two.session_id: []}

    async def talk(session_id: str, times: int) -> None:
        for _ in range(times):
            results[session_id].append(await _send(sessions, session_id))

    async with anyio.create_task_group() as tg:
        tg.start_soon(talk, one.session_id, 3)
        tg.start_soon(talk, two.session_id, 2)
    for session_id, rounds in results.items():
        for n, texts in enumerate(rounds, 1):
            assert texts == {
                a.id: expected_history_answer(a.persona, n, "scripted") for a in agents
            }, session_id
    # The agents' default conversations were never used.
    assert all(run.conversation_id is not None for run in simulator.runs.values())


async def test_fork_sees_the_parent_turns_then_diverges(
    sessions: Sessions, simulator: Simulator
) -> None:
    a = _agents(simulator)[0]
    parent = await sessions.create([a.id])
    await _send(sessions, parent.session_id)
    await _send(sessions, parent.session_id, "Second question [[history]]")
    fork = await sessions.fork(parent.session_id, title="what if")
    assert fork.parent_id == parent.session_id
    assert fork.members[0].conversation_id != parent.members[0].conversation_id
    assert await _send(sessions, fork.session_id) == {
        a.id: expected_history_answer(a.persona, 3, "scripted")
    }
    assert await _send(sessions, fork.session_id) == {
        a.id: expected_history_answer(a.persona, 4, "scripted")
    }
    assert await _send(sessions, parent.session_id) == {
        a.id: expected_history_answer(a.persona, 3, "scripted")
    }
    parent_thread = await sessions.thread(parent.session_id)
    fork_thread = await sessions.thread(fork.session_id)
    assert [t.message for t in fork_thread] == [
        HISTORY,
        "Second question [[history]]",
        HISTORY,
        HISTORY,
    ]
    assert [t.fanout_id for t in fork_thread[:2]] == [t.fanout_id for t in parent_thread[:2]]
    assert [t.answers[a.id].text for t in fork_thread] == [
        expected_history_answer(a.persona, n, "scripted") for n in (1, 2, 3, 4)
    ]


async def test_thread_reads_the_answers_from_the_server(
    sessions: Sessions, simulator: Simulator
) -> None:
    a, b = _agents(simulator)[:2]
    record = await sessions.create([a.id, b.id])
    first = await _send(sessions, record.session_id, "One [[words=3]]")
    second = await _send(sessions, record.session_id, "Two [[history]]")
    thread = await sessions.thread(record.session_id)
    assert [t.message for t in thread] == ["One [[words=3]]", "Two [[history]]"]
    assert [{c: ans.text for c, ans in t.answers.items()} for t in thread] == [first, second]
    assert all(ans.state == "done" and ans.run_id for t in thread for ans in t.answers.values())
    # What the server holds wins over what was recorded: the thread is the agents' history.
    conversation = simulator.conversations[record.members[0].conversation_id]
    run_id = thread[0].answers[a.id].run_id
    conversation.messages[:] = [
        (kind, "rewritten" if kind == "assistant_message" and run == run_id else text, run)
        for kind, text, run in conversation.messages
    ]
    again = await sessions.thread(record.session_id)
    assert again[0].answers[a.id].text == "rewritten"


async def test_an_overlapping_fanout_in_one_session_is_refused(
    sessions: Sessions, simulator: Simulator
) -> None:
    a, b = _agents(simulator)[:2]
    record = await sessions.create([a.id, b.id])
    other = await sessions.create([a.id])
    async with sessions.open_fanout(record.session_id, "Long [[words=400 tps=100]]") as running:
        with pytest.raises(ConversationBusyError) as caught:
            async with sessions.open_fanout(record.session_id, "again"):
                pass
        assert sorted(caught.value.agents) == sorted([a.id, b.id])
        # Another session on the same agent is another conversation: it runs.
        assert await _send(sessions, other.session_id) == {
            a.id: expected_history_answer(a.persona, 1, "scripted")
        }
        running.cancel()
        async for _ in running:
            pass
    # The refused fan-out left no turn behind.
    assert len(await sessions.thread(record.session_id)) == 1


async def test_hub_fanouts_of_a_session_record_their_answers(
    sessions: Sessions, simulator: Simulator
) -> None:
    a = _agents(simulator)[0]
    record = await sessions.create([a.id])
    async with open_hub() as hub, anyio.create_task_group() as tg:
        hub.add_observer(sessions.observe)
        tg.start_soon(sessions.run_recorder)
        entry = await sessions.start(hub, record.session_id, "Hold [[history stall@2]]")
        with pytest.raises(ConversationBusyError):
            await sessions.start(hub, record.session_id, HISTORY)
        entry.cancel()
        await entry.wait()
        follow = await sessions.start(hub, record.session_id, HISTORY)
        await follow.wait()
        tg.cancel_scope.cancel()
    turns = await sessions.store.turns(record.session_id)
    assert [t.fanout_id for t in turns] == [entry.fanout_id, follow.fanout_id]
    assert [t.answers[a.id].state for t in turns] == ["cancelled", "done"]
    assert turns[1].answers[a.id].text == expected_history_answer(a.persona, 2, "scripted")
    assert turns[1].answers[a.id].run_id is not None


async def test_delete_forgets_the_session_and_its_conversations(
    sessions: Sessions, simulator: Simulator
) -> None:
    a = _agents(simulator)[0]
    record = await sessions.create([a.id])
    assert [r.session_id for r in await sessions.recent()] == [record.session_id]
    await sessions.delete(record.session_id)
    assert simulator.conversations == {}
    with pytest.raises(UnknownSessionError):
        await sessions.get(record.session_id)
    with pytest.raises(UnknownSessionError):
        async with sessions.open_fanout(record.session_id, "hi"):
            pass


async def test_sources_carry_their_conversation(
    sessions: Sessions, simulator: Simulator, sim_server: SimServer
) -> None:
    a = _agents(simulator)[0]
    record = await sessions.create([MemberSpec(agent_id=a.id, model="p/x")])
    (source,) = sessions.sources(record)
    member = record.members[0]
    assert source.conversation_key == f"{a.id}/{member.conversation_id}"
    assert dict(source.info) == {
        "letta_agent_id": a.id,
        "conversation_id": member.conversation_id,
        "model": "p/x",
    }
    async with AsyncLetta(base_url=sim_server.base_url) as client:
        assert (await client.conversations.retrieve(member.conversation_id)).agent_id == a.id


async def test_the_session_handle_sends_forks_reads_and_deletes(
    sessions: Sessions, simulator: Simulator
) -> None:
    a = _agents(simulator)[0]
    session = await sessions.create([a.id], title="handle")
    assert (session.title, session.parent_id) == ("handle", None)
    async with session.open_fanout(HISTORY) as fanout:
        async for _ in fanout:
            pass
    assert fanout.result()[a.id].text == expected_history_answer(a.persona, 1, "scripted")
    fork = await session.fork(title="branch")
    assert (fork.title, fork.parent_id) == ("branch", session.session_id)
    assert [t.message for t in await fork.thread()] == [HISTORY]
    assert [s.conversation_key for s in fork.sources()] == [
        f"{a.id}/{fork.members[0].conversation_id}"
    ]
    await fork.delete()
    with pytest.raises(UnknownSessionError):
        await fork.thread()
    assert [s.session_id for s in await sessions.recent()] == [session.session_id]

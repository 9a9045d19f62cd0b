"""Scripted agents for the replica tests, served by ``orchestrator serve --scripted``.

Every agent is resumable (its events carry ``cursor``; a replica that takes a fan-out over
revives it after its checkpoint) and paced by ``REPLICA_DELAY_S`` per token. ``busy``
talks to a conversation (``conversation_key``), for the busy rule across replicas.
"""

from __future__ import annotations

import os

from orchestrator.testing import ScriptedDirectory, ScriptedSource

TOKENS = 150
AGENTS = ("alpha", "beta", "gamma")
# "quick" answers in a few tokens, "long" takes three times as long as the others.
LENGTHS = {"quick": 5, "long": 3 * TOKENS}


def answer(agent_id: str) -> str:
    """The whole text an agent streams."""
    return "".join(_tokens(agent_id))


def _tokens(agent_id: str) -> list[str]:
    count = LENGTHS.get(agent_id, TOKENS)
    return [f"{agent_id}-{n} " for n in range(count)]


class _Conversation(ScriptedSource):
    conversation_key = "agent-busy/conversation-1"


def directory() -> ScriptedDirectory:
    delay = float(os.environ.get("REPLICA_DELAY_S", "0.01"))

    def make(agent_id: str, label: str) -> ScriptedSource:
        return ScriptedSource(
            agent_id, _tokens(agent_id), delay_s=delay, label=label, resumable=True
        )

    def busy(agent_id: str, label: str) -> ScriptedSource:
        return _Conversation(agent_id, _tokens(agent_id), delay_s=delay, label=label)

    return ScriptedDirectory({**dict.fromkeys((*AGENTS, *LENGTHS), make), "busy": busy})

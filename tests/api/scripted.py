"""Scripted agents for the API tests, also served by ``orchestrator serve --scripted``."""

from __future__ import annotations

import os

from orchestrator import ScriptedDirectory, ScriptedSource

WORDS = [f"w{n} " for n in range(40)]


def _alpha(agent_id: str, label: str) -> ScriptedSource:
    return ScriptedSource(agent_id, ["Hello", ", ", "world", "."], label=label, reasoning="hm")


def _beta(agent_id: str, label: str) -> ScriptedSource:
    return ScriptedSource(
        agent_id,
        ["Bonjour", " le", " monde"],
        label=label,
        tool_calls=[{"name": "lookup", "arguments": {"q": "x"}, "result": "ok"}],
    )


def _staller(agent_id: str, label: str) -> ScriptedSource:
    # Sends two tokens, then never ends by itself: only a cancel stops it.
    return ScriptedSource(agent_id, ["one ", "two ", "three"], label=label, stall_at=2)


def _failer(agent_id: str, label: str) -> ScriptedSource:
    return ScriptedSource(agent_id, ["a", "b", "c"], label=label, fail_at=1)


def _paced(agent_id: str, label: str) -> ScriptedSource:
    # Paced so that a client can drop mid-stream; the pace is not used to synchronise.
    delay = float(os.environ.get("SCRIPTED_DELAY_S", "0.005"))
    return ScriptedSource(agent_id, WORDS, label=label, delay_s=delay)


AGENTS = {
    "alpha": _alpha,
    "beta": _beta,
    "staller": _staller,
    "failer": _failer,
    "paced-1": _paced,
    "paced-2": _paced,
    "paced-3": _paced,
}


def directory() -> ScriptedDirectory:
    """A fresh directory of every scripted agent above (the ``--scripted`` factory)."""
    return ScriptedDirectory(AGENTS)

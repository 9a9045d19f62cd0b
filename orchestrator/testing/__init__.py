"""Test doubles for code built on the orchestrator: public, like ``trio.testing``.

- :class:`ScriptedSource` and :class:`ScriptedDirectory`: deterministic agents in-process.
- The scripted model server (``python -m orchestrator.testing._modelserver``): an
  OpenAI-compatible model for a real Letta server, with :func:`expected_answer`.
- The Letta protocol simulator (``python -m orchestrator.testing._simulator``): thousands of
  fake agents speaking Letta's wire protocol, for scale tests.

Nothing in the library imports this package at run time. The servers need the ``server``
extra (starlette, uvicorn).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._scripted import ScriptedDirectory as ScriptedDirectory
from ._scripted import ScriptedFactory as ScriptedFactory
from ._scripted import ScriptedSource as ScriptedSource

if TYPE_CHECKING:
    from ._modelserver import DEFAULT_MODEL as DEFAULT_MODEL
    from ._modelserver import HISTORY_MODEL as HISTORY_MODEL
    from ._modelserver import expected_answer as expected_answer
    from ._modelserver import expected_history_answer as expected_history_answer
    from ._modelserver import expected_reasoning as expected_reasoning
    from ._modelserver import strip_directives as strip_directives
    from ._simulator import SimAgent as SimAgent
    from ._simulator import Simulator as Simulator
    from ._simulator import create_agents as create_agents

# The servers' modules import starlette (the `server` extra); the scripted sources must work
# in a base install, so the servers' names load on first use.
_LAZY = {
    "DEFAULT_MODEL": "._modelserver",
    "HISTORY_MODEL": "._modelserver",
    "expected_answer": "._modelserver",
    "expected_history_answer": "._modelserver",
    "expected_reasoning": "._modelserver",
    "strip_directives": "._modelserver",
    "SimAgent": "._simulator",
    "Simulator": "._simulator",
    "create_agents": "._simulator",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_MODEL",
    "HISTORY_MODEL",
    "ScriptedDirectory",
    "ScriptedFactory",
    "ScriptedSource",
    "SimAgent",
    "Simulator",
    "create_agents",
    "expected_answer",
    "expected_history_answer",
    "expected_reasoning",
    "strip_directives",
]

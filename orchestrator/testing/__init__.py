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

from ._modelserver import DEFAULT_MODEL as DEFAULT_MODEL
from ._modelserver import expected_answer as expected_answer
from ._modelserver import expected_reasoning as expected_reasoning
from ._modelserver import strip_directives as strip_directives
from ._scripted import ScriptedDirectory as ScriptedDirectory
from ._scripted import ScriptedFactory as ScriptedFactory
from ._scripted import ScriptedSource as ScriptedSource

__all__ = [
    "DEFAULT_MODEL",
    "ScriptedDirectory",
    "ScriptedFactory",
    "ScriptedSource",
    "expected_answer",
    "expected_reasoning",
    "strip_directives",
]

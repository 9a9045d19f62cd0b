"""The ``orchestrator`` command (typer + rich): agents, run, report, panel, serve, stack, demo.

The top layer: it may import every other one. ``serve`` comes from the ``api`` package
through the ``orchestrator.cli`` entry-point group, so the library never imports ``api``.
"""

from __future__ import annotations

from ._app import app as app
from ._app import main as main

__all__ = ["app", "main"]

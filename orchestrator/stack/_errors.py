"""The error raised when the local Letta stack cannot be brought up or used."""

from __future__ import annotations

from pathlib import Path

from .._core._exceptions import OrchestratorError

__all__ = ["StackError"]


class StackError(OrchestratorError, RuntimeError):
    """Raised when a step of the local Letta stack fails; names the step, the log and a fix."""

    def __init__(
        self, step: str, message: str, *, log: Path | None = None, fix: str | None = None
    ) -> None:
        self.step = step
        self.log = log
        self.fix = fix
        text = f"[{step}] {message}"
        if log is not None:
            text += f"\n  log: {log}"
        if fix:
            text += f"\n  fix: {fix}"
        super().__init__(text)

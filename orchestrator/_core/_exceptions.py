"""Exceptions raised by the orchestrator.

The hierarchy::

    OrchestratorError
    ├── ConfigError          bad options or configuration, raised before anything starts
    ├── FanOutStateError     an operation that the fan-out's current state does not allow
    ├── UnknownAgentError    an agent id that is not part of the fan-out
    ├── SourceError          a source failed; carries a stable ``code`` and ``retryable``
    ├── EventFormatError     JSON that is not a valid event of the protocol
    ├── ConversationBusyError  a conversation already has a run through this process
    ├── CapacityError        a hub runs as many fan-outs as it may; retry later
    ├── UnknownFanOutError   a fan-out id that a hub never had
    ├── FanOutExpiredError   a fan-out (or the events asked for) left the retained log
    └── HubUnavailableError  the hub's shared backend (Redis) cannot be reached; retry later
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Root of every exception this package raises on purpose."""


class ConfigError(OrchestratorError, ValueError):
    """Raised when options or a configuration are invalid; nothing has started yet."""


class FanOutStateError(OrchestratorError, RuntimeError):
    """Raised when an operation is not allowed in the fan-out's current state."""


class UnknownAgentError(OrchestratorError, KeyError):
    """Raised when an agent id is not part of the fan-out (e.g. ``cancel("nope")``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class SourceError(OrchestratorError):
    """Raised by a source when its agent fails; ``code`` is stable, ``retryable`` advisory."""

    def __init__(self, message: str, *, code: str = "source_error", retryable: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


class EventFormatError(OrchestratorError, ValueError):
    """Raised when JSON does not describe a valid event of the protocol."""


class ConversationBusyError(OrchestratorError):
    """Raised before a fan-out starts when one of its conversations already has a run.

    Two runs at once on one (agent, conversation) is undefined behaviour on a Letta server,
    so a process never starts a second one. ``agents`` names the refused columns.
    """

    def __init__(self, message: str, *, agents: list[str]):
        super().__init__(message)
        self.agents = agents


class CapacityError(OrchestratorError):
    """Raised when a hub already runs its maximum of fan-outs; ``retry_after_s`` advises."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnknownFanOutError(OrchestratorError, KeyError):
    """Raised when a fan-out id is not known to the hub (never started there)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class FanOutExpiredError(OrchestratorError):
    """Raised when a fan-out, or the events a reader asked for, are past the retention."""


class HubUnavailableError(OrchestratorError):
    """Raised when a hub's shared backend (Redis) cannot be reached: nothing was started.

    ``backend`` names it (``"redis"``); ``retry_after_s`` advises when to try again.
    """

    def __init__(self, message: str, *, backend: str = "redis", retry_after_s: float = 2.0):
        super().__init__(message)
        self.backend = backend
        self.retry_after_s = retry_after_s

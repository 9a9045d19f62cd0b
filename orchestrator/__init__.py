"""Fan one prompt out to several Letta agents; one merged, tagged event stream.

Start with :func:`open_fanout` (stream) or :func:`collect` (final answers only).

The layers are subpackages (``docs/architecture.md``): ``_core`` (the engine) and ``_hub``
(background fan-outs with a retained log) are imported eagerly; ``config``, ``letta``,
``batch``, ``report``, ``cli`` and ``testing`` load on first use of one of their names, so
``import orchestrator`` needs anyio only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._core import PROTOCOL_VERSION as PROTOCOL_VERSION
from ._core import AgentDirectory as AgentDirectory
from ._core import AgentInfo as AgentInfo
from ._core import AgentRef as AgentRef
from ._core import AgentResult as AgentResult
from ._core import AgentState as AgentState
from ._core import AgentStatus as AgentStatus
from ._core import CancelReason as CancelReason
from ._core import CapacityError as CapacityError
from ._core import Checkpoint as Checkpoint
from ._core import ConfigError as ConfigError
from ._core import ConversationBusyError as ConversationBusyError
from ._core import ErrorInfo as ErrorInfo
from ._core import Event as Event
from ._core import EventFormatError as EventFormatError
from ._core import EventType as EventType
from ._core import FailedSource as FailedSource
from ._core import FanOut as FanOut
from ._core import FanOutExpiredError as FanOutExpiredError
from ._core import FanOutOptions as FanOutOptions
from ._core import FanOutOverrides as FanOutOverrides
from ._core import FanOutResult as FanOutResult
from ._core import FanOutStateError as FanOutStateError
from ._core import HubUnavailableError as HubUnavailableError
from ._core import Metrics as Metrics
from ._core import OrchestratorError as OrchestratorError
from ._core import Overflow as Overflow
from ._core import Revivable as Revivable
from ._core import Source as Source
from ._core import SourceError as SourceError
from ._core import SourceEvent as SourceEvent
from ._core import UnknownAgentError as UnknownAgentError
from ._core import UnknownFanOutError as UnknownFanOutError
from ._core import collect as collect
from ._core import event_schema as event_schema
from ._core import open_fanout as open_fanout
from ._core import text_problem as text_problem
from ._hub import EventLog as EventLog
from ._hub import EventObserver as EventObserver
from ._hub import FanOutHub as FanOutHub
from ._hub import HubFanOut as HubFanOut
from ._hub import LogSubscription as LogSubscription
from ._hub import OnDisconnect as OnDisconnect
from ._hub import RedisFanOutHub as RedisFanOutHub
from ._hub import open_hub as open_hub
from ._hub import open_redis_hub as open_redis_hub

if TYPE_CHECKING:
    from .arena import Leaderboard as Leaderboard
    from .arena import Vote as Vote
    from .arena import VoteColumn as VoteColumn
    from .arena import VoteError as VoteError
    from .arena import VoteFilter as VoteFilter
    from .arena import VoteStore as VoteStore
    from .arena import build_leaderboard as build_leaderboard
    from .arena import open_vote_store as open_vote_store
    from .batch import BatchPlan as BatchPlan
    from .batch import BatchRunner as BatchRunner
    from .batch import BatchSummary as BatchSummary
    from .batch import PromptItem as PromptItem
    from .batch import RetryPolicy as RetryPolicy
    from .batch import load_batch as load_batch
    from .batch import run_batch as run_batch
    from .cli._panel import run_panel as run_panel
    from .config import AgentConfig as AgentConfig
    from .config import ConfigModel as ConfigModel
    from .config import LettaConnection as LettaConnection
    from .config import PanelConfig as PanelConfig
    from .config import load_config as load_config
    from .config import load_panel as load_panel
    from .letta import LettaDirectory as LettaDirectory
    from .letta import LettaSource as LettaSource
    from .letta import create_letta_directory as create_letta_directory
    from .report import Report as Report
    from .report import build_report as build_report
    from .report import write_report as write_report
    from .sessions import MemberSpec as MemberSpec
    from .sessions import Session as Session
    from .sessions import Sessions as Sessions
    from .sessions import SessionStore as SessionStore
    from .sessions import UnknownSessionError as UnknownSessionError
    from .sessions import open_session_store as open_session_store
    from .testing import ScriptedDirectory as ScriptedDirectory
    from .testing import ScriptedSource as ScriptedSource

# Loaded on first use: these pull in pydantic, PyYAML, the Letta SDK or rich, which a caller
# of open_fanout with its own sources does not need (tests/test_lean_install.py checks it).
_LAZY: dict[str, str] = {
    "Leaderboard": ".arena",
    "Vote": ".arena",
    "VoteColumn": ".arena",
    "VoteError": ".arena",
    "VoteFilter": ".arena",
    "VoteStore": ".arena",
    "build_leaderboard": ".arena",
    "open_vote_store": ".arena",
    "BatchPlan": ".batch",
    "BatchRunner": ".batch",
    "BatchSummary": ".batch",
    "PromptItem": ".batch",
    "RetryPolicy": ".batch",
    "load_batch": ".batch",
    "run_batch": ".batch",
    "AgentConfig": ".config",
    "ConfigModel": ".config",
    "LettaConnection": ".config",
    "PanelConfig": ".config",
    "load_config": ".config",
    "load_panel": ".config",
    "LettaSource": ".letta",
    "LettaDirectory": ".letta",
    "create_letta_directory": ".letta",
    "run_panel": ".cli._panel",
    "Report": ".report",
    "build_report": ".report",
    "write_report": ".report",
    "MemberSpec": ".sessions",
    "Session": ".sessions",
    "Sessions": ".sessions",
    "SessionStore": ".sessions",
    "UnknownSessionError": ".sessions",
    "open_session_store": ".sessions",
    "ScriptedDirectory": ".testing",
    "ScriptedSource": ".testing",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "PROTOCOL_VERSION",
    "AgentConfig",
    "AgentDirectory",
    "AgentInfo",
    "AgentRef",
    "AgentResult",
    "AgentState",
    "AgentStatus",
    "BatchPlan",
    "BatchRunner",
    "BatchSummary",
    "CancelReason",
    "CapacityError",
    "Checkpoint",
    "ConfigError",
    "ConfigModel",
    "ConversationBusyError",
    "ErrorInfo",
    "Event",
    "EventFormatError",
    "EventLog",
    "EventObserver",
    "EventType",
    "FailedSource",
    "FanOut",
    "FanOutExpiredError",
    "FanOutHub",
    "FanOutOptions",
    "FanOutOverrides",
    "FanOutResult",
    "FanOutStateError",
    "HubFanOut",
    "HubUnavailableError",
    "Leaderboard",
    "LettaConnection",
    "LettaDirectory",
    "LettaSource",
    "LogSubscription",
    "MemberSpec",
    "Metrics",
    "OnDisconnect",
    "OrchestratorError",
    "Overflow",
    "PanelConfig",
    "PromptItem",
    "RedisFanOutHub",
    "Report",
    "RetryPolicy",
    "Revivable",
    "ScriptedDirectory",
    "ScriptedSource",
    "Session",
    "SessionStore",
    "Sessions",
    "Source",
    "SourceError",
    "SourceEvent",
    "UnknownAgentError",
    "UnknownFanOutError",
    "UnknownSessionError",
    "Vote",
    "VoteColumn",
    "VoteError",
    "VoteFilter",
    "VoteStore",
    "build_leaderboard",
    "build_report",
    "collect",
    "create_letta_directory",
    "event_schema",
    "load_batch",
    "load_config",
    "load_panel",
    "open_fanout",
    "open_hub",
    "open_redis_hub",
    "open_session_store",
    "open_vote_store",
    "run_batch",
    "run_panel",
    "text_problem",
    "write_report",
]

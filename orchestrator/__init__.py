"""Fan one prompt out to several Letta agents; one merged, tagged event stream.

Start with :func:`open_fanout` (stream) or :func:`collect` (final answers only).

The core (events, the fan-out engine, sources, the hub) is imported eagerly; the parts that
pull in heavy dependencies (the Letta SDK, pydantic configs, batch runs, reports, the
terminal panel) load on first use, so ``import orchestrator`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._batch_plan import BatchPlan as BatchPlan
from ._batch_plan import PromptItem as PromptItem
from ._batch_plan import RetryPolicy as RetryPolicy
from ._directory import AgentDirectory as AgentDirectory
from ._directory import AgentInfo as AgentInfo
from ._directory import AgentRef as AgentRef
from ._directory import FailedSource as FailedSource
from ._directory import ScriptedDirectory as ScriptedDirectory
from ._events import PROTOCOL_VERSION as PROTOCOL_VERSION
from ._events import Event as Event
from ._events import SourceEvent as SourceEvent
from ._events import event_schema as event_schema
from ._exceptions import CapacityError as CapacityError
from ._exceptions import ConfigError as ConfigError
from ._exceptions import EventFormatError as EventFormatError
from ._exceptions import FanOutExpiredError as FanOutExpiredError
from ._exceptions import FanOutStateError as FanOutStateError
from ._exceptions import OrchestratorError as OrchestratorError
from ._exceptions import SourceError as SourceError
from ._exceptions import UnknownAgentError as UnknownAgentError
from ._exceptions import UnknownFanOutError as UnknownFanOutError
from ._fanout import FanOut as FanOut
from ._fanout import collect as collect
from ._fanout import open_fanout as open_fanout
from ._hub import EventObserver as EventObserver
from ._hub import FanOutHub as FanOutHub
from ._hub import HubFanOut as HubFanOut
from ._hub import OnDisconnect as OnDisconnect
from ._hub import open_hub as open_hub
from ._hub_log import EventLog as EventLog
from ._hub_log import LogSubscription as LogSubscription
from ._options import FanOutOptions as FanOutOptions
from ._result import AgentResult as AgentResult
from ._result import AgentStatus as AgentStatus
from ._result import ErrorInfo as ErrorInfo
from ._result import FanOutResult as FanOutResult
from ._result import Metrics as Metrics
from ._source import ScriptedSource as ScriptedSource
from ._source import Source as Source
from ._types import AgentState as AgentState
from ._types import CancelReason as CancelReason
from ._types import EventType as EventType
from ._types import Overflow as Overflow

if TYPE_CHECKING:
    from ._batch import BatchRunner as BatchRunner
    from ._batch import BatchSummary as BatchSummary
    from ._batch import run_batch as run_batch
    from ._batch_config import load_batch as load_batch
    from ._config import AgentConfig as AgentConfig
    from ._config import ConfigModel as ConfigModel
    from ._config import LettaConnection as LettaConnection
    from ._config import PanelConfig as PanelConfig
    from ._config import load_config as load_config
    from ._config import load_panel as load_panel
    from ._letta import LettaSource as LettaSource
    from ._letta_directory import LettaDirectory as LettaDirectory
    from ._letta_directory import create_letta_directory as create_letta_directory
    from ._panel import run_panel as run_panel
    from ._report import Report as Report
    from ._report import build_report as build_report
    from ._report_render import write_report as write_report

_LAZY: dict[str, str] = {
    "BatchRunner": "._batch",
    "BatchSummary": "._batch",
    "run_batch": "._batch",
    "load_batch": "._batch_config",
    "AgentConfig": "._config",
    "ConfigModel": "._config",
    "LettaConnection": "._config",
    "PanelConfig": "._config",
    "load_config": "._config",
    "load_panel": "._config",
    "LettaSource": "._letta",
    "LettaDirectory": "._letta_directory",
    "create_letta_directory": "._letta_directory",
    "run_panel": "._panel",
    "Report": "._report",
    "build_report": "._report",
    "write_report": "._report_render",
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
    "ConfigError",
    "ConfigModel",
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
    "FanOutResult",
    "FanOutStateError",
    "HubFanOut",
    "LettaConnection",
    "LettaDirectory",
    "LettaSource",
    "LogSubscription",
    "Metrics",
    "OnDisconnect",
    "OrchestratorError",
    "Overflow",
    "PanelConfig",
    "PromptItem",
    "Report",
    "RetryPolicy",
    "ScriptedDirectory",
    "ScriptedSource",
    "Source",
    "SourceError",
    "SourceEvent",
    "UnknownAgentError",
    "UnknownFanOutError",
    "build_report",
    "collect",
    "create_letta_directory",
    "event_schema",
    "load_batch",
    "load_config",
    "load_panel",
    "open_fanout",
    "open_hub",
    "run_batch",
    "run_panel",
    "write_report",
]

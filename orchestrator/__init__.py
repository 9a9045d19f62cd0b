"""Fan one prompt out to several Letta agents; one merged, tagged event stream.

Start with :func:`open_fanout` (stream) or :func:`collect` (final answers only).
"""

from __future__ import annotations

from ._batch import BatchRunner as BatchRunner
from ._batch import BatchSummary as BatchSummary
from ._batch import run_batch as run_batch
from ._batch_config import load_batch as load_batch
from ._batch_plan import BatchPlan as BatchPlan
from ._batch_plan import PromptItem as PromptItem
from ._batch_plan import RetryPolicy as RetryPolicy
from ._config import AgentConfig as AgentConfig
from ._config import ConfigModel as ConfigModel
from ._config import LettaConnection as LettaConnection
from ._config import PanelConfig as PanelConfig
from ._config import load_config as load_config
from ._config import load_panel as load_panel
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
from ._letta import LettaSource as LettaSource
from ._letta_directory import LettaDirectory as LettaDirectory
from ._letta_directory import create_letta_directory as create_letta_directory
from ._options import FanOutOptions as FanOutOptions
from ._panel import run_panel as run_panel
from ._report import Report as Report
from ._report import build_report as build_report
from ._report_render import write_report as write_report
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

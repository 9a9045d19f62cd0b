"""The engine: events, the Source protocol, options, lanes, the merger and results.

Depends on anyio (and sniffio, orjson) only. Every other layer builds on it; it imports none
of them.
"""

from __future__ import annotations

from ._directory import AgentDirectory as AgentDirectory
from ._directory import AgentInfo as AgentInfo
from ._directory import AgentRef as AgentRef
from ._directory import FailedSource as FailedSource
from ._events import PROTOCOL_VERSION as PROTOCOL_VERSION
from ._events import Event as Event
from ._events import SourceEvent as SourceEvent
from ._events import event_schema as event_schema
from ._exceptions import CapacityError as CapacityError
from ._exceptions import ConfigError as ConfigError
from ._exceptions import ConversationBusyError as ConversationBusyError
from ._exceptions import EventFormatError as EventFormatError
from ._exceptions import FanOutExpiredError as FanOutExpiredError
from ._exceptions import FanOutStateError as FanOutStateError
from ._exceptions import HubUnavailableError as HubUnavailableError
from ._exceptions import OrchestratorError as OrchestratorError
from ._exceptions import SourceError as SourceError
from ._exceptions import UnknownAgentError as UnknownAgentError
from ._exceptions import UnknownFanOutError as UnknownFanOutError
from ._fanout import FanOut as FanOut
from ._fanout import collect as collect
from ._fanout import open_fanout as open_fanout
from ._options import FanOutOptions as FanOutOptions
from ._options import FanOutOverrides as FanOutOverrides
from ._result import AgentResult as AgentResult
from ._result import AgentStatus as AgentStatus
from ._result import ErrorInfo as ErrorInfo
from ._result import FanOutResult as FanOutResult
from ._result import Metrics as Metrics
from ._source import Checkpoint as Checkpoint
from ._source import Revivable as Revivable
from ._source import Source as Source
from ._text import text_problem as text_problem
from ._types import AgentState as AgentState
from ._types import CancelReason as CancelReason
from ._types import EventType as EventType
from ._types import Overflow as Overflow

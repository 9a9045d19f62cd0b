"""Fan-outs running in the background, each with a bounded, retained event log.

The HTTP API and any other long-lived server use this layer: a reader can attach, leave and
resume (by index) while the fan-out goes on. Two backends share one interface (``submit``,
``find``, ``listing``, ``health``): in memory (:func:`open_hub`, the default) and Redis
(:func:`open_redis_hub`, for several replicas). Builds on ``_core`` only (and redis-py, an
optional extra).
"""

from __future__ import annotations

from ._hub import EventObserver as EventObserver
from ._hub import FanOutHub as FanOutHub
from ._hub import HubFanOut as HubFanOut
from ._hub import OnDisconnect as OnDisconnect
from ._hub import TakeoverHook as TakeoverHook
from ._hub import open_hub as open_hub
from ._log import EventLog as EventLog
from ._log import LogSubscription as LogSubscription
from ._redis import RedisFanOutHub as RedisFanOutHub
from ._redis import open_redis_hub as open_redis_hub
from ._redis_entries import MirrorFanOut as MirrorFanOut
from ._redis_wire import Reviver as Reviver

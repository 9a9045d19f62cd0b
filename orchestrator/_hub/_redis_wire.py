"""How the Redis hub lays its state out in Redis: keys, entry ids, Lua scripts, codecs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeAlias
from urllib.parse import urlsplit, urlunsplit

import orjson

from .._core._events import Event
from .._core._source import Checkpoint, Source

# The ``redis`` extra: without it the hub modules still import, and open_redis_hub says
# what to install.
try:
    from redis.exceptions import RedisError as RedisError
    from redis.exceptions import ResponseError as ResponseError
except ImportError:  # pragma: no cover - exercised by the lean-install test
    RedisError = ResponseError = Exception  # type: ignore[assignment,misc]

#: Builds, on a new owner, the source that continues an agent of a dead replica's fan-out;
#: ``None`` when it cannot (the agent then ends with ``agent_error`` ``replica_lost``).
Reviver: TypeAlias = Callable[[Checkpoint], Awaitable[Source | None]]

BATCH = 512  # events per XADD pipeline at most
SCAN_PAGE = 500  # entries per XRANGE / XREAD reply

# Renew a key's expiry only while it still holds our value (a lease, a lock).
RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
# Delete a key only while it still holds our value.
RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
# Append a batch of events to a fan-out's Stream in one call: KEYS = the Stream, the registry
# entry; ARGV = MAXLEN, the Stream's TTL (ms), the event count after the batch, then an entry
# id and an event's JSON per event. One script per batch instead of a pipelined XADD per
# event: redis-py's work per command was most of the owner's CPU per event (bench/README.md).
# An id that is not above the Stream's last stops the script there ("equal or smaller").
APPEND = """
for i = 4, #ARGV, 2 do
  redis.call('xadd', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[i], 'e', ARGV[i + 1])
end
redis.call('pexpire', KEYS[1], ARGV[2])
redis.call('hset', KEYS[2], 'events', ARGV[3])
return 1
"""
# Take every key or none: returns the positions of keys someone else holds.
LOCK_ALL = """
local busy = {}
for i, key in ipairs(KEYS) do
  local holder = redis.call('get', key)
  if holder and holder ~= ARGV[1] then
    table.insert(busy, i - 1)
    table.insert(busy, holder)
  end
end
if #busy > 0 then
  return busy
end
for _, key in ipairs(KEYS) do
  redis.call('set', key, ARGV[1], 'PX', ARGV[2])
end
return busy
"""


def redact_url(url: str) -> str:
    """The URL without its password (for logs, ``/healthz`` and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.running = f"{prefix}running"
        self.index = f"{prefix}index"
        self.ctl_pattern = f"{prefix}fo:*:ctl"

    def registry(self, fanout_id: str) -> str:
        return f"{self.prefix}fo:{{{fanout_id}}}"

    def events(self, fanout_id: str) -> str:
        return f"{self.prefix}fo:{{{fanout_id}}}:events"

    def lease(self, fanout_id: str) -> str:
        return f"{self.prefix}fo:{{{fanout_id}}}:lease"

    def cmds(self, fanout_id: str) -> str:
        return f"{self.prefix}fo:{{{fanout_id}}}:cmds"

    def ctl(self, fanout_id: str) -> str:
        return f"{self.prefix}fo:{{{fanout_id}}}:ctl"

    def readers(self, fanout_id: str) -> str:
        return f"{self.prefix}fo:{{{fanout_id}}}:readers"

    def replica(self, replica_id: str) -> str:
        return f"{self.prefix}replica:{replica_id}"

    def note(self, key: str) -> str:
        return f"{self.prefix}note:{key}"

    def conversation(self, key: str) -> str:
        return f"{self.prefix}conv:{key}"

    def fanout_of_ctl(self, channel: str) -> str | None:
        head = f"{self.prefix}fo:{{"
        if channel.startswith(head) and channel.endswith("}:ctl"):
            return channel[len(head) : -len("}:ctl")]
        return None


def entry_id(index: int) -> str:
    # "After index -1" (everything) is "after 0-0", the smallest id.
    return f"{index}-1" if index >= 0 else "0-0"


def index_of(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


def decode_event(fields: Mapping[bytes, bytes]) -> Event:
    return Event.from_dict(orjson.loads(fields[b"e"]))


def text_field(record: Mapping[bytes, bytes], name: str, default: str = "") -> str:
    value = record.get(name.encode())
    return value.decode() if value is not None else default


def number_field(record: Mapping[bytes, bytes], name: str) -> float | None:
    value = record.get(name.encode())
    return float(value) if value else None

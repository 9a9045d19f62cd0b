"""Fan-out options and their validation."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypedDict, get_args

from ._exceptions import ConfigError
from ._types import JSON, Overflow


@dataclass(frozen=True, slots=True)
class FanOutOptions:
    """How a fan-out runs; every field is checked by :meth:`validate`.

    - ``buffer``: events each agent may have waiting for the reader.
    - ``overflow``: what a full buffer does, ``"coalesce"`` (merge consecutive text deltas of
      one message; wait otherwise) or ``"block"`` (always wait).
    - ``policy``: ``"all"`` (wait for every agent), ``"first"`` (the first agent to finish
      wins; the others are cancelled with reason ``policy``) or ``"quorum:K"``.
    - ``timeout_s`` / ``first_token_timeout_s``: deadlines per agent (``agent_cancelled``,
      reason ``timeout``).
    - ``idle_timeout_s``: an agent that sends nothing for this long ends with
      ``agent_error`` code ``stalled`` (retryable) and its run is cancelled; ``0`` turns it
      off. Time an agent spends paused because the reader is slow does not count.
    - ``cancel_timeout_s``: how long cancelling an agent's run upstream may take.
    """

    buffer: int = 64
    overflow: Overflow = "coalesce"
    policy: str = "all"
    timeout_s: float | None = None
    first_token_timeout_s: float | None = None
    cancel_timeout_s: float = 5.0
    idle_timeout_s: float = 60.0

    @classmethod
    def resolve(cls, options: FanOutOptions | None, overrides: Mapping[str, Any]) -> FanOutOptions:
        """``options`` (or the defaults) with ``overrides`` applied; not yet validated.

        Raises :class:`ConfigError` for a keyword that is not an option.
        """
        base = cls() if options is None else options
        if not isinstance(base, FanOutOptions):
            raise ConfigError(f"options must be a FanOutOptions, got {type(base).__name__}")
        unknown = sorted(set(overrides) - _FIELDS)
        if unknown:
            raise ConfigError(
                f"unknown fan-out option(s) {', '.join(map(repr, unknown))} "
                f"(options: {', '.join(sorted(_FIELDS))})"
            )
        return dataclasses.replace(base, **overrides) if overrides else base

    def validate(self, n_agents: int | None = None) -> FanOutOptions:
        """Return ``self`` if valid; raise :class:`ConfigError` naming the bad option."""
        if isinstance(self.buffer, bool) or not isinstance(self.buffer, int) or self.buffer < 1:
            raise ConfigError(f"buffer must be an integer >= 1, got {self.buffer!r}")
        if self.overflow not in get_args(Overflow):
            raise ConfigError(
                f"overflow must be one of {', '.join(map(repr, get_args(Overflow)))}, "
                f"got {self.overflow!r}"
            )
        quorum = parse_policy(self.policy)
        if n_agents is not None and quorum is not None and quorum > n_agents:
            raise ConfigError(
                f"policy {self.policy!r} needs {quorum} agents, the fan-out has {n_agents}"
            )
        for name in ("timeout_s", "first_token_timeout_s", "cancel_timeout_s", "idle_timeout_s"):
            value: Any = getattr(self, name)
            if value is None and name in ("timeout_s", "first_token_timeout_s"):
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
                or (value == 0 and name != "idle_timeout_s")
            ):
                bound = ">= 0 (0 turns it off)" if name == "idle_timeout_s" else "> 0"
                raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")
        return self

    def to_dict(self) -> JSON:
        """The options as JSON-ready data (as carried by ``fanout_start``)."""
        return asdict(self)


def parse_policy(policy: str) -> int | None:
    """The number of finished agents that ends the fan-out (``None`` for ``all``).

    Raises :class:`ConfigError` for anything but ``all``, ``first`` or ``quorum:K`` (K >= 1).
    """
    if policy == "all":
        return None
    if policy == "first":
        return 1
    if isinstance(policy, str) and policy.startswith("quorum:"):
        raw = policy.removeprefix("quorum:")
        if raw.isdigit() and int(raw) >= 1:
            return int(raw)
    raise ConfigError(f"policy must be 'all', 'first' or 'quorum:K' with K >= 1, got {policy!r}")


class FanOutOverrides(TypedDict, total=False):
    """The fields of :class:`FanOutOptions` as keyword arguments (``open_fanout(..., buffer=8)``)."""

    buffer: int
    overflow: Overflow
    policy: str
    timeout_s: float | None
    first_token_timeout_s: float | None
    cancel_timeout_s: float
    idle_timeout_s: float


_FIELDS = frozenset(f.name for f in dataclasses.fields(FanOutOptions))

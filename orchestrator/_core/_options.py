"""Fan-out options and their validation."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, get_args

from ._exceptions import ConfigError
from ._types import JSON, Overflow


@dataclass(frozen=True, slots=True)
class FanOutOptions:
    """How a fan-out runs; every field is checked by :meth:`validate`.

    ``policy`` is ``"all"`` (wait for every agent), ``"first"`` (the first agent to finish
    wins; the others are cancelled with reason ``policy``) or ``"quorum:K"``.
    """

    buffer: int = 64
    overflow: Overflow = "coalesce"
    policy: str = "all"
    timeout_s: float | None = None
    first_token_timeout_s: float | None = None
    cancel_timeout_s: float = 5.0

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
        for name in ("timeout_s", "first_token_timeout_s", "cancel_timeout_s"):
            value: Any = getattr(self, name)
            if value is None and name != "cancel_timeout_s":
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or math.isnan(value)
                or value <= 0
            ):
                raise ConfigError(f"{name} must be a number > 0, got {value!r}")
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

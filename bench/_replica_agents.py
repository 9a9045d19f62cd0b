"""Scripted agents for ``bench/replicas.py``: content events stamped with when they were made.

``orchestrator serve --scripted bench._replica_agents:directory`` (with the repository root
on ``PYTHONPATH``) serves groups of agents described by ``$BENCH_REPLICA_PROFILES``, a JSON
object ``{"name": {"agents": N, "tokens": T, "tokens_per_s": R, "resumable": bool,
"start_delay_s": S}}``. Group ``name`` has agents ``name-0`` ... ``name-<N-1>``; each sends
``T`` distinct tokens (``"<n>.<k> "``), ``R`` per second (0: as fast as the fan-out takes
them), after waiting ``S`` seconds plus a phase of its own (so the agents of a paced group
do not all tick at once). Without the variable, one group ``bench`` comes from
``$BENCH_AGENTS``, ``$BENCH_TOKENS``, ``$BENCH_TOKENS_PER_S`` and ``$BENCH_RESUMABLE``.

Every ``content`` event carries ``sent_at`` (``time.time()`` when the source yielded it);
extra payload fields reach the JSON of the event, so a reader on the same machine measures
delivery latency as its arrival time minus ``sent_at``.
"""

from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from orchestrator import ScriptedDirectory, ScriptedSource, SourceEvent

__all__ = [
    "Profile",
    "StampedSource",
    "directory",
    "expected_text",
    "log_gc_pauses",
    "profiles_from_env",
]

ENV = "BENCH_REPLICA_PROFILES"


@dataclass(frozen=True)
class Profile:
    """One group of identical scripted agents."""

    agents: int
    tokens: int
    tokens_per_s: float = 0.0
    resumable: bool = False
    start_delay_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "agents": self.agents,
            "tokens": self.tokens,
            "tokens_per_s": self.tokens_per_s,
            "resumable": self.resumable,
            "start_delay_s": self.start_delay_s,
        }


def tokens_of(agent_id: str, count: int) -> list[str]:
    """The tokens agent ``agent_id`` sends: distinct, so a gap or a duplicate shows."""
    n = agent_id.rsplit("-", 1)[-1]
    return [f"{n}.{k} " for k in range(count)]


def expected_text(agent_id: str, count: int) -> str:
    """The full answer of ``agent_id`` in a group of ``count`` tokens."""
    return "".join(tokens_of(agent_id, count))


class StampedSource(ScriptedSource):
    """A scripted source whose content events carry ``sent_at`` (wall clock, seconds)."""

    def __init__(self, agent_id: str, label: str, profile: Profile, phase_s: float) -> None:
        delay = 1 / profile.tokens_per_s if profile.tokens_per_s > 0 else 0.0
        super().__init__(
            agent_id,
            tokens_of(agent_id, profile.tokens),
            delay_s=delay,
            label=label,
            resumable=profile.resumable,
        )
        self.start_delay_s = profile.start_delay_s + phase_s

    async def stream(self, message: str) -> AsyncIterator[SourceEvent]:
        if self.start_delay_s > 0 and self.skip == 0:
            # A revived copy (skip > 0) continues at once; a new one lets readers attach.
            await anyio.sleep(self.start_delay_s)
        async for sev in super().stream(message):
            if sev.type == "content":
                yield SourceEvent(sev.type, {**sev.data, "sent_at": time.time()})
            else:
                yield sev


def profiles_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Profile]:
    """The groups ``$BENCH_REPLICA_PROFILES`` (or the single-group variables) describe."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV)
    if raw:
        spec: dict[str, dict[str, Any]] = json.loads(raw)
        return {name: Profile(**fields) for name, fields in spec.items()}
    return {
        "bench": Profile(
            agents=int(env.get("BENCH_AGENTS", "10")),
            tokens=int(env.get("BENCH_TOKENS", "100")),
            tokens_per_s=float(env.get("BENCH_TOKENS_PER_S", "50")),
            resumable=env.get("BENCH_RESUMABLE", "1").lower() in ("1", "true", "yes"),
        )
    }


def log_gc_pauses(path: str, min_ms: float = 2.0) -> None:
    """Append ``<wall time> <generation> <ms>`` to ``path`` for each collection of this
    process that takes ``min_ms`` or more (a stall every event of the process waits out)."""
    started: list[float] = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        ms = 1000 * (time.perf_counter() - started[0])
        if ms >= min_ms:
            with open(path, "a") as out:
                out.write(f"{time.time():.4f} {info['generation']} {ms:.2f}\n")

    gc.callbacks.append(callback)


def directory() -> ScriptedDirectory:
    """The directory ``orchestrator serve --scripted bench._replica_agents:directory`` serves.

    With ``$BENCH_GC_LOG`` set, the process also logs its garbage collection pauses there.
    """
    if os.environ.get("BENCH_GC_LOG"):
        log_gc_pauses(os.environ["BENCH_GC_LOG"])
    agents: dict[str, Any] = {}
    for name, profile in profiles_from_env().items():
        tick = 1 / profile.tokens_per_s if profile.tokens_per_s > 0 else 0.0

        def factory(
            agent_id: str, label: str, profile: Profile = profile, tick: float = tick
        ) -> ScriptedSource:
            n = int(agent_id.rsplit("-", 1)[-1])
            return StampedSource(agent_id, label, profile, tick * n / profile.agents)

        for n in range(profile.agents):
            agents[f"{name}-{n}"] = factory
    return ScriptedDirectory(agents)

"""What a batch run does: prompts x agents x repeats, with limits and retries.

A :class:`BatchPlan` is plain data, independent of YAML and of Letta: the batch config
(``_batch_config``) builds one from a file, tests build one directly. Every pair
(prompt x agent x repeat) has a stable :func:`pair_key`, a hash of what defines its answer,
so a resumed run can tell which pairs are already done.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from .._core._directory import AgentRef
from .._core._exceptions import ConfigError
from .._core._options import FanOutOptions
from .._core._types import JSON
from ._grades import Assertion

#: Most pairs (prompts x agents x repeats) in one run: the runner lists every pair up front,
#: so a plan beyond this is refused rather than left to exhaust memory. Split such a run.
MAX_PAIRS = 1_000_000


@dataclass(frozen=True, slots=True)
class PromptItem:
    """One prompt of a batch: a stable ``prompt_id``, the text sent, and its variables.

    ``assertions`` grade each answer to it (the config's and the prompt's own).
    """

    prompt_id: str
    text: str
    variables: Mapping[str, Any] = field(default_factory=dict)
    assertions: tuple[Assertion, ...] = ()


#: Where a batch's pairs run: ``fresh`` (a new conversation per pair, the default) or
#: ``shared`` (each agent's default conversation, one pair of an agent at a time, in order).
ConversationMode: TypeAlias = Literal["fresh", "shared"]


@dataclass(frozen=True, slots=True)
class BatchAgent(AgentRef):
    """An agent of a batch, optionally with a ``model`` handle its requests override.

    The same agent may appear several times with different models (an agents x models
    matrix); ``key`` tells them apart (``name@model``), and so does the column id its
    events carry.
    """

    model: str | None = None

    @property
    def key(self) -> str:
        base = self.agent_id or self.name or ""
        return f"{base}@{self.model}" if self.model else base

    @property
    def column_id(self) -> str | None:
        """The events' agent id when a model is set (else the directory's default)."""
        return self.key if self.model else None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of one prompt x agent pair that ended with a retryable error.

    ``attempts`` counts every try (1 means no retry). The wait before try ``n + 1`` is
    ``backoff_s * 2 ** (n - 1)``, capped at ``max_backoff_s``. A pair is retried when its
    error says ``retryable`` or its code is in ``on_codes``.
    """

    attempts: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    on_codes: tuple[str, ...] = ()

    def should_retry(self, code: str, retryable: bool) -> bool:
        """Whether an error with this code and flag deserves another try."""
        return retryable or code in self.on_codes


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """Everything a batch run needs except where agents come from and where files go.

    ``max_fanouts`` bounds the fan-outs in flight; ``max_streams`` bounds agent streams in
    flight over all of them (a fan-out over N agents holds N). ``fail_on_error`` makes the
    run's exit status non-zero when any pair failed. ``save_events`` keeps the full event
    log of every fan-out. Raises :class:`ConfigError` (from :meth:`validate`) when invalid.
    """

    prompts: Sequence[PromptItem]
    agents: Sequence[AgentRef]
    repeats: int = 1
    options: FanOutOptions = field(default_factory=FanOutOptions)
    max_fanouts: int = 4
    max_streams: int = 16
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    save_events: bool = False
    fail_on_error: bool = True
    title: str | None = None
    conversation: ConversationMode = "fresh"
    keep_conversations: bool = False

    def validate(self) -> BatchPlan:
        """Return ``self`` if the plan can run; raise :class:`ConfigError` otherwise."""
        if not self.prompts:
            raise ConfigError("a batch needs at least one prompt")
        if not self.agents:
            raise ConfigError("a batch needs at least one agent")
        dupes = _repeated(p.prompt_id for p in self.prompts)
        if dupes:
            raise ConfigError(f"duplicate prompt ids: {', '.join(dupes)}")
        dupes = _repeated(a.key for a in self.agents)
        if dupes:
            raise ConfigError(f"duplicate agents: {', '.join(dupes)}")
        for name in ("repeats", "max_fanouts", "max_streams"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if self.max_streams < len(self.agents):
            raise ConfigError(
                f"max_streams ({self.max_streams}) must be at least the number of agents "
                f"({len(self.agents)}): one fan-out holds one stream per agent"
            )
        if self.conversation not in ("fresh", "shared"):
            raise ConfigError(
                f"conversation must be 'fresh' or 'shared', got {self.conversation!r}"
            )
        if self.retry.attempts < 1:
            raise ConfigError(f"retry attempts must be >= 1, got {self.retry.attempts}")
        if self.retry.backoff_s < 0 or self.retry.max_backoff_s < 0:
            raise ConfigError("retry backoff must be >= 0")
        self.options.validate(len(self.agents))
        if self.total_pairs > MAX_PAIRS:
            raise ConfigError(
                f"{len(self.prompts)} prompts x {len(self.agents)} agents x {self.repeats} "
                f"repeats make {self.total_pairs:,} pairs; a run holds at most {MAX_PAIRS:,}"
            )
        return self

    @property
    def total_pairs(self) -> int:
        """prompts x agents x repeats."""
        return len(self.prompts) * len(self.agents) * self.repeats

    def pairs(self) -> list[Pair]:
        """Every pair of the plan, prompt by prompt, repeat by repeat, agent by agent."""
        return [
            Pair(prompt, agent, repeat, pair_key(prompt.text, agent.key, repeat, self.options))
            for prompt in self.prompts
            for repeat in range(1, self.repeats + 1)
            for agent in self.agents
        ]

    def to_dict(self) -> JSON:
        """JSON-ready description (written to the run's ``manifest.json``)."""
        return {
            "title": self.title,
            "prompts": [
                {"prompt_id": p.prompt_id, "text": p.text, "variables": dict(p.variables)}
                for p in self.prompts
            ],
            "agents": [
                {
                    "agent": a.key,
                    "agent_id": a.agent_id,
                    "name": a.name,
                    "label": a.label or a.key,
                    "model": getattr(a, "model", None),
                }
                for a in self.agents
            ],
            "conversation": self.conversation,
            "keep_conversations": self.keep_conversations,
            "repeats": self.repeats,
            "options": self.options.to_dict(),
            "max_fanouts": self.max_fanouts,
            "max_streams": self.max_streams,
            "retry": {
                "attempts": self.retry.attempts,
                "backoff_s": self.retry.backoff_s,
                "max_backoff_s": self.retry.max_backoff_s,
                "on_codes": list(self.retry.on_codes),
            },
            "save_events": self.save_events,
            "fail_on_error": self.fail_on_error,
        }


def _repeated(values: Iterable[str]) -> list[str]:
    return sorted(value for value, count in Counter(values).items() if count > 1)


@dataclass(frozen=True, slots=True)
class Pair:
    """One unit of work and of output: a prompt, an agent and a repeat number (from 1)."""

    prompt: PromptItem
    agent: AgentRef
    repeat: int
    key: str


def pair_key(prompt: str, agent: str, repeat: int, options: FanOutOptions) -> str:
    """A stable hash of what defines a pair's answer: prompt text, agent, repeat, options.

    Changing any of them (e.g. a fan-out timeout) makes the pair new, so a resumed run
    redoes it rather than mixing answers obtained under different settings.
    """
    canonical = json.dumps(
        {"prompt": prompt, "agent": agent, "repeat": repeat, "options": options.to_dict()},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]

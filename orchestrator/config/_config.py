"""YAML configuration files: validation with line numbers, and the shared models.

Every config file (panels, batch runs) is YAML (read by :mod:`._yaml`, within size, depth
and alias limits) validated by a pydantic model. When it is invalid, :class:`ConfigError` names the file, the line and the key, one problem per line::

    configs/panel.yaml:7: agents[1].modle: unknown key (did you mean 'model'?)

Build a new kind of config by subclassing :class:`ConfigModel` (unknown keys are errors,
instances are frozen) and loading it with :func:`load_config`. The models shared by every
config live here: :class:`LettaConnection` (where the Letta server is),
:class:`AgentConfig` (an agent by id, by name, or by a spec that ``agents sync`` can
create), :class:`FanOutSettings` and :class:`PanelConfig`.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .._core._directory import AgentRef
from .._core._exceptions import ConfigError
from .._core._options import FanOutOptions, parse_policy
from .._core._types import Overflow
from ._text import Name
from ._yaml import LineMap, Loc, format_loc, load_yaml, parse_yaml

__all__ = [
    "AgentConfig",
    "BlockSpec",
    "ConfigModel",
    "FanOutSettings",
    "LettaConnection",
    "LineMap",
    "PanelConfig",
    "format_loc",
    "load_config",
    "load_panel",
    "load_yaml",
    "parse_yaml",
    "validate_config",
]

ModelT = TypeVar("ModelT", bound=BaseModel)


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The keys the model allows at ``loc`` (for "did you mean" hints); [] if unknown."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(part, int):
            args = typing.get_args(annotation)
            if not args:
                return []
            annotation = args[0]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part)
            if field is None:
                return []
            annotation = field.annotation
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [f.alias or name for name, f in annotation.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    # Optional[X] / X | None -> X, so the hint also works for optional sub-models.
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def validate_config(
    data: Any, model: type[ModelT], *, source: str = "<config>", lines: LineMap | None = None
) -> ModelT:
    """Validate already-loaded data with ``model``; errors name ``source``, line and key.

    Raises :class:`ConfigError` listing every problem, sorted by line.
    """
    lines = lines or LineMap()
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems: list[tuple[int, str]] = []
        for error in exc.errors(include_url=False):
            loc: Loc = tuple(error["loc"])
            line = lines.line(loc)
            if error["type"] == "extra_forbidden":
                message = "unknown key"
                close = difflib.get_close_matches(str(loc[-1]), _fields_at(model, loc[:-1]), n=1)
                if close:
                    message += f" (did you mean {close[0]!r}?)"
            elif error["type"] == "missing":
                message = "missing required key"
            else:
                message = str(error["msg"]).removeprefix("Value error, ")
            problems.append((line, f"{source}:{line}: {format_loc(loc)}: {message}"))
        problems.sort(key=lambda p: p[0])
        raise ConfigError("\n".join(text for _, text in problems)) from None


def load_config(path: str | Path, model: type[ModelT]) -> ModelT:
    """Load the YAML file ``path`` and validate it with ``model``.

    Raises :class:`ConfigError` naming the file, the line and the key of every problem.
    """
    data, lines = load_yaml(path)
    return validate_config(data, model, source=str(path), lines=lines)


class ConfigModel(BaseModel):
    """Base of every config model: unknown keys are errors; instances are frozen.

    Numbers must be finite: ``.inf`` is no way to say "no timeout" (leave the key out).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LettaConnection(ConfigModel):
    """Where the Letta server is and how to talk to it.

    ``base_url`` defaults (in this order) to ``$LETTA_BASE_URL`` and the local stack's URL;
    the token to ``api_key``, else the environment variable named by ``api_key_env``.
    """

    base_url: str | None = None
    api_key: str | None = None
    api_key_env: str = "LETTA_API_KEY"
    timeout_s: float = Field(default=300.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    connect_retries: int = Field(default=3, ge=0, le=20)
    #: Connections to the Letta server at once: one per streaming agent. The SDK's default
    #: of 100 would queue the 101st stream; connections open only when used, so the default
    #: covers a 1000-agent fan-out (bench/scale.py) at no cost to small ones.
    max_connections: int = Field(default=1000, ge=1)
    #: Start background runs (needs Redis on the Letta server): a broken connection is
    #: resumed from the run's stored stream, and another replica can take the run over.
    background: bool = False

    def token(self) -> str | None:
        """The API token to send, if any (``api_key`` wins over the environment)."""
        return self.api_key or os.environ.get(self.api_key_env) or None


class BlockSpec(ConfigModel):
    """A memory block of an agent spec (``persona`` and ``human`` are the usual ones)."""

    label: Name = Field(min_length=1)
    value: str
    description: str | None = None
    limit: int | None = Field(default=None, gt=0)


class AgentConfig(ConfigModel):
    """One agent of a config: an existing agent (``id`` or ``name``) or a spec to create.

    An entry with a ``model`` is a spec: ``agents sync`` creates an agent of that ``name``
    when none exists and reuses it otherwise. ``label`` is the display name in events.
    """

    id: Name | None = Field(default=None, min_length=1)
    name: Name | None = Field(default=None, min_length=1)
    label: Name | None = None
    description: str | None = None
    model: Name | None = Field(default=None, min_length=1)
    embedding: Name | None = None
    persona: str | None = None
    human: str | None = None
    system: str | None = None
    blocks: tuple[BlockSpec, ...] = ()
    tools: tuple[Name, ...] = ()
    include_base_tools: bool | None = None
    tags: tuple[Name, ...] = ()

    @model_validator(mode="after")
    def _check_shape(self) -> AgentConfig:
        if self.id and self.name:
            raise ValueError("give either 'id' or 'name', not both")
        if not (self.id or self.name):
            raise ValueError("an agent needs 'id', 'name', or a spec with 'name' and 'model'")
        spec_keys = [k for k in _SPEC_KEYS if getattr(self, k) not in (None, ())]
        if self.id and spec_keys:
            raise ValueError(
                f"an agent given by 'id' cannot have spec keys ({', '.join(spec_keys)}); "
                "use 'name' to create it from a spec"
            )
        if spec_keys and self.model is None:
            raise ValueError(f"a spec ({', '.join(spec_keys)}) needs 'model', a model handle")
        labels = [b.label for b in self.blocks]
        for fixed in ("persona", "human"):
            if getattr(self, fixed) is not None and fixed in labels:
                raise ValueError(f"'{fixed}' is given twice: as a key and in 'blocks'")
        if len(set(labels)) != len(labels):
            raise ValueError("block labels must be unique")
        return self

    @property
    def is_spec(self) -> bool:
        """True when this entry describes an agent to create (it has a ``model``)."""
        return self.model is not None

    @property
    def key(self) -> str:
        """The id if given, else the name."""
        return self.id or self.name or ""

    @property
    def display(self) -> str:
        """The label shown in events: ``label``, else the name or id."""
        return self.label or self.key

    def memory_blocks(self) -> list[BlockSpec]:
        """Every memory block of the spec: ``persona`` and ``human`` first, then ``blocks``."""
        out = [
            BlockSpec(label=fixed, value=value)
            for fixed in ("persona", "human")
            if (value := getattr(self, fixed)) is not None
        ]
        return [*out, *self.blocks]

    def persona_text(self) -> str | None:
        """The persona block's value, from ``persona`` or ``blocks`` (for expected answers)."""
        return next((b.value for b in self.memory_blocks() if b.label == "persona"), None)

    def to_ref(self) -> AgentRef:
        """The :class:`AgentRef` a directory resolves (by id, else by name)."""
        return AgentRef(agent_id=self.id, name=None if self.id else self.name, label=self.display)


_SPEC_KEYS = (
    "model",
    "embedding",
    "persona",
    "human",
    "system",
    "blocks",
    "tools",
    "include_base_tools",
)


class FanOutSettings(ConfigModel):
    """Fan-out options as written in a config (the keyword arguments of ``open_fanout``)."""

    buffer: int = Field(default=64, ge=1)
    overflow: Overflow = "coalesce"
    policy: str = "all"
    timeout_s: float | None = Field(default=None, gt=0)
    first_token_timeout_s: float | None = Field(default=None, gt=0)
    cancel_timeout_s: float = Field(default=5.0, gt=0)
    idle_timeout_s: float = Field(default=60.0, ge=0)

    @field_validator("policy")
    @classmethod
    def _check_policy(cls, policy: str) -> str:
        try:
            parse_policy(policy)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return policy

    def to_options(self) -> FanOutOptions:
        """The same settings as :class:`FanOutOptions`."""
        return FanOutOptions(**self.model_dump())

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`~orchestrator.open_fanout`."""
        return self.model_dump()


def check_unique_agents(agents: tuple[AgentConfig, ...]) -> tuple[AgentConfig, ...]:
    """Return ``agents``; raise ``ValueError`` naming any duplicate agent or label.

    Events are keyed by agent and shown by label: both must tell agents apart.
    """
    for what, values in (
        ("agent", [a.key for a in agents]),
        ("label", [a.display for a in agents]),
    ):
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise ValueError(f"duplicate {what} {', '.join(map(repr, dupes))}")
    return agents


class PanelConfig(ConfigModel):
    """A panel: the agents that answer side by side, and how the fan-out runs.

    ``prompts`` are suggestions a UI may offer; ``options`` go to ``open_fanout``.
    """

    title: str | None = None
    description: str | None = None
    letta: LettaConnection = LettaConnection()
    agents: tuple[AgentConfig, ...]
    options: FanOutSettings = FanOutSettings()
    prompts: tuple[str, ...] = ()

    @field_validator("agents")
    @classmethod
    def _check_unique(cls, agents: tuple[AgentConfig, ...]) -> tuple[AgentConfig, ...]:
        # Checked here, not with min_length: pydantic would also report an empty list when
        # an entry is merely invalid.
        if not agents:
            raise ValueError("a panel needs at least one agent")
        return check_unique_agents(agents)

    def refs(self) -> list[AgentRef]:
        """One :class:`AgentRef` per agent, in order."""
        return [agent.to_ref() for agent in self.agents]


def load_panel(path: str | Path) -> PanelConfig:
    """Load a panel config (e.g. ``configs/panel.yaml``); raises :class:`ConfigError`."""
    return load_config(path, PanelConfig)

"""The YAML config of a batch run (``orchestrator run configs/batch.yaml``).

Shape (every key but ``agents`` and the prompts is optional)::

    letta: {base_url: ..., api_key_env: ...}      # as in a panel config
    agents: [{name: ..., label: ..., model: ..., persona: ...}, {id: agent-...}]
    template: "Answer in one sentence: {question}" # optional, str.format fields
    variables: {tone: plain}                      # defaults for every prompt
    prompts:                                      # inline ...
      - "A prompt as plain text"
      - {id: q2, text: "...", vars: {question: "..."}}
    prompts_file: prompts.jsonl                   # ... or a JSONL / CSV file (relative to
                                                  #     this YAML): one prompt per line/row
    repeats: 1
    options: {buffer: 64, overflow: coalesce, policy: all, timeout_s: 120}
    limits: {fanouts: 4, streams: 16}
    retry: {attempts: 3, backoff_s: 1.0, max_backoff_s: 30, on_codes: [rate_limited]}
    output: {dir: results/batch, events: false}
    fail_on_error: true

Every error names the file, the line and the key (``configs/batch.yaml:12: limits.streams:
...``; for a prompts file, its own line and column), and nothing runs.
"""

from __future__ import annotations

import csv
import io
import json
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr, field_validator

from .._core._exceptions import ConfigError
from ..config._config import (
    AgentConfig,
    ConfigModel,
    FanOutSettings,
    LettaConnection,
    LineMap,
    check_unique_agents,
    format_loc,
    load_yaml,
    validate_config,
)
from ._plan import BatchPlan, PromptItem, RetryPolicy

Scalar = StrictStr | StrictInt | StrictFloat | StrictBool


class PromptEntry(ConfigModel):
    """One inline prompt: its ``text``, or ``vars`` for the template, or both."""

    id: str | None = Field(default=None, min_length=1)
    text: str | None = None
    vars: dict[str, Scalar] = Field(default_factory=dict)


class Limits(ConfigModel):
    """Concurrency: fan-outs in flight, and agent streams in flight over all of them."""

    fanouts: int = Field(default=4, ge=1, le=1000)
    streams: int = Field(default=16, ge=1, le=10000)


class RetrySettings(ConfigModel):
    """Retries of a prompt x agent pair that ended with a retryable error."""

    attempts: int = Field(default=3, ge=1, le=20)
    backoff_s: float = Field(default=1.0, ge=0)
    max_backoff_s: float = Field(default=30.0, ge=0)
    on_codes: tuple[str, ...] = ()


class OutputSettings(ConfigModel):
    """Where results go (relative to the current directory) and whether to keep events."""

    dir: str | None = None
    events: bool = False


class BatchConfig(ConfigModel):
    """A batch run: agents, prompts, repeats, fan-out options, limits, retries, output."""

    title: str | None = None
    description: str | None = None
    letta: LettaConnection = LettaConnection()
    agents: tuple[AgentConfig, ...] = Field(min_length=1)
    template: str | None = None
    variables: dict[str, Scalar] = Field(default_factory=dict)
    prompts: tuple[StrictStr | PromptEntry, ...] = ()
    prompts_file: str | None = None
    repeats: int = Field(default=1, ge=1, le=1000)
    options: FanOutSettings = FanOutSettings()
    limits: Limits = Limits()
    retry: RetrySettings = RetrySettings()
    output: OutputSettings = OutputSettings()
    fail_on_error: bool = True

    @field_validator("agents")
    @classmethod
    def _unique_agents(cls, agents: tuple[AgentConfig, ...]) -> tuple[AgentConfig, ...]:
        return check_unique_agents(agents)

    @field_validator("template")
    @classmethod
    def _valid_template(cls, template: str | None) -> str | None:
        if template is not None:
            _fields(template)
        return template


@dataclass(frozen=True, slots=True)
class LoadedBatch:
    """A validated batch config with its source: build the :class:`BatchPlan` from it."""

    config: BatchConfig
    path: Path
    plan: BatchPlan

    @property
    def out_dir(self) -> Path:
        """``output.dir``, else ``results/<config file stem>``."""
        return Path(self.config.output.dir or f"results/{self.path.stem}")


def load_batch(path: str | Path) -> LoadedBatch:
    """Load and check ``path`` (a batch YAML) and everything it refers to.

    Raises :class:`ConfigError` naming the file, the line and the key of each problem;
    nothing is contacted or started.
    """
    path = Path(path)
    source = str(path)
    data, lines = load_yaml(path)
    config = validate_config(data, BatchConfig, source=source, lines=lines)
    prompts = _prompts(config, path, lines)
    where = _Where(source, lines)
    if config.limits.streams < len(config.agents):
        where.fail(
            ("limits", "streams"),
            f"must be at least the number of agents ({len(config.agents)}): "
            "a fan-out holds one stream per agent",
        )
    quorum_error = _check_quorum(config)
    if quorum_error:
        where.fail(("options", "policy"), quorum_error)
    plan = BatchPlan(
        prompts=prompts,
        agents=[agent.to_ref() for agent in config.agents],
        repeats=config.repeats,
        options=config.options.to_options(),
        max_fanouts=config.limits.fanouts,
        max_streams=config.limits.streams,
        retry=RetryPolicy(
            attempts=config.retry.attempts,
            backoff_s=config.retry.backoff_s,
            max_backoff_s=max(config.retry.max_backoff_s, config.retry.backoff_s),
            on_codes=config.retry.on_codes,
        ),
        save_events=config.output.events,
        fail_on_error=config.fail_on_error,
        title=config.title,
    )
    return LoadedBatch(config, path, plan.validate())


class _Where:
    def __init__(self, source: str, lines: LineMap) -> None:
        self.source = source
        self.lines = lines

    def fail(self, loc: Sequence[str | int], message: str) -> NoReturn:
        raise ConfigError(f"{self.source}:{self.lines.line(loc)}: {format_loc(loc)}: {message}")


def _check_quorum(config: BatchConfig) -> str | None:
    try:
        config.options.to_options().validate(len(config.agents))
    except ConfigError as exc:
        return str(exc)
    return None


def _fields(template: str) -> set[str]:
    """The ``{name}`` fields of a template; raises ValueError when it is malformed."""
    names: set[str] = set()
    try:
        for _, field, _, _ in string.Formatter().parse(template):
            if field is None:
                continue
            if not field.isidentifier():
                raise ValueError(f"template field {{{field}}} must be a plain name")
            names.add(field)
    except ValueError as exc:
        raise ValueError(f"invalid template: {exc}") from None
    return names


def _prompts(config: BatchConfig, path: Path, lines: LineMap) -> list[PromptItem]:
    where = _Where(str(path), lines)
    if bool(config.prompts) == bool(config.prompts_file):
        where.fail(
            ("prompts_file",) if config.prompts_file else ("prompts",),
            "give either 'prompts' (inline) or 'prompts_file', exactly one",
        )
    template = config.template
    needed = _fields(template) if template else set()
    items: list[PromptItem] = []
    if config.prompts_file:
        file = path.parent / config.prompts_file
        for line, row in _read_rows(file, where):
            fields = {k: v for k, v in row.items() if k not in ("id", "prompt", "text")}
            text = row.get("text", row.get("prompt"))
            items.append(
                _render(
                    row.get("id") or f"p{len(items) + 1}",
                    text,
                    {**config.variables, **fields},
                    template,
                    needed,
                    partial(_fail_file, file, line),
                )
            )
    else:
        for n, entry in enumerate(config.prompts):
            if isinstance(entry, str):
                entry = PromptEntry(text=entry)
            items.append(
                _render(
                    entry.id or f"p{n + 1}",
                    entry.text,
                    {**config.variables, **entry.vars},
                    template,
                    needed,
                    partial(_fail_inline, where, n),
                )
            )
    ids = [item.prompt_id for item in items]
    for n, prompt_id in enumerate(ids):
        if ids.index(prompt_id) != n:
            origin = config.prompts_file or "prompts"
            raise ConfigError(
                f"{path}:{lines.line(('prompts',))}: {origin}: duplicate id {prompt_id!r}"
            )
    return items


def _render(
    prompt_id: Any,
    text: Any,
    variables: Mapping[str, Any],
    template: str | None,
    needed: set[str],
    fail: Callable[[str, str], NoReturn],
) -> PromptItem:
    if not isinstance(prompt_id, str) or not prompt_id:
        fail("id", f"must be a non-empty string, got {prompt_id!r}")
    if text is not None and not isinstance(text, str):
        fail("text", f"must be a string, got {type(text).__name__}")
    if template is None:
        if not text:
            fail("text", "missing prompt text (and no 'template' to build it from)")
        return PromptItem(prompt_id, text, dict(variables))
    values = {**variables, **({"text": text} if text is not None else {})}
    missing = sorted(needed - values.keys())
    if missing:
        fail(missing[0], f"template variable {missing[0]!r} has no value")
    return PromptItem(prompt_id, template.format_map(values), dict(values))


def _fail_inline(where: _Where, n: int, key: str, message: str) -> NoReturn:
    where.fail(("prompts", n, key), message)


def _fail_file(file: Path, line: int, key: str, message: str) -> NoReturn:
    raise ConfigError(f"{file}:{line}: {key}: {message}")


def _read_rows(file: Path, where: _Where) -> list[tuple[int, dict[str, Any]]]:
    """``(line, row)`` pairs of a JSONL or CSV prompts file."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        where.fail(("prompts_file",), f"cannot read {file}: {exc.strerror or exc}")
    rows: list[tuple[int, dict[str, Any]]] = []
    if file.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames:
            _fail_file(file, 1, "(header)", "a CSV prompts file needs a header row")
        for row in reader:
            if None in row:
                _fail_file(file, reader.line_num, "(row)", "more values than header columns")
            rows.append((reader.line_num, {k: v for k, v in row.items() if k is not None}))
    elif file.suffix.lower() in (".jsonl", ".ndjson"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("//"):
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                _fail_file(file, n, "(line)", f"not valid JSON: {exc}")
            if not isinstance(row, dict):
                _fail_file(file, n, "(line)", "each line must be a JSON object")
            for key, value in row.items():
                if not isinstance(value, str | int | float | bool):
                    _fail_file(file, n, key, "values must be strings, numbers or booleans")
            rows.append((n, row))
    else:
        where.fail(("prompts_file",), "must end in .jsonl, .ndjson or .csv")
    if not rows:
        where.fail(("prompts_file",), f"{file} has no prompts")
    return rows

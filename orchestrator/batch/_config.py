"""The YAML config of a batch run (``orchestrator run configs/batch.yaml``).

Shape (every key but ``agents`` and the prompts is optional)::

    letta: {base_url: ..., api_key_env: ...}      # as in a panel config
    agents: [{name: ..., label: ..., model: ..., persona: ...}, {id: agent-...}]
                                                  # one name twice with two models: a matrix
    conversation: fresh                           # fresh (a new conversation per pair) | shared
    keep_conversations: false                     # fresh ones: keep them after the pair
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
    assertions:                                   # grade every answer (promptfoo style);
      - {type: contains, value: "Paris", ignore_case: true}   # a prompt may add its own:
      - {type: max_chars, value: 400}             #   {id: q2, text: ..., assertions: [...]}
    judge:                                        # compare the answers to each prompt pairwise
      agent: {name: judge, model: openai-proxy/x} #   a Letta agent (optionally on a model)
      rubric: "Which answer is more accurate?"    #   asked twice per pair, positions swapped
      name: strict                                #   votes as voter "judge:strict"

Every error names the file, the line and the key (``configs/batch.yaml:12: limits.streams:
...``; for a prompts file, its own line and column), and nothing runs.

A prompts file is refused when it is larger than :data:`MAX_PROMPTS_FILE_BYTES` (before it
is parsed) or holds more than :data:`MAX_PROMPTS` prompts, and the prompts of a run may
render to at most :data:`MAX_PROMPT_TEXT` characters in all. Its strings follow the config's
rules for text (``docs/config-limits.md``): valid Unicode, no control characters but tab and
line breaks, none at all in an ``id``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, NoReturn

from pydantic import (
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from .._core._exceptions import ConfigError
from ..config._config import (
    AgentConfig,
    ConfigModel,
    FanOutSettings,
    LettaConnection,
    LineMap,
    format_loc,
    load_yaml,
    validate_config,
)
from ..config._text import Name, text_problem
from ..config._yaml import read_limited
from ._grades import Assertion, AssertionType
from ._plan import BatchAgent, BatchPlan, PromptItem, RetryPolicy

Scalar = StrictStr | StrictInt | StrictFloat | StrictBool

#: Largest prompts file read, in bytes: tens of thousands of prompts.
MAX_PROMPTS_FILE_BYTES = 16 << 20
#: Most prompts in one batch (inline or from a file).
MAX_PROMPTS = 100_000
#: Most characters the prompts of one batch render to, in all: a template is rendered once
#: per prompt, so a large template times many prompts is refused here.
MAX_PROMPT_TEXT = 64 << 20


class AssertionConfig(ConfigModel):
    """One assertion on every answer (``docs/arena.md``): ``type``, ``value``, ``name``."""

    type: AssertionType
    value: Any
    name: Name | None = Field(default=None, min_length=1)
    ignore_case: bool = False

    @model_validator(mode="after")
    def _valid(self) -> AssertionConfig:
        if self.ignore_case and self.type not in ("contains", "not_contains"):
            raise ValueError("ignore_case applies to contains and not_contains only")
        self.to_assertion()
        return self

    def to_assertion(self) -> Assertion:
        return Assertion(self.type, self.value, self.name, self.ignore_case).check()


class JudgeConfig(ConfigModel):
    """A Letta agent (optionally on a model) that compares the answers to each prompt
    pairwise with a rubric; its verdicts are votes of ``judge:<name>``."""

    agent: AgentConfig
    rubric: str = Field(default="Which answer is more helpful, correct and clear?", min_length=1)
    name: Name | None = Field(default=None, min_length=1)
    database: str | None = None
    preset: Name | None = Field(default=None, min_length=1)
    concurrency: int = Field(default=4, ge=1, le=64)

    @property
    def voter(self) -> str:
        """``judge:<name>`` (the agent's display name unless ``name`` is given)."""
        return f"judge:{self.name or self.agent.display}"


class PromptEntry(ConfigModel):
    """One inline prompt: its ``text``, or ``vars`` for the template, or both."""

    id: Name | None = Field(default=None, min_length=1)
    text: str | None = None
    vars: dict[str, Scalar] = Field(default_factory=dict)
    assertions: tuple[AssertionConfig, ...] = ()


class Limits(ConfigModel):
    """Concurrency: fan-outs in flight, and agent streams in flight over all of them."""

    fanouts: int = Field(default=4, ge=1, le=1000)
    streams: int = Field(default=16, ge=1, le=10000)


class RetrySettings(ConfigModel):
    """Retries of a prompt x agent pair that ended with a retryable error."""

    attempts: int = Field(default=3, ge=1, le=20)
    backoff_s: float = Field(default=1.0, ge=0)
    max_backoff_s: float = Field(default=30.0, ge=0)
    on_codes: tuple[Name, ...] = ()


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
    conversation: Literal["fresh", "shared"] = "fresh"
    keep_conversations: bool = False
    assertions: tuple[AssertionConfig, ...] = ()
    judge: JudgeConfig | None = None

    @field_validator("agents")
    @classmethod
    def _unique_agents(cls, agents: tuple[AgentConfig, ...]) -> tuple[AgentConfig, ...]:
        # One agent may appear once per model (agents x models); labels stay unique.
        pairs = [(a.key, a.model) for a in agents]
        dupes = sorted({key for key, model in pairs if pairs.count((key, model)) > 1})
        if dupes:
            raise ValueError(f"duplicate agent {', '.join(map(repr, dupes))}")
        labels = [_with_label(a, agents).display for a in agents]
        dupes = sorted({label for label in labels if labels.count(label) > 1})
        if dupes:
            raise ValueError(f"duplicate label {', '.join(map(repr, dupes))}")
        return agents

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
    prompts = _with_assertions(config, _prompts(config, path, lines))
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
        agents=[_batch_agent(agent, config.agents) for agent in config.agents],
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
        conversation=config.conversation,
        keep_conversations=config.keep_conversations,
    )
    return LoadedBatch(config, path, plan.validate())


def _with_assertions(config: BatchConfig, prompts: list[PromptItem]) -> list[PromptItem]:
    # The config's assertions grade every answer; an inline prompt may add its own.
    common = tuple(a.to_assertion() for a in config.assertions)
    own = [
        entry.assertions if isinstance(entry, PromptEntry) and not config.prompts_file else ()
        for entry in config.prompts
    ]
    return [
        dataclasses.replace(
            item,
            assertions=common + tuple(a.to_assertion() for a in (own[n] if n < len(own) else ())),
        )
        for n, item in enumerate(prompts)
    ]


def _with_label(agent: AgentConfig, agents: Sequence[AgentConfig]) -> AgentConfig:
    # An agent that appears with several models is labelled with its model unless the
    # config labels it: "optimist (openai-proxy/x)".
    if agent.label is not None or sum(a.key == agent.key for a in agents) < 2:
        return agent
    return agent.model_copy(update={"label": f"{agent.display} ({agent.model})"})


def _batch_agent(agent: AgentConfig, agents: Sequence[AgentConfig]) -> BatchAgent:
    ref = agent.to_ref()
    return BatchAgent(ref.agent_id, ref.name, _with_label(agent, agents).display, model=agent.model)


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
    fails: list[Callable[[str, str], NoReturn]] = []
    budget = _Budget(MAX_PROMPT_TEXT)
    if config.prompts_file:
        file = path.parent / config.prompts_file
        for line, row in _read_rows(file, where):
            fields = {k: v for k, v in row.items() if k not in ("id", "prompt", "text")}
            text = row.get("text", row.get("prompt"))
            fails.append(partial(_fail_file, file, line))
            items.append(
                _render(
                    row.get("id") or f"p{len(items) + 1}",
                    text,
                    {**config.variables, **fields},
                    template,
                    needed,
                    fails[-1],
                    budget,
                )
            )
    else:
        for n, entry in enumerate(config.prompts):
            if isinstance(entry, str):
                entry = PromptEntry(text=entry)
            fails.append(partial(_fail_inline, where, n))
            items.append(
                _render(
                    entry.id or f"p{n + 1}",
                    entry.text,
                    {**config.variables, **entry.vars},
                    template,
                    needed,
                    fails[-1],
                    budget,
                )
            )
    if len(items) > MAX_PROMPTS:
        where.fail(("prompts",), f"more than {MAX_PROMPTS:,} prompts in one batch")
    seen: set[str] = set()
    for item, fail in zip(items, fails, strict=True):
        if item.prompt_id in seen:
            fail("id", f"duplicate id {item.prompt_id!r}")
        seen.add(item.prompt_id)
    return items


class _Budget:
    """Characters the rendered prompts may still take."""

    def __init__(self, chars: int) -> None:
        self.left = chars

    def take(self, text: str, fail: Callable[[str, str], NoReturn]) -> str:
        self.left -= len(text)
        if self.left < 0:
            fail("text", f"the prompts render to more than {MAX_PROMPT_TEXT:,} characters")
        return text


def _render(
    prompt_id: Any,
    text: Any,
    variables: Mapping[str, Any],
    template: str | None,
    needed: set[str],
    fail: Callable[[str, str], NoReturn],
    budget: _Budget,
) -> PromptItem:
    if not isinstance(prompt_id, str) or not prompt_id:
        fail("id", f"must be a non-empty string, got {prompt_id!r}")
    problem = text_problem(prompt_id, name=True)
    if problem is not None:
        fail("id", problem[1])
    if text is not None and not isinstance(text, str):
        fail("text", f"must be a string, got {type(text).__name__}")
    if template is None:
        if not text:
            fail("text", "missing prompt text (and no 'template' to build it from)")
        return PromptItem(prompt_id, budget.take(text, fail), dict(variables))
    values = {**variables, **({"text": text} if text is not None else {})}
    missing = sorted(needed - values.keys())
    if missing:
        fail(missing[0], f"template variable {missing[0]!r} has no value")
    if len(template) > budget.left:
        fail("text", f"the prompts render to more than {MAX_PROMPT_TEXT:,} characters")
    return PromptItem(prompt_id, budget.take(template.format_map(values), fail), dict(values))


def _fail_inline(where: _Where, n: int, key: str, message: str) -> NoReturn:
    where.fail(("prompts", n, key), message)


def _fail_file(file: Path, line: int, key: str, message: str) -> NoReturn:
    raise ConfigError(f"{file}:{line}: {key}: {message}")


def _read_rows(file: Path, where: _Where) -> list[tuple[int, dict[str, Any]]]:
    """``(line, row)`` pairs of a JSONL or CSV prompts file."""
    suffix = file.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        where.fail(("prompts_file",), "must end in .jsonl, .ndjson or .csv")
    try:
        text = read_limited(file, MAX_PROMPTS_FILE_BYTES, "prompts file")
    except OSError as exc:
        where.fail(("prompts_file",), f"cannot read {file}: {exc.strerror or exc}")
    rows = _csv_rows(file, text) if suffix == ".csv" else _jsonl_rows(file, text)
    if not rows:
        where.fail(("prompts_file",), f"{file} has no prompts")
    return rows


def _csv_rows(file: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    rows: list[tuple[int, dict[str, Any]]] = []
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        if not reader.fieldnames:
            _fail_file(file, 1, "(header)", "a CSV prompts file needs a header row")
        for row in reader:
            if None in row:
                _fail_file(file, reader.line_num, "(row)", "more values than header columns")
            row = {k: v for k, v in row.items() if k is not None}
            _check_row(file, reader.line_num, row, len(rows))
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        # A field over csv's size limit (128 KiB): line_num does not count the line yet.
        _fail_file(file, reader.line_num + 1, "(row)", f"not valid CSV: {exc}")
    return rows


def _jsonl_rows(file: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    rows: list[tuple[int, dict[str, Any]]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        try:
            row = json.loads(line, parse_constant=_no_constant)
        except RecursionError:
            _fail_file(file, n, "(line)", "not valid JSON: nested too deeply")
        except ValueError as exc:
            _fail_file(file, n, "(line)", f"not valid JSON: {exc}")
        if not isinstance(row, dict):
            _fail_file(file, n, "(line)", "each line must be a JSON object")
        for key, value in row.items():
            if not isinstance(value, str | int | float | bool):
                _fail_file(file, n, key, "values must be strings, numbers or booleans")
        _check_row(file, n, row, len(rows))
        rows.append((n, row))
    return rows


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number JSON allows")


def _check_row(file: Path, line: int, row: Mapping[str, Any], count: int) -> None:
    if count >= MAX_PROMPTS:
        _fail_file(file, line, "(row)", f"more than {MAX_PROMPTS:,} prompts in one file")
    for key, value in row.items():
        problem = text_problem(key, name=True)
        if problem is not None:
            _fail_file(file, line, "(key)", problem[1])
        if isinstance(value, str):
            problem = text_problem(value, name=key == "id")
            if problem is not None:
                _fail_file(file, line, key, problem[1])

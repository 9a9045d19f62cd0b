"""Bad input against the config loaders: hypothesis writes YAML files, the loaders read them.

``load_config``, ``load_panel`` and ``load_batch`` either succeed or raise
:class:`~orchestrator.ConfigError` with a message that names the file; any other exception
is a bug. Three kinds of input: random text, random nested structures dumped as YAML, and
the shipped example configs with one value replaced by a random one (the inputs most likely
to reach deep into validation).
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator import ConfigError, PanelConfig, load_batch, load_config, load_panel
from orchestrator.config import _yaml
from orchestrator.config._text import text_problem
from orchestrator.config._yaml import MAX_DEPTH, MAX_NODES

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

_fuzz = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)

#: Keys the loaders know, so random mappings sometimes get past "unknown key".
KNOWN_KEYS = sorted(
    {
        "agents", "prompts", "options", "letta", "limits", "retry", "output", "title",
        "repeats", "template", "fail_on_error", "name", "id", "label", "model", "persona",
        "human", "blocks", "text", "file", "vars", "base_url", "api_key", "api_key_env",
        "timeout_s", "policy", "buffer", "overflow", "first_token_timeout_s", "streams",
        "fanouts", "attempts", "backoff_s", "max_backoff_s", "on_codes", "dir", "events",
        "description", "tools", "value", "limit", "prompt",
    }
)  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["all", "first", "quorum:2", "quorum:0", "coalesce", "block", "{x}", "{"]),
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=12), st.integers())
structures = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(keys, inner, max_size=6),
    ),
    max_leaves=30,
)
yamlish = st.text(alphabet=st.sampled_from(list(":-[]{}&*!|>'\"%@`#,? \n\tabc01.\x00\ufeff")))


def _load_panel(path: Path) -> object:
    return load_panel(path)


def _load_batch(path: Path) -> object:
    return load_batch(path)


def _load_config(path: Path) -> object:
    return load_config(path, PanelConfig)


LOADERS: dict[str, Callable[[Path], object]] = {
    "load_panel": _load_panel,
    "load_batch": _load_batch,
    "load_config": _load_config,
}

_counter = itertools.count()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz-config")
    # A prompts file a fuzzed batch may refer to by name.
    (path / "prompts.jsonl").write_text('{"text": "hi"}\n{"text": 3}\nnot json\n')
    return path


def _check(loader: str, workdir: Path, content: str | bytes) -> None:
    path = workdir / f"case-{next(_counter)}.yaml"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(content)
    error: ConfigError | None = None
    try:
        LOADERS[loader](path)
    except ConfigError as exc:
        error = exc
    finally:
        path.unlink()
    if error is not None:
        assert str(path) in str(error), f"error does not name the file: {error}"


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@pytest.mark.parametrize("loader", sorted(LOADERS))
@_fuzz
@given(text=st.one_of(st.text(), yamlish))
def test_random_text(loader: str, workdir: Path, text: str) -> None:
    _check(loader, workdir, text)


@pytest.mark.parametrize("loader", sorted(LOADERS))
@_fuzz
@given(raw=st.binary(max_size=200))
def test_random_bytes(loader: str, workdir: Path, raw: bytes) -> None:
    # Not UTF-8, BOMs, NUL bytes: a file on disk can hold anything.
    _check(loader, workdir, raw)


@pytest.mark.parametrize("loader", sorted(LOADERS))
@_fuzz
@given(data=structures)
def test_random_structures(loader: str, workdir: Path, data: Any) -> None:
    _check(loader, workdir, _dump(data))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for n, value in enumerate(node):
            out.extend(_paths(value, (*prefix, n)))
    return out


def _replace(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = root
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return root


EXAMPLES = {
    "load_panel": yaml.safe_load((CONFIGS / "panel.yaml").read_text()),
    "load_config": yaml.safe_load((CONFIGS / "panel.yaml").read_text()),
    "load_batch": yaml.safe_load((CONFIGS / "batch.yaml").read_text()),
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
@_fuzz
@given(data=st.data())
def test_example_configs_with_one_value_replaced(
    loader: str, workdir: Path, data: st.DataObject
) -> None:
    example = copy.deepcopy(EXAMPLES[loader])
    path = data.draw(st.sampled_from(_paths(example)), label="path")
    value = data.draw(structures, label="value")
    _check(loader, workdir, _dump(_replace(example, path, value)))


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_the_examples_load_unchanged(loader: str, workdir: Path) -> None:
    """The mutations above start from configs that are valid, so they probe one fault each."""
    path = workdir / f"example-{loader}.yaml"
    path.write_text(_dump(EXAMPLES[loader]))
    LOADERS[loader](path)


# Regressions: found by the fuzzing above (they used to escape as non-ConfigError).


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"title: caf\xe9\n", "not UTF-8 text"),  # Latin-1: UnicodeDecodeError
        (b"title: a\x00b\n", "invalid YAML"),  # NUL: yaml's reader refused it in the ctor
    ],
)
def test_unreadable_text_is_a_config_error(workdir: Path, content: bytes, problem: str) -> None:
    path = workdir / "unreadable.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=problem) as caught:
        load_panel(path)
    assert str(caught.value).startswith(f"{path}:1: ")


# Issue 12: hostile strings, deep nesting and aliases, with both YAML parsers. Beyond "only
# ConfigError", each test knows when the file must be refused, so it can also catch a file
# that loads when it should not.

PARSERS: dict[str, type[Any]] = {"python": _yaml._PyLoader, "libyaml": _yaml._Loader}


@contextmanager
def _parser(name: str) -> Iterator[None]:
    # Not monkeypatch: hypothesis runs every example inside one function-scoped fixture.
    saved = _yaml._Loader
    _yaml._Loader = PARSERS[name]
    try:
        yield
    finally:
        _yaml._Loader = saved


hostile_chars = st.one_of(
    st.characters(categories=["Cs"]),  # lone surrogates
    st.characters(categories=["Cc"]),  # control characters, tab and line breaks included
    st.characters(min_codepoint=0x10000),  # beyond the BMP
    st.characters(categories=["Cf", "Zl", "Zp", "Co"]),  # bidi controls, separators, private
    st.characters(),
)
hostile_text = st.text(hostile_chars, max_size=12)


def _refused(loader: str, workdir: Path, content: str) -> ConfigError | None:
    path = workdir / f"case-{next(_counter)}.yaml"
    path.write_text(content, encoding="utf-8")
    error: ConfigError | None = None
    try:
        LOADERS[loader](path)
    except ConfigError as exc:
        error = exc
    finally:
        path.unlink()
    assert error is None or str(path) in str(error), f"error does not name the file: {error}"
    return error


def _replace_key(root: Any, path: tuple[Any, ...], key: str) -> Any:
    parent = root
    for part in path[:-1]:
        parent = parent[part]
    if isinstance(parent, dict):
        parent[key] = parent.pop(path[-1])
    return root


@pytest.mark.parametrize("parser", sorted(PARSERS))
@pytest.mark.parametrize("loader", sorted(LOADERS))
@_fuzz
@given(data=st.data())
def test_hostile_strings_in_the_example_configs(
    loader: str, parser: str, workdir: Path, data: st.DataObject
) -> None:
    example = copy.deepcopy(EXAMPLES[loader])
    path = data.draw(st.sampled_from(_paths(example)[1:]), label="path")
    text = data.draw(hostile_text, label="text")
    as_key = isinstance(path[-1], str) and data.draw(st.booleans(), label="as key")
    changed = _replace_key(example, path, text) if as_key else _replace(example, path, text)
    # The emitter writes surrogates and control characters as escapes ("\uD800", "\e").
    allow_unicode = data.draw(st.booleans(), label="allow_unicode")
    with _parser(parser):
        error = _refused(loader, workdir, yaml.safe_dump(changed, allow_unicode=allow_unicode))
    if text_problem(text) is not None:
        assert error is not None, f"{text!r} was accepted"


@pytest.mark.parametrize("parser", sorted(PARSERS))
@pytest.mark.parametrize("loader", sorted(LOADERS))
@_fuzz
@given(
    depth=st.integers(min_value=1, max_value=3 * MAX_DEPTH),
    kind=st.sampled_from(["flow list", "flow map", "block map", "block list"]),
)
def test_deep_nesting_in_the_example_configs(
    loader: str, parser: str, workdir: Path, depth: int, kind: str
) -> None:
    if kind == "flow list":
        value = " " + "[" * depth + "]" * depth + "\n"
    elif kind == "flow map":
        value = " " + "{a: " * depth + "}" * depth + "\n"
    elif kind == "block map":
        value = "\n" + "".join(f"{'  ' * (n + 1)}k:\n" for n in range(depth - 1))
        value += "  " * depth + "k: 1\n"
    else:
        value = "\n" + "".join(f"{'  ' * (n + 1)}-\n" for n in range(depth - 1))
        value += "  " * depth + "- 1\n"
    content = _dump(EXAMPLES[loader]) + "extra:" + value
    with _parser(parser):
        error = _refused(loader, workdir, content)
    assert error is not None  # "extra" is an unknown key at best
    if depth + 1 > MAX_DEPTH:
        assert "nest" in str(error), str(error)


@pytest.mark.parametrize("parser", sorted(PARSERS))
@_fuzz
@given(
    levels=st.integers(min_value=1, max_value=12),
    fan_out=st.integers(min_value=1, max_value=12),
    merge=st.booleans(),
)
def test_aliases_are_bounded(
    parser: str, workdir: Path, levels: int, fan_out: int, merge: bool
) -> None:
    if merge:  # merge keys ("<<") expand the same way
        lines = ["a0: &a0 {x: 1}"]
        lines += [
            f"a{n}: &a{n} {{<<: [*a{n - 1}], k{n}: [{', '.join([f'*a{n - 1}'] * fan_out)}]}}"
            for n in range(1, levels + 1)
        ]
    else:
        lines = ["a0: &a0 [lol, lol]"]
        lines += [
            f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * fan_out)}]" for n in range(1, levels + 1)
        ]
    content = "\n".join([*lines, "agents: [{name: x}]"]) + "\n"
    with _parser(parser):
        error = _refused("load_panel", workdir, content)
    assert error is not None  # the a* keys are unknown at best
    if fan_out**levels > MAX_NODES:
        assert "expands the document beyond" in str(error), str(error)


@_fuzz
@given(
    rows=st.lists(
        st.dictionaries(
            st.one_of(st.sampled_from(["id", "text", "topic"]), hostile_text),
            st.one_of(hostile_text, st.integers(), st.floats(allow_nan=False)),
            min_size=1,
            max_size=4,
        ),
        min_size=1,
        max_size=4,
    ),
    ensure_ascii=st.booleans(),
)
def test_hostile_strings_in_a_prompts_file(
    workdir: Path, rows: list[dict[str, Any]], ensure_ascii: bool
) -> None:
    case = next(_counter)
    prompts = workdir / f"prompts-{case}.jsonl"
    lines = [json.dumps(row, ensure_ascii=ensure_ascii) for row in rows]
    prompts.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    config = workdir / f"batch-{case}.yaml"
    config.write_text(f"agents: [{{name: a}}]\nprompts_file: {prompts.name}\n")
    error: ConfigError | None = None
    try:
        load_batch(config)
    except ConfigError as exc:
        error = exc
    finally:
        prompts.unlink()
        config.unlink()
    bad = any(
        text_problem(key, name=True) or (isinstance(v, str) and text_problem(v, name=key == "id"))
        for row in rows
        for key, v in row.items()
    )
    if bad:
        assert error is not None, f"{rows!r} was accepted"
    if error is not None:
        assert str(prompts) in str(error) or str(config) in str(error), str(error)

"""Issue 12, finding 4: hostile YAML is refused quickly, in bounded memory, with file:line.

Every case runs with libyaml's parser (what ``load_yaml`` uses when PyYAML has it) and with
PyYAML's pure-Python one (the fallback).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator import ConfigError, load_panel
from orchestrator.config import _yaml
from orchestrator.config._yaml import MAX_CONFIG_BYTES, MAX_DEPTH, parse_yaml


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "panel.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_panel(path)
    return str(info.value)


def billion_laughs(levels: int = 9) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for n in range(1, levels + 1):
        lines.append(f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]")
    lines.append("agents: [{name: x}]")
    return "\n".join(lines) + "\n"


# Runs in a child process so that the code before the fix (3 GB, 30 s) cannot take the
# machine down with it: the address space is capped and the parent gives up after 120 s.
_CHILD = """
import json, resource, sys, time, tracemalloc
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from orchestrator import ConfigError, load_panel
from orchestrator.config import _yaml
if sys.argv[2] == "python":
    _yaml._Loader = _yaml._PyLoader
tracemalloc.start()
started = time.perf_counter()
try:
    load_panel(sys.argv[1])
    error = None
except ConfigError as exc:
    error = str(exc)
elapsed = time.perf_counter() - started
print(json.dumps({"error": error, "s": elapsed, "peak": tracemalloc.get_traced_memory()[1]}))
"""


def test_billion_laughs_is_refused_within_5_s_in_bounded_memory(
    tmp_path: Path, parser: str
) -> None:
    path = write(tmp_path, billion_laughs())
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), parser],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    result = json.loads(child.stdout)
    assert result["error"] is not None
    # Refused at the alias that takes the document past the limit, with its line and key.
    assert result["error"].startswith(f"{path}:6: a5[")
    assert "alias *a4 expands the document beyond" in result["error"]
    assert result["s"] < 5
    assert result["peak"] < 20 * 2**20


def test_aliases_that_share_a_value_still_load(tmp_path: Path, parser: str) -> None:
    path = write(
        tmp_path,
        textwrap.dedent(
            """\
            agents:
              - name: a
                model: m
                human: &human The user wants several views.
              - name: b
                model: m
                human: *human
            options: &opts {buffer: 8}
            """
        ),
    )
    panel = load_panel(path)
    assert [agent.human for agent in panel.agents] == ["The user wants several views."] * 2
    assert panel.options.buffer == 8


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path, parser: str) -> None:
    path = write(tmp_path, "title: &a [x, *a]\nagents: [{name: x}]\n")
    assert error_of(path) == f"{path}:1: title[1]: alias *a refers to a node that holds it"


@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_20000_nested_collections_are_a_config_error(
    tmp_path: Path, parser: str, opening: str
) -> None:
    closing = "]" if opening == "[" else "}"
    path = write(tmp_path, f"agents: {opening * 20_000}{closing * 20_000}\n")
    message = error_of(path)  # not a RecursionError
    assert message.startswith(f"{path}:1: ")
    # libyaml stops at its own limit (1000 levels) while reading ahead; ours is lower.
    assert "nest deeper than" in message or "exceeded maximum nesting depth" in message


def test_block_nesting_beyond_the_limit_names_the_line(tmp_path: Path, parser: str) -> None:
    text = "agents:\n" + "".join(f"{'  ' * n}  k{n}:\n" for n in range(MAX_DEPTH + 5))
    path = write(tmp_path, text + "  " * (MAX_DEPTH + 6) + "leaf: 1\n")
    message = error_of(path)
    assert message.startswith(f"{path}:{MAX_DEPTH + 1}: agents.k0.k1.k2.k3.k4...")
    assert message.endswith(f"lists and mappings nest deeper than {MAX_DEPTH} levels")


def test_nesting_at_the_limit_is_accepted() -> None:
    text = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    data, _ = parse_yaml(text)
    for _ in range(MAX_DEPTH - 1):
        data = data[0]
    assert data == []


def test_too_many_values_are_refused_with_or_without_aliases() -> None:
    # Keys count: the mapping, "a", the list and its items make 6.
    assert parse_yaml("a: [1, 2, 3]", max_nodes=6)[0] == {"a": [1, 2, 3]}
    with pytest.raises(ConfigError, match=r"^x.yaml:1: a\[3\]: more than 6 values"):
        parse_yaml("a: [1, 2, 3, 4]", "x.yaml", max_nodes=6)
    # 8 nodes before the alias, which adds the 4 of its anchor.
    assert parse_yaml("a: &l [1, 2, 3]\nb: [*l]", max_nodes=12)[0]["b"] == [[1, 2, 3]]
    with pytest.raises(ConfigError, match=r"^x.yaml:2: b\[0\]: alias \*l expands"):
        parse_yaml("a: &l [1, 2, 3]\nb: [*l]", "x.yaml", max_nodes=11)


def test_an_oversized_config_is_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"agents: [{name: x}]\n" + b"#" * MAX_CONFIG_BYTES)

    def no_parsing(*args: object) -> None:
        raise AssertionError("the file was parsed")

    monkeypatch.setattr(_yaml, "_Loader", no_parsing)
    message = error_of(path)
    assert message == (
        f"{path}: config file is larger than the limit of {MAX_CONFIG_BYTES:,} bytes; "
        "refused before parsing"
    )


def test_a_config_at_the_size_limit_loads(tmp_path: Path) -> None:
    head = b"agents: [{name: x}]\n"
    path = tmp_path / "full.yaml"
    path.write_bytes(head + b"#" * (MAX_CONFIG_BYTES - len(head)))
    assert load_panel(path).agents[0].name == "x"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("2001-13-45", "invalid value: month must be in 1..12"),  # a timestamp PyYAML matched
        ("1" * 5000, "invalid value: Exceeds the limit (4300 digits)"),
        ("!!int abc", "invalid value: invalid literal for int()"),
    ],
)
def test_values_python_cannot_build_name_their_line(
    tmp_path: Path, parser: str, value: str, problem: str
) -> None:
    path = write(tmp_path, f"agents: [{{name: x}}]\ntitle: {value}\n")
    message = error_of(path)
    assert message.startswith(f"{path}:2: invalid YAML: ")
    assert problem in message


def test_an_escape_beyond_unicode_is_a_config_error(tmp_path: Path, parser: str) -> None:
    path = write(tmp_path, 'agents: [{name: x}]\ntitle: "\\U00110000"\n')
    assert error_of(path).startswith(f"{path}:2: ")


def test_a_reader_error_names_the_line(tmp_path: Path, parser: str) -> None:
    path = tmp_path / "ctl.yaml"
    path.write_bytes(b"agents:\n  - name: x\ntitle: a\x01b\n")
    with pytest.raises(ConfigError) as info:
        load_panel(path)
    assert str(info.value).startswith(f"{path}:3: invalid YAML: unacceptable character #x0001")
    assert "\n" not in str(info.value)


def test_parse_yaml_refuses_text_that_is_not_unicode(parser: str) -> None:
    # Text from a caller (not a file) can hold a lone surrogate; libyaml cannot encode it.
    with pytest.raises(ConfigError, match=r"^t.yaml:2: invalid YAML: .*lone surrogate U\+D800"):
        parse_yaml("a: 1\nb: x\ud800\n", "t.yaml")

"""The import graph follows the layers of docs/architecture.md (an AST walk, no imports run).

- A module may import its own layer and the layers below it, never one above.
- Nothing in the library imports ``testing`` or ``stack`` but the CLI; nothing imports ``api``.
- ``api`` imports only the public names of ``orchestrator`` (the top-level package).
- No import cycles between modules, counting imports under ``TYPE_CHECKING`` too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Layer ranks: a module may import from a layer of lower or equal rank.
RANKS = {
    "_core": 0,
    "_hub": 1,
    "config": 2,
    "letta": 3,
    "batch": 3,
    "report": 4,
    "sessions": 4,
    "arena": 4,
    "testing": 5,
    "stack": 5,
    "cli": 6,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module) for every import in ``path``, relative ones resolved."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # `from . import x` may name a submodule
                yield node.lineno, f"{target}.{alias.name}"


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "orchestrator" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in RANKS else None


def _known(module: str) -> bool:
    path = ROOT / Path(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def test_every_subpackage_has_a_rank() -> None:
    folders = {p.parent.name for p in (ROOT / "orchestrator").glob("*/__init__.py")}
    assert folders == set(RANKS)


def test_layers_import_downwards_only() -> None:
    wrong = []
    for path in _files("orchestrator"):
        here = _layer(_module_name(path))
        if here is None:  # the top-level facade: its lazy names are strings, not imports
            continue
        for line, target in _imports(path):
            if target.split(".")[0] == "api":
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
            there = _layer(target)
            if there is not None and RANKS[there] > RANKS[here]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {here} imports {target}")
    assert wrong == []


def test_api_uses_only_public_names() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in _files("api")
        for line, target in _imports(path)
        if target.startswith("orchestrator.") and _known(target)
    ]
    assert wrong == []


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in _files("orchestrator") + _files("api"):
        name = _module_name(path)
        targets = {t for _, t in _imports(path) if t.split(".")[0] in {"orchestrator", "api"}}
        graph[name] = {t for t in targets if _known(t) and t != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    # Package __init__ modules re-export their children; an edge child -> its own package
    # is how a module reaches its siblings' names, not a cycle of logic.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles() -> None:
    assert _cycle(_graph()) is None


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": set()}, None),
        ({"p": {"p.x"}, "p.x": {"p"}}, None),
    ],
)
def test_the_cycle_finder_finds_cycles(
    graph: dict[str, set[str]], expected: list[str] | None
) -> None:
    assert _cycle(graph) == expected

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import orchestrator


def test_all_exports_resolve_and_are_public() -> None:
    exported = orchestrator.__all__
    assert len(exported) == len(set(exported)), "duplicate names in __all__"
    for name in exported:
        assert hasattr(orchestrator, name), name
        assert not name.startswith("_")


def test_every_public_member_is_exported() -> None:
    members = {
        name
        for name, value in vars(orchestrator).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("orchestrator.")
    }
    assert members <= set(orchestrator.__all__)


def test_issue_api_names_exist() -> None:
    for name in ("open_fanout", "ScriptedSource", "Event", "FanOutResult", "Source", "collect"):
        assert name in orchestrator.__all__


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        check=True,
        capture_output=True,
        text=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_the_core_stays_light() -> None:
    loaded = _modules_after("import orchestrator")
    for heavy in ("letta_client", "pydantic", "fastapi", "jinja2", "rich", "yaml"):
        assert heavy not in loaded, f"'import orchestrator' pulls in {heavy}"


def test_no_library_layer_imports_fastapi_or_api() -> None:
    # Everything but the CLI, which adds `serve` from api through an entry point.
    loaded = _modules_after(
        "import importlib, pkgutil, orchestrator\n"
        "for p in pkgutil.iter_modules(orchestrator.__path__, 'orchestrator.'):\n"
        "    if p.name == 'orchestrator.cli':\n"
        "        continue\n"
        "    pkg = importlib.import_module(p.name)\n"
        "    for m in pkgutil.iter_modules(pkg.__path__, p.name + '.'):\n"
        "        importlib.import_module(m.name)"
    )
    assert "fastapi" not in loaded
    assert "api" not in loaded


@pytest.mark.parametrize(
    "package",
    ["_core", "_hub", "config", "letta", "batch", "report", "testing", "stack", "cli"],
)
def test_subpackage_exports_resolve(package: str) -> None:
    module = importlib.import_module(f"orchestrator.{package}")
    exported = getattr(module, "__all__", None)
    if exported is None:  # the private layers re-export into orchestrator's own __all__
        assert package.startswith("_")
        return
    assert exported == sorted(exported)
    for name in exported:
        assert hasattr(module, name), f"orchestrator.{package}.{name}"


def test_lazy_names_resolve() -> None:
    assert orchestrator.LettaSource.__name__ == "LettaSource"
    assert "LettaSource" in dir(orchestrator)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = orchestrator.nope

"""The wheel without extras: a fan-out of scripted sources runs, and nothing heavy loads.

Builds the wheel, installs it with no extras into a fresh virtual environment (its
dependencies come from the package index, through pip's cache), and runs a fan-out there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = (
    "fastapi",
    "pydantic",
    "rich",
    "typer",
    "uvicorn",
    "starlette",
    "yaml",
    "jinja2",
    "sqlalchemy",
    "alembic",
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SCRIPT = """
import json, sys
import anyio
import orchestrator
loaded_by_import = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
from orchestrator import ScriptedSource, collect

async def main():
    sources = [ScriptedSource("a", ["Hel", "lo"]), ScriptedSource("b", ["Hi"])]
    return await collect(sources, "prompt")

result = anyio.run(main)
print(json.dumps({
    "texts": result.texts,
    "loaded_by_import": loaded_by_import,
    "loaded_after_fanout": sorted(m for m in sys.modules if m.split(".")[0] in HEAVY),
    "file": orchestrator.__file__,
}))
"""


def test_base_install_runs_a_fanout_without_extras(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("letta_fanout-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [str(python), "-c", f"HEAVY = {HEAVY!r}\n{SCRIPT}"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the project root: the installed copy must be the one imported
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["file"].startswith(str(env_dir))
    assert report["texts"] == {"a": "Hello", "b": "Hi"}
    assert report["loaded_by_import"] == []
    assert report["loaded_after_fanout"] == []
    # And the extras are really absent there, so the check above means something.
    absent = subprocess.run(
        [str(python), "-c", "import fastapi"], capture_output=True, text=True, cwd=tmp_path
    )
    assert absent.returncode != 0

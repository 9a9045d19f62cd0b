"""The statistics stay lazy: numpy and scipy load only when a leaderboard is fitted."""

from __future__ import annotations

import json
import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        check=True,
        capture_output=True,
        text=True,
    )
    return {m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])}


def test_import_orchestrator_loads_no_statistics() -> None:
    loaded = _modules_after("import orchestrator")
    assert not loaded & {"numpy", "scipy", "jsonschema", "sqlalchemy"}


def test_the_arena_and_batch_load_numpy_and_scipy_only_to_fit() -> None:
    loaded = _modules_after(
        "import orchestrator.arena, orchestrator.batch._grades, orchestrator.report\n"
        "from orchestrator import Vote, VoteStore, build_leaderboard"
    )
    assert not loaded & {"numpy", "scipy", "jsonschema"}
    fitted = _modules_after(
        "from orchestrator.arena import Vote, VoteColumn, build_leaderboard\n"
        "a, b = VoteColumn('a', 'a', 'A'), VoteColumn('b', 'b', 'B')\n"
        "build_leaderboard([Vote('f', 'a', (a, b))], rounds=2)"
    )
    assert {"numpy", "scipy"} <= fitted

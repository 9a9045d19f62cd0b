"""Merge throughput of this tree against another git revision, both loaded in ONE process.

    python bench/compare.py --base REV --json [--rounds 9] [--events 300000] [--sizes 1,10,1000]

A machine's speed drifts by up to 10 % from one process to the next, more than the
differences a refactoring of the hot path should make. So the ``orchestrator`` package of
``REV`` is exported (``git archive``) into a temporary folder under another name and imported
beside the working tree's; every round runs both (and the usual ``asyncio.Queue`` fan-in, as
a yardstick) over the same dense sources, in a random order. The figure per size is the
median over the rounds of the per-round ratio, so drift within the run cancels too. Rates
are events per second of this process's CPU time (``time.process_time``): on a shared
machine, time spent waiting for a core is not the code's (``--clock wall`` for wall time).

Prints ONE JSON object::

    {"base": REV, "events": E, "rounds": R,
     "sizes": {"1": {"new_eps": EPS, "base_eps": EPS, "queue_eps": EPS,
                     "new_over_base": X, "new_over_queue": X, "base_over_queue": X}, ...}}
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from merge import BenchSource, run_queue  # noqa: E402

import orchestrator  # noqa: E402

_BASE_NAME = "orchestrator_base"


def load_base(rev: str, into: Path) -> ModuleType:
    """Import ``orchestrator/`` as of ``rev`` under the name ``orchestrator_base``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "orchestrator"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / "orchestrator").rename(into / _BASE_NAME)
    sys.path.insert(0, str(into))
    return importlib.import_module(_BASE_NAME)


async def run_package(package: Any, sources: list[BenchSource]) -> int:
    count = 0
    async with package.open_fanout(sources, "bench", buffer=64, overflow="block") as fanout:
        async for event in fanout:
            if event.type == "content":
                count += 1
    return count


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


async def one_round(
    base: ModuleType, n: int, events: int, clock: Callable[[], float] = time.process_time
) -> dict[str, float]:
    per = max(1, events // n)
    runners = {
        "new": lambda s: run_package(orchestrator, s),
        "base": lambda s: run_package(base, s),
        "queue": run_queue,
    }
    order = list(runners)
    random.shuffle(order)
    rates: dict[str, float] = {}
    for name in order:
        sources = [BenchSource(f"a{i}", per) for i in range(n)]
        gc.collect()
        start = clock()
        got = await runners[name](sources)
        elapsed = clock() - start
        if got != per * n:
            raise AssertionError(f"{name}: {got} events, expected {per * n}")
        rates[name] = per * n / elapsed
    return rates


async def main(rev: str, sizes: list[int], events: int, rounds: int, clock: str) -> dict[str, Any]:
    timer = CLOCKS[clock]
    with tempfile.TemporaryDirectory() as tmp:
        base = load_base(rev, Path(tmp))
        out: dict[str, Any] = {
            "base": rev,
            "events": events,
            "rounds": rounds,
            "clock": clock,
            "sizes": {},
        }
        for n in sizes:
            await one_round(base, n, events // 10, timer)  # warm both up
            samples = [await one_round(base, n, events, timer) for _ in range(rounds)]

            def median(key: str, samples: list[dict[str, float]] = samples) -> float:
                return statistics.median(s[key] for s in samples)

            def ratio(a: str, b: str, samples: list[dict[str, float]] = samples) -> float:
                return round(statistics.median(s[a] / s[b] for s in samples), 3)

            out["sizes"][str(n)] = {
                "new_eps": round(median("new")),
                "base_eps": round(median("base")),
                "queue_eps": round(median("queue")),
                "new_over_base": ratio("new", "base"),
                "new_over_queue": ratio("new", "queue"),
                "base_over_queue": ratio("base", "queue"),
            }
        return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--sizes", default="1,10,1000", help="agents per fan-out, comma-separated")
    parser.add_argument("--events", type=int, default=300_000, help="events per run")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    parser.add_argument("--json", action="store_true", help="print JSON (the only output form)")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    result = asyncio.run(main(args.base, sizes, args.events, args.rounds, args.clock))
    print(json.dumps(result, indent=2))

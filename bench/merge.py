"""Merge throughput: the fan-out engine vs a hand-written queue fan-in vs aiostream.merge.

    python bench/merge.py --json [--quick]

Prints ONE JSON object (events per second, median of several runs, all in this process):

    {"dense": {"1": {"ours": EPS, "queue": EPS, "aiostream": EPS}, "10": ..., "100": ...,
               "1000": ...},
     "sparse_1000": {...}, "raw_single_source": EPS, "stalled_1000_peak_mib": MIB, ...}

Dense sources yield without sleeping; sparse is 1 always-ready source plus 999 idle ones.
``queue`` is the usual fan-in: one task per source into one ``asyncio.Queue(64)``, yielding
``(agent_id, item)``. ``aiostream`` is ``aiostream.stream.merge`` over the same sources,
tagged. ``raw_single_source`` iterates one source directly: the ceiling for any merger.
``setup_us_per_source_1000`` is what starting and ending one of 1000 sources that yield
nothing costs (for ours: an anyio task, a cancel scope, the agent's bookkeeping and its
start and end events). ``stalled_1000_peak_mib`` is the traced memory peak of 1000 sources that could each produce
100 000 events while nobody reads the fan-out (``overflow="block"``, buffer 64).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import anyio
from aiostream import stream as astream

from orchestrator import SourceEvent, open_fanout

_SENTINEL = object()


class BenchSource:
    """``tokens`` content deltas without sleeping; with a ``gate``, idle until it opens."""

    def __init__(self, agent_id: str, tokens: int, gate: anyio.Event | None = None) -> None:
        self.agent_id = agent_id
        self.label = agent_id
        self.tokens = tokens
        self.gate = gate
        self.on_done: Callable[[], None] | None = None

    async def stream(self, message: str = "") -> AsyncIterator[SourceEvent]:
        if self.gate is not None:
            await self.gate.wait()
        mid = f"{self.agent_id}-m"
        try:
            for _ in range(self.tokens):
                yield SourceEvent("content", {"delta": "tok ", "message_id": mid})
        finally:
            if self.on_done is not None:
                self.on_done()

    async def cancel(self) -> None:
        return None


def _make_sources(n: int, total: int, sparse: bool) -> list[BenchSource]:
    if not sparse:
        per = max(1, total // n)
        return [BenchSource(f"a{i}", per) for i in range(n)]
    gate = anyio.Event()
    busy = BenchSource("busy", total)
    busy.on_done = gate.set
    return [busy, *(BenchSource(f"idle{i}", 0, gate) for i in range(n - 1))]


def _tokens(sources: list[BenchSource]) -> int:
    return sum(s.tokens for s in sources)


async def run_ours(sources: list[BenchSource]) -> int:
    count = 0
    async with open_fanout(sources, "bench", buffer=64, overflow="block") as fanout:
        async for event in fanout:
            if event.type == "content":
                count += 1
    return count


async def run_queue(sources: list[BenchSource]) -> int:
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(64)

    async def pump(source: BenchSource) -> None:
        async for item in source.stream():
            await queue.put((source.agent_id, item))
        await queue.put((source.agent_id, _SENTINEL))

    tasks = [asyncio.create_task(pump(s)) for s in sources]
    remaining, count = len(sources), 0
    while remaining:
        _agent_id, item = await queue.get()
        if item is _SENTINEL:
            remaining -= 1
        else:
            count += 1
    await asyncio.gather(*tasks)
    return count


async def run_aiostream(sources: list[BenchSource]) -> int:
    def tagged(source: BenchSource) -> Any:
        def tag(item: SourceEvent, *_: SourceEvent) -> tuple[str, SourceEvent]:
            return (source.agent_id, item)

        return astream.map(source.stream(), tag)

    count = 0
    merged = astream.merge(*(tagged(s) for s in sources))
    async with merged.stream() as items:
        async for _ in items:
            count += 1
    return count


async def run_raw(sources: list[BenchSource]) -> int:
    count = 0
    async for _ in sources[0].stream():
        count += 1
    return count


Runner = Callable[[list[BenchSource]], Coroutine[Any, Any, int]]


async def _measure(
    runners: dict[str, Runner], n: int, total: int, sparse: bool, repeats: int
) -> dict[str, int]:
    """Median events/s per runner; the runners take turns so load changes hit all alike."""
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, runner in runners.items():
            sources = _make_sources(n, total, sparse)
            expected = _tokens(sources)
            gc.collect()
            start = time.perf_counter()
            got = await runner(sources)
            elapsed = time.perf_counter() - start
            if got != expected:
                raise AssertionError(f"{name}: got {got} events, expected {expected}")
            rates[name].append(expected / elapsed)
    return {name: round(statistics.median(values)) for name, values in rates.items()}


async def setup_us(runners: dict[str, Runner], n: int, repeats: int) -> dict[str, float]:
    """Microseconds per source to start and finish ``n`` sources that yield nothing."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, runner in runners.items():
            sources = [BenchSource(f"a{i}", 0) for i in range(n)]
            gc.collect()
            start = time.perf_counter()
            await runner(sources)
            times[name].append((time.perf_counter() - start) / n * 1e6)
    return {name: round(statistics.median(values), 1) for name, values in times.items()}


async def stalled_peak_mib(n: int = 1000, buffer: int = 64) -> dict[str, float]:
    sources = [BenchSource(f"a{i}", 100_000) for i in range(n)]
    gc.collect()
    tracemalloc.start()
    try:
        async with open_fanout(sources, "bench", buffer=buffer, overflow="block") as fanout:
            await fanout.__anext__()
            await anyio.wait_all_tasks_blocked()
            first = fanout.status()
            await anyio.wait_all_tasks_blocked()
            second = fanout.status()
            _, peak = tracemalloc.get_traced_memory()
            fanout.cancel()
    finally:
        tracemalloc.stop()
    buffered = sum(s.buffered for s in second.values())
    return {
        "stalled_1000_peak_mib": round(peak / 2**20, 2),
        "stalled_1000_buffered_events": buffered,
        "stalled_1000_buffer_bound": n * buffer,
        "stalled_1000_paused_sources": sum(s.paused for s in second.values()),
        "stalled_1000_read_after_pause": sum(second[a].produced - first[a].produced for a in first),
        "stalled_1000_events_if_unbounded": n * 100_000,
    }


async def main(quick: bool) -> dict[str, Any]:
    repeats = 3 if quick else 5
    # Enough events per run that steady-state throughput, not start-up, is measured; the
    # per-lane start-up cost is reported on its own (``lane_setup_us``).
    dense_total = 40_000 if quick else 300_000
    sparse_total = 20_000 if quick else 100_000
    runners: dict[str, Runner] = {"ours": run_ours, "queue": run_queue, "aiostream": run_aiostream}
    out: dict[str, Any] = {"dense": {}}
    for n in (1, 10, 100, 1000):
        out["dense"][str(n)] = await _measure(runners, n, dense_total, False, repeats)
    out["sparse_1000"] = await _measure(runners, 1000, sparse_total, True, repeats)
    raw = await _measure({"raw": run_raw}, 1, dense_total, False, repeats)
    out["raw_single_source"] = raw["raw"]
    out["setup_us_per_source_1000"] = await setup_us(runners, 1000, repeats)
    out.update(await stalled_peak_mib())
    dense = out["dense"]
    out["ratios"] = {
        "ours_over_queue": {n: round(v["ours"] / v["queue"], 2) for n, v in dense.items()},
        "ours_over_aiostream": {n: round(v["ours"] / v["aiostream"], 1) for n, v in dense.items()},
        "sparse_ours_over_aiostream": round(
            out["sparse_1000"]["ours"] / out["sparse_1000"]["aiostream"], 1
        ),
        "sparse_ours_over_queue": round(
            out["sparse_1000"]["ours"] / out["sparse_1000"]["queue"], 2
        ),
        "ours_over_raw_single_source": round(dense["1"]["ours"] / out["raw_single_source"], 3),
    }
    out["params"] = {
        "quick": quick,
        "repeats": repeats,
        "dense_events_per_run": dense_total,
        "sparse_events_per_run": sparse_total,
        "python": sys.version.split()[0],
    }
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (default)")
    parser.add_argument("--quick", action="store_true", help="smaller runs (< 40 s on 2 cores)")
    args = parser.parse_args()
    result = asyncio.run(main(args.quick))
    print(json.dumps(result, indent=None if args.json else 2))

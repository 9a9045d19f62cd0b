"""Soak: fan-outs back to back through the API for a while; RSS and task count stay flat.

Runs ``SOAK_SECONDS`` (default 120 s when ``CI`` is set, 20 s otherwise). A real uvicorn
serves the app in its own thread (``_server.py``); a few clients run fan-outs of three
scripted agents one after the other and read every event. RSS and the server's task count
are sampled every ``SOAK_SAMPLE_S`` seconds after a warm-up (the workers pause for each
sample, so the server is between fan-outs), with the Python heap traced by ``tracemalloc``.
Least-squares lines give the slopes (RSS MB/min, tasks/min, heap bytes per fan-out),
printed and written to ``tests/artifacts/soak.json``.

RSS is noisy in a short run (the allocator's arenas still grow), so its bound is generous
(10 MB/min, or twice what leaking 1 KB per fan-out would add); the heap slope is exact and
catches a 1 KB per fan-out leak; every task-count sample must equal the baseline.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import time
import tracemalloc
from pathlib import Path

import anyio
import httpx
import pytest
from httpx_sse import aconnect_sse

from api import ApiSettings
from orchestrator import Event, ScriptedDirectory, ScriptedSource
from tests._wait import wait_until_sync

from ._server import ServerProbe, rss_mb, serve_in_thread

SECONDS = float(os.environ.get("SOAK_SECONDS") or (120 if os.environ.get("CI") else 20))
SAMPLE_S = float(os.environ.get("SOAK_SAMPLE_S") or 2.0)
WARMUP_S = min(10.0, SECONDS / 4)
WORKERS = 4
ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "soak.json"
WORDS = [f"w{n} " for n in range(30)]
SSE = {"Accept": "text/event-stream"}
# The hub remembers the ids of forgotten fan-outs (up to 10,000, ~150 B each) so that a late
# reader gets "expired": by design. A 1 KB leak per fan-out is well above this bound.
HEAP_BOUND = 512.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(SECONDS + 120)]


def _agent(agent_id: str, label: str) -> ScriptedSource:
    return ScriptedSource(agent_id, WORDS, label=label, reasoning="hm")


def _directory() -> ScriptedDirectory:
    return ScriptedDirectory(dict.fromkeys(("a", "b", "c"), _agent))


def _slope_per_min(points: list[tuple[float, float]]) -> float:
    if len(points) < 3:
        return 0.0
    xs, ys = zip(*points, strict=True)
    return statistics.linear_regression(xs, ys).slope * 60


class _Soak:
    """Workers run fan-outs back to back; the sampler pauses them to take each sample."""

    def __init__(self, probe: ServerProbe, baseline: list[str]) -> None:
        self.probe = probe
        self.baseline = baseline
        self.fanouts = 0
        self.samples: list[tuple[float, float, int]] = []
        self.heap: list[tuple[float, float]] = []  # (fan-outs so far, traced Python heap)
        self.stop_at = time.monotonic() + SECONDS
        self.busy = 0
        self.go = anyio.Event()
        self.go.set()
        self.idle = anyio.Event()

    async def worker(self, http: httpx.AsyncClient) -> None:
        body = {"agents": [{"agent_id": a} for a in ("a", "b", "c")], "message": "go"}
        while time.monotonic() < self.stop_at:
            await self.go.wait()
            self.busy += 1
            try:
                async with aconnect_sse(http, "POST", "/v1/fanouts", json=body, headers=SSE) as s:
                    events = [Event.from_json(e.data) async for e in s.aiter_sse()]
            finally:
                self.busy -= 1
                if self.busy == 0:
                    self.idle.set()
            assert events[-1].type == "fanout_done"
            assert events[-1].data["counts"]["done"] == 3
            self.fanouts += 1

    async def sampler(self, t0: float) -> None:
        while time.monotonic() < self.stop_at:
            # Pacing the samples, not synchronising anything.
            await anyio.sleep(SAMPLE_S)
            # Pause the workers so the server is between fan-outs: a task count taken in
            # flight would measure the load, not a leak.
            self.go = anyio.Event()
            self.idle = anyio.Event()
            if self.busy:
                await self.idle.wait()
            t = time.monotonic() - t0
            tasks = await anyio.to_thread.run_sync(self._quiet_tasks)
            # The directory and the probe keep every source and summary for other tests;
            # here they would look like a leak.
            self.probe.directory.created.clear()
            self.probe.done.clear()
            if t >= WARMUP_S:
                self.samples.append((t, rss_mb(), tasks))
                # Uncollected cycles of finished fan-outs come and go by the megabyte: count
                # what is still reachable, not when the collector last ran.
                gc.collect()
                self.heap.append((float(self.fanouts), float(tracemalloc.get_traced_memory()[0])))
            self.go.set()

    def _quiet_tasks(self) -> int:
        # The last response's tasks end a few loop turns after the client read it all; the
        # finished fan-outs are forgotten after retention_s. Sample only then, so every
        # sample describes the same state.
        probe = self.probe
        wait_until_sync(lambda: not probe.call(lambda: probe.hub.recent(1000)), "the hub to reap")
        deadline = time.monotonic() + 10
        while (names := probe.task_names()) != self.baseline:
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)  # polling a real condition with a deadline
        return len(names)


async def test_fanouts_back_to_back_keep_rss_and_tasks_flat() -> None:
    settings = ApiSettings(retention_s=0.2, max_retained_fanouts=50, ping_s=600)
    with serve_in_thread(_directory(), settings, access_log=False) as probe:
        baseline = probe.task_names()
        soak = _Soak(probe, baseline)
        tracemalloc.start()
        t0 = time.monotonic()
        limits = httpx.Limits(max_connections=WORKERS)
        async with (
            httpx.AsyncClient(base_url=probe.base_url, timeout=60, limits=limits) as http,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(soak.sampler, t0)
            for _ in range(WORKERS):
                tg.start_soon(soak.worker, http)
        elapsed = time.monotonic() - t0
        tracemalloc.stop()
        await anyio.to_thread.run_sync(
            lambda: wait_until_sync(
                lambda: probe.task_names() == baseline, "tasks back to baseline"
            )
        )

    per_min = soak.fanouts / elapsed * 60
    rss_slope = _slope_per_min([(t, r) for t, r, _ in soak.samples])
    task_slope = _slope_per_min([(t, float(n)) for t, _, n in soak.samples])
    leak_1kb = per_min * 1024 / 2**20  # MB/min that leaking 1 KB per fan-out would add
    # RSS is noisy (allocator arenas still growing in a short run): a generous bound for
    # gross leaks. The traced Python heap is exact: bytes kept per fan-out.
    rss_bound = max(10.0, 2 * leak_1kb)
    heap_per_fanout = 0.0
    if len(soak.heap) >= 3:
        xs, ys = zip(*soak.heap, strict=True)
        heap_per_fanout = statistics.linear_regression(xs, ys).slope
    report = {
        "seconds": round(elapsed, 1),
        "fanouts": soak.fanouts,
        "fanouts_per_min": round(per_min, 1),
        "rss_slope_mb_per_min": round(rss_slope, 3),
        "rss_bound_mb_per_min": round(rss_bound, 3),
        "leak_1kb_per_fanout_mb_per_min": round(leak_1kb, 3),
        "heap_bytes_per_fanout": round(heap_per_fanout, 1),
        "heap_bound_bytes_per_fanout": HEAP_BOUND,
        "tasks_slope_per_min": round(task_slope, 3),
        "tasks_baseline": len(baseline),
        "samples": [
            {"t": round(t, 2), "rss_mb": round(r, 2), "tasks": n} for t, r, n in soak.samples
        ],
    }
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\nsoak: {soak.fanouts} fan-outs in {elapsed:.0f} s ({per_min:.0f}/min); "
        f"RSS slope {rss_slope:+.3f} MB/min (bound {rss_bound:.2f}); "
        f"tasks slope {task_slope:+.3f}/min; Python heap {heap_per_fanout:+.0f} B/fan-out"
    )
    assert len(soak.samples) >= 3, report
    assert rss_slope < rss_bound, report
    assert heap_per_fanout < HEAP_BOUND, report
    assert task_slope < 1, report
    assert {n for _, _, n in soak.samples} == {len(baseline)}, report

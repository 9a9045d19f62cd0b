"""Replicas sharing fan-outs through Redis: throughput, delivery latency and takeover time.

One run starts its own ``redis-server`` (a free port, a temporary directory, no
persistence) and three ``orchestrator serve`` processes of the scripted agents in
``bench/_replica_agents.py``: ``mem`` (the in-memory hub) and replicas ``A`` and ``B`` (the
Redis hub). Readers are ``httpx-sse`` clients in this process; content events carry
``sent_at`` from the source, so latency is arrival minus ``sent_at`` (one machine, one clock).

- throughput: a burst (agents with no delay) read by one SSE client on the owner (``mem``,
  ``A``) and by one on the other replica (``B`` reading ``A``'s fan-out); events/s is the
  events over last minus first arrival, median of the runs, the configurations taking turns;
- latency: paced agents (100 x 50 tokens/s by default) read on the owner, and with Redis
  at once on ``A`` and ``B``; "added" is, per event index, arrival on ``B`` minus on ``A``;
- takeover: resumable paced agents started on ``A`` (``on_disconnect: continue``) and read
  on ``B``; ``A`` gets ``kill -9`` mid-answer; the time until ``B``'s reader sees the first
  event of the continuation, and whether every agent's text on ``B`` is exactly its script.

Usage: ``python bench/replicas.py --json`` prints one JSON object (``--quick``: fewer runs).
Needs ``redis-server`` (``scripts/install-redis.sh`` installs Debian's).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import psutil
import redis.asyncio as aioredis
from _replica_agents import ENV, Profile, expected_text
from httpx_sse import aconnect_sse

# ``_replica_agents`` is found because a script's folder is on sys.path; the servers import
# it as ``bench._replica_agents`` with the repository root on PYTHONPATH.
ROOT = Path(__file__).resolve().parents[1]

SSE_HEADERS = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
PLAIN_HEADERS = {"Accept": "application/json", "Accept-Encoding": "identity"}
PREFIX = "orchestrator:"


# -- processes ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _redis_binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found is None:
        sys.exit(
            "error: no redis-server found; install it with scripts/install-redis.sh "
            "(Debian's redis-server package)"
        )
    return found


@dataclass
class Proc:
    """A child process of the bench: a server on ``url``, its log, its CPU time."""

    name: str
    popen: subprocess.Popen[bytes]
    url: str
    log: Path

    def cpu_s(self) -> float:
        try:
            times = psutil.Process(self.popen.pid).cpu_times()
        except psutil.NoSuchProcess:
            return 0.0
        return float(times.user + times.system)

    def gc_pauses(self, since: float, until: float) -> list[str]:
        """``g<generation>:<ms>`` of each collection of 2 ms or more between two wall times."""
        path = self.log.with_name(f"gc-{self.name}.log")
        if not path.exists():
            return []
        pauses = []
        for line in path.read_text().splitlines():
            at, generation, ms = line.split()
            if since <= float(at) <= until:
                pauses.append(f"g{generation}:{float(ms):.1f}")
        return pauses

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def _cpu_pressure_us() -> float | None:
    # Linux PSI: microseconds during which some runnable task waited for a CPU.
    try:
        for line in Path("/proc/pressure/cpu").read_text().splitlines():
            if line.startswith("some"):
                return float(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _own_cpu_s() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def start_redis(tmp: Path) -> Proc:
    """A private redis-server on a free loopback port, data in ``tmp``, no persistence."""
    binary = _redis_binary()
    for _ in range(5):
        port = _free_port()
        log = tmp / f"redis-{port}.log"
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp)]
        argv += ["--save", "", "--appendonly", "no", "--logfile", str(log)]
        popen = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        proc = Proc("redis", popen, f"redis://127.0.0.1:{port}/0", log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and popen.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return proc
            except OSError:
                time.sleep(0.02)
        proc.stop()  # the port was taken meanwhile: try another
    raise RuntimeError(f"redis-server did not start: {proc.output()}")


def spawn_serve(name: str, extra: Sequence[str], env: dict[str, str], tmp: Path) -> Proc:
    """``orchestrator serve --fd N`` on a socket bound here (no race for the port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    fd = sock.fileno()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    log = tmp / f"serve-{name}.log"
    command = str(Path(sys.executable).parent / "orchestrator")
    argv = [command, "serve", "--scripted", "bench._replica_agents:directory", "--fd", str(fd)]
    argv += ["--max-agents", "128", "--log-level", "warning", *extra]
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "BENCH_GC_LOG": str(tmp / f"gc-{name}.log"),
                **env,
            },
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=(fd,),
        )
    sock.close()  # the child holds its own copy
    return Proc(name, popen, url, log)


def wait_healthy(procs: Sequence[Proc], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        while True:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited: {proc.output()}")
            try:
                if httpx.get(proc.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} did not answer /healthz: {proc.output()}")
            time.sleep(0.05)


# -- reading --------------------------------------------------------------------------------


@dataclass
class Read:
    """What one SSE reader received: arrival times and the events' JSON."""

    arrivals: list[float] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    _events: list[dict[str, Any]] | None = None

    @property
    def events(self) -> list[dict[str, Any]]:
        if self._events is None:
            self._events = [orjson.loads(data) for data in self.raw]
        return self._events

    def rate(self) -> float:
        span = self.arrivals[-1] - self.arrivals[0]
        return len(self.arrivals) / span if span > 0 else math.inf

    def by_index(self) -> dict[int, float]:
        return {e["index"]: t for e, t in zip(self.events, self.arrivals, strict=True)}

    def latencies_ms(self, since: float = 0.0) -> list[float]:
        return [
            1000 * (t - e["sent_at"])
            for e, t in zip(self.events, self.arrivals, strict=True)
            if e["type"] == "content" and e["sent_at"] >= since
        ]


async def read_sse(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    into: Read,
    *,
    reached: tuple[int, anyio.Event] | None = None,
    **kw: Any,
) -> Read:
    """Read an event stream to its end; the arrival time is taken before any parsing.

    ``reached=(n, event)`` sets ``event`` once ``n`` events have arrived.
    """
    clock = time.time
    async with aconnect_sse(client, method, url, headers=SSE_HEADERS, **kw) as source:
        source.response.raise_for_status()
        async for sse in source.aiter_sse():
            if sse.event == "error":
                raise RuntimeError(f"stream error from {url}: {sse.data}")
            into.arrivals.append(clock())
            into.raw.append(sse.data)
            if reached is not None and len(into.raw) >= reached[0]:
                reached[1].set()
    return into


def body(profile: str, agents: int, **options: Any) -> dict[str, Any]:
    return {
        "agents": [{"agent_id": f"{profile}-{n}"} for n in range(agents)],
        "message": "go",
        "options": options,
    }


async def create(client: httpx.AsyncClient, url: str, payload: dict[str, Any]) -> str:
    """Start a fan-out without streaming it (``201``); returns its id."""
    response = await client.post(url + "/v1/fanouts", json=payload, headers=PLAIN_HEADERS)
    if response.status_code != 201:
        raise RuntimeError(f"POST {url}/v1/fanouts: {response.status_code} {response.text}")
    fanout_id: str = response.json()["fanout_id"]
    return fanout_id


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(values: Sequence[float]) -> dict[str, Any]:
    return {
        "p50_ms": round(percentile(values, 50), 2),
        "p99_ms": round(percentile(values, 99), 2),
        "max_ms": round(max(values), 2),
        "samples": len(values),
    }


# -- the measurements -----------------------------------------------------------------------


@dataclass
class Bench:
    client: httpx.AsyncClient
    mem: Proc
    a: Proc
    b: Proc
    redis: Proc
    profiles: dict[str, Profile]
    lease_s: float

    def count(self, name: str) -> int:
        return self.profiles[name].agents

    async def burst(self, config: str, profile: str = "burst") -> dict[str, Any]:
        """One burst run: ``memory_owner``, ``redis_owner`` or ``redis_other``."""
        payload = body(profile, self.count(profile), overflow="block")
        owner = self.mem if config == "memory_owner" else self.a
        watched = [owner] if config != "redis_other" else [self.a, self.b]
        cpu0 = {p.name: p.cpu_s() for p in [*watched, self.redis]}
        read = Read()
        if config == "redis_other":
            fanout_id = await create(self.client, self.a.url, payload)
            url = f"{self.b.url}/v1/fanouts/{fanout_id}/events"
            await read_sse(self.client, "GET", url, read)
        else:
            await read_sse(self.client, "POST", owner.url + "/v1/fanouts", read, json=payload)
        events = len(read.arrivals)
        cpu = {
            name: round(1e6 * (p.cpu_s() - cpu0[name]) / events, 1)
            for name, p in {p.name: p for p in [*watched, self.redis]}.items()
            if config != "memory_owner" or name != "redis"
        }
        return {
            "events": events,
            "events_per_s": round(read.rate()),
            "seconds": round(read.arrivals[-1] - read.arrivals[0], 3),
            "cpu_ms_per_1000_events": cpu,
        }

    async def paced(self, redis: bool, profile: str = "paced") -> dict[str, Any]:
        """One paced run; with ``redis`` read at once on the owner A and on B."""
        payload = body(profile, self.count(profile))
        owner = self.a if redis else self.mem
        fanout_id = await create(self.client, owner.url, payload)
        reads = {"owner": Read()}
        if redis:
            reads["other"] = Read()
        urls = {"owner": owner.url, "other": self.b.url}
        procs = [self.a, self.b, self.redis] if redis else [self.mem]
        cpu0 = {p.name: p.cpu_s() for p in procs}
        own0 = _own_cpu_s()
        started = time.monotonic()
        wall0 = time.time()
        async with anyio.create_task_group() as tg:
            for where, read in reads.items():
                url = f"{urls[where]}/v1/fanouts/{fanout_id}/events"
                tg.start_soon(read_sse, self.client, "GET", url, read)
        wall = time.monotonic() - started
        out: dict[str, Any] = {where: read.latencies_ms() for where, read in reads.items()}
        cpu = {p.name: round(100 * (p.cpu_s() - cpu0[p.name]) / wall) for p in procs}
        cpu["bench readers"] = round(100 * (_own_cpu_s() - own0) / wall)
        out["cpu_percent"] = cpu
        out["gc_pauses_ms"] = {
            p.name: p.gc_pauses(wall0, time.time()) for p in procs if p is not self.redis
        }
        if redis:
            on_a = reads["owner"].by_index()
            on_b = reads["other"].by_index()
            content = {e["index"] for e in reads["owner"].events if e["type"] == "content"}
            out["added"] = [1000 * (on_b[i] - on_a[i]) for i in sorted(content)]
        return out

    async def takeover(self) -> dict[str, Any]:
        """kill -9 the owner mid-answer; B's reader must see the rest, exactly."""
        profile = self.profiles["takeover"]
        payload = body("takeover", profile.agents, on_disconnect="continue")
        fanout_id = await create(self.client, self.a.url, payload)
        read = Read()
        url = f"{self.b.url}/v1/fanouts/{fanout_id}/events"
        # Kill when about 40 % of the answer has been read (the starts come first).
        part = (int(profile.agents * (profile.tokens * 0.4 + 1)), anyio.Event())
        r = aioredis.Redis.from_url(self.redis.url)
        try:
            with anyio.fail_after(self.lease_s + 60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(partial(read_sse, self.client, "GET", url, read, reached=part))
                    await part[1].wait()
                    killed_at = time.time()
                    self.a.popen.kill()
                    lease_ttl_ms = await r.pttl(f"{PREFIX}fo:{{{fanout_id}}}:lease")
                    self.a.popen.wait()
                    await anyio.sleep(0.2)  # what the dead process had sent is in Redis now
                    last = await r.xrevrange(f"{PREFIX}fo:{{{fanout_id}}}:events", count=1)
                    last_id = last[0][0] if last else b"-1-0"
                    if isinstance(last_id, bytes):
                        last_id = last_id.decode()
                    last_by_a = int(str(last_id).rsplit("-", 1)[0])
        finally:
            await r.aclose()
        events = read.events
        resumed = next((k for k, e in enumerate(events) if e["index"] > last_by_a), len(events) - 1)
        first_resumed_at = read.arrivals[resumed]
        texts: dict[str, str] = {}
        ends: dict[str, str] = {}
        for e in events:
            agent = str(e.get("agent_id"))
            if e["type"] == "content":
                texts[agent] = texts.get(agent, "") + e["delta"]
            elif e["type"] in ("agent_done", "agent_error", "agent_cancelled"):
                ends[agent] = e["type"]
        exact = {
            f"takeover-{n}": texts.get(f"takeover-{n}")
            == expected_text(f"takeover-{n}", profile.tokens)
            for n in range(profile.agents)
        }
        indices = [e["index"] for e in events]
        health = (await self.client.get(self.b.url + "/healthz")).json()
        log = self.b.log.read_text(errors="replace")
        taken = [line.strip() for line in log.splitlines() if "taking over" in line]
        expiry = killed_at + lease_ttl_ms / 1000 if lease_ttl_ms > 0 else killed_at
        return {
            "lease_s": self.lease_s,
            "events_read_on_b": len(events),
            "last_index_by_a": last_by_a,
            "first_resumed_index": events[resumed]["index"],
            "first_resumed_event": events[resumed]["type"],
            # Made by the revived source (after the kill), not by A.
            "first_resumed_made_after_kill": events[resumed].get("sent_at", 0.0) > killed_at,
            "lease_ttl_at_kill_ms": lease_ttl_ms,
            "from_kill_s": round(first_resumed_at - killed_at, 3),
            "from_lease_expiry_s": round(first_resumed_at - expiry, 3),
            "from_kill_plus_lease_s": round(first_resumed_at - killed_at - self.lease_s, 3),
            "exact_text_every_agent": all(exact.values()),
            "agents_done": sum(1 for v in ends.values() if v == "agent_done"),
            "agents": profile.agents,
            "indices_contiguous": indices == list(range(len(indices))),
            "ends_with_fanout_done": bool(events) and events[-1]["type"] == "fanout_done",
            "takeovers_reported_by_b": health.get("hub", {}).get("takeovers"),
            "b_log": taken,
        }


async def measure(bench: Bench, runs: int, latency_runs: int) -> dict[str, Any]:
    # Warm up each server (imports, first connections) with a small burst, then measure
    # latency before the bursts fill the servers' retained logs (a bigger heap to collect).
    for config in ("memory_owner", "redis_owner", "redis_other"):
        await bench.burst(config, profile="warm")
    pooled: dict[str, list[float]] = {
        "memory_owner": [],
        "redis_owner": [],
        "redis_other": [],
        "cross_replica_added": [],
    }
    per_run_p99: dict[str, list[float]] = {k: [] for k in pooled}
    cpu: dict[str, list[dict[str, float]]] = {"memory": [], "redis": []}
    gc_pauses: dict[str, list[dict[str, list[str]]]] = {"memory": [], "redis": []}
    for _ in range(latency_runs):
        for redis in (False, True):
            out = await bench.paced(redis)
            cpu["redis" if redis else "memory"].append(out.pop("cpu_percent"))
            gc_pauses["redis" if redis else "memory"].append(out.pop("gc_pauses_ms"))
            names = (
                {"owner": "redis_owner", "other": "redis_other", "added": "cross_replica_added"}
                if redis
                else {"owner": "memory_owner"}
            )
            for key, name in names.items():
                pooled[name].extend(out[key])
                per_run_p99[name].append(round(percentile(out[key], 99), 2))
    latency: dict[str, Any] = {
        name: {**summary_ms(values), "p99_ms_per_run": per_run_p99[name]}
        for name, values in pooled.items()
    }
    latency["cpu_percent_of_one_core"] = cpu
    latency["server_gc_pauses_over_2ms"] = gc_pauses
    # The same at a fifth of the load: what the path adds when the CPUs are not busy.
    light = await bench.paced(True, profile="light")
    latency["light_load"] = {
        "agents": bench.count("light"),
        "cross_replica_added": summary_ms(light["added"]),
        "redis_other": summary_ms(light["other"]),
        "redis_owner": summary_ms(light["owner"]),
        "cpu_percent_of_one_core": light["cpu_percent"],
        "server_gc_pauses_over_2ms": light["gc_pauses_ms"],
    }
    configs = ["memory_owner", "redis_owner", "redis_other"]
    burst_runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    for k in range(runs):
        for config in configs[k % 3 :] + configs[: k % 3]:  # take turns: load hits all alike
            burst_runs[config].append(await bench.burst(config))
    throughput = {
        config: {
            "median_events_per_s": round(statistics.median(r["events_per_s"] for r in rs)),
            "runs": rs,
        }
        for config, rs in burst_runs.items()
    }
    # The owner's CPU per event moves less with the machine's load than a rate does.
    mem_cpu = statistics.median(
        r["cpu_ms_per_1000_events"]["mem"] for r in burst_runs["memory_owner"]
    )
    red_cpu = statistics.median(r["cpu_ms_per_1000_events"]["A"] for r in burst_runs["redis_owner"])
    throughput["owner_cpu_ms_per_1000_events"] = {
        "memory": mem_cpu,
        "redis": red_cpu,
        "memory_over_redis": round(mem_cpu / red_cpu, 2),
    }
    takeover = await bench.takeover()
    return {"throughput": throughput, "latency": latency, "takeover": takeover}


def anchors(result: dict[str, Any], lease_s: float) -> list[dict[str, Any]]:
    thr = result["throughput"]
    mem = thr["memory_owner"]["median_events_per_s"]
    red = thr["redis_owner"]["median_events_per_s"]
    added = result["latency"]["cross_replica_added"]["p99_ms"]
    take = result["takeover"]["from_kill_s"]
    paced = result["params"]["profiles"]["paced"]
    return [
        {
            "anchor": "Redis hub events/s >= 0.7 x in-memory hub (reader on the owner)",
            "measured": (
                f"{red} / {mem} = {red / mem:.2f} (owner CPU per event, memory / Redis: "
                f"{thr['owner_cpu_ms_per_1000_events']['memory_over_redis']})"
            ),
            "pass": red >= 0.7 * mem,
        },
        {
            "anchor": (
                f"cross-replica added p99 <= 10 ms at {paced['agents']} agents x "
                f"{paced['tokens_per_s']:g} tok/s"
            ),
            "measured": f"{added} ms",
            "pass": added <= 10.0,
        },
        {
            "anchor": f"takeover after kill -9 <= lease + 1 s = {lease_s + 1:g} s",
            "measured": f"{take} s from the kill",
            "pass": take <= lease_s + 1.0,
        },
        {
            "anchor": "every agent's text on B after the takeover equals its script",
            "measured": str(result["takeover"]["exact_text_every_agent"]),
            "pass": bool(result["takeover"]["exact_text_every_agent"]),
        },
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    profiles = {
        "warm": Profile(agents=4, tokens=500),
        # The agents wait before their first token, so that a reader on the other replica
        # is attached before the burst (it would otherwise arrive after Redis trimmed the
        # Stream past its start: 40 000 events against MAXLEN ~10 000, a 410). Rates are
        # taken between the first and the last arrival, so the wait is not counted.
        "burst": Profile(agents=args.burst_agents, tokens=args.burst_tokens, start_delay_s=0.5),
        "paced": Profile(
            agents=args.paced_agents,
            tokens=args.paced_tokens,
            tokens_per_s=args.paced_rate,
            start_delay_s=0.5,
        ),
        "light": Profile(
            agents=max(1, args.paced_agents // 5),
            tokens=args.paced_tokens,
            tokens_per_s=args.paced_rate,
            start_delay_s=0.5,
        ),
        "takeover": Profile(
            agents=args.takeover_agents,
            tokens=args.takeover_tokens,
            tokens_per_s=args.paced_rate,
            resumable=True,
            start_delay_s=0.3,
        ),
    }
    env = {ENV: json.dumps({name: p.to_json() for name, p in profiles.items()})}
    load_before = os.getloadavg()[0]
    pressure_before = _cpu_pressure_us()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp_name:
        tmp = Path(tmp_name)
        redis = start_redis(tmp)
        procs: list[Proc] = [redis]
        try:
            mem = spawn_serve("mem", [], env, tmp)
            procs.append(mem)
            common = ["--redis", redis.url, "--lease-s", str(args.lease_s)]
            a = spawn_serve("A", [*common, "--replica-id", "A"], env, tmp)
            procs.append(a)
            b = spawn_serve("B", [*common, "--replica-id", "B"], env, tmp)
            procs.append(b)
            wait_healthy([mem, a, b])

            async def main() -> dict[str, Any]:
                limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
                async with httpx.AsyncClient(timeout=60, limits=limits) as client:
                    bench = Bench(client, mem, a, b, redis, profiles, args.lease_s)
                    return await measure(bench, args.runs, args.latency_runs)

            try:
                result = anyio.run(main)
            except BaseException:
                for proc in procs:
                    sys.stderr.write(f"--- {proc.name} log ---\n{proc.output()}\n")
                raise
            redis_version = subprocess.run(
                [_redis_binary(), "--version"], capture_output=True, text=True, check=False
            ).stdout.split()[2]
        finally:
            for proc in reversed(procs):
                proc.stop()
    result["params"] = {
        "quick": args.quick,
        "burst_runs": args.runs,
        "latency_runs": args.latency_runs,
        "lease_s": args.lease_s,
        "profiles": {name: p.to_json() for name, p in profiles.items()},
    }
    elapsed = time.monotonic() - started
    pressure_after = _cpu_pressure_us()
    waited = (
        round(100 * (pressure_after - pressure_before) / 1e6 / elapsed, 1)
        if pressure_before is not None and pressure_after is not None
        else None
    )
    result["machine"] = {
        "cores": os.cpu_count(),
        # Share of the run's time in which some task (ours or another's) waited for a CPU.
        "cpu_pressure_some_percent": waited,
        "python": sys.version.split()[0],
        "redis": redis_version,
        "load_average_1m_before": round(load_before, 2),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
    }
    result["anchors"] = anchors(result, args.lease_s)
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def table(result: dict[str, Any]) -> str:
    lines = ["throughput (burst, events/s, median of runs):"]
    for config, data in result["throughput"].items():
        if "runs" not in data:
            lines.append(f"  owner CPU ms per 1000 events: {data}")
            continue
        runs = ", ".join(str(r["events_per_s"]) for r in data["runs"])
        lines.append(f"  {config:<14} {data['median_events_per_s']:>8}   runs: {runs}")
    latency = result["latency"]
    light = latency["light_load"]
    rows = [(k, v) for k, v in latency.items() if isinstance(v, dict) and "p50_ms" in v]
    rows += [
        (f"{k} ({light['agents']} agents)", v)
        for k, v in light.items()
        if isinstance(v, dict) and "p50_ms" in v
    ]
    lines.append("delivery latency (paced, ms):")
    for name, data in rows:
        lines.append(
            f"  {name:<36} p50 {data['p50_ms']:>7}  p99 {data['p99_ms']:>7}  "
            f"max {data['max_ms']:>7}  n={data['samples']}"
        )
    lines.append(f"  CPU % of one core while paced: {latency['cpu_percent_of_one_core']}")
    lines.append(f"  servers' GC pauses >= 2 ms: {latency['server_gc_pauses_over_2ms']}")
    t = result["takeover"]
    lines.append(
        f"takeover: {t['from_kill_s']} s from kill -9 (lease {t['lease_s']} s; "
        f"{t['from_lease_expiry_s']} s after the lease expired), exact text: "
        f"{t['exact_text_every_agent']}"
    )
    lines.append("anchors:")
    for anchor in result["anchors"]:
        verdict = "PASS" if anchor["pass"] else "FAIL"
        lines.append(f"  [{verdict}] {anchor['anchor']}: {anchor['measured']}")
    lines.append(f"machine: {result['machine']}; {result['seconds']} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="fewer and smaller runs")
    parser.add_argument("--runs", type=int, default=None, help="burst runs per configuration")
    parser.add_argument("--latency-runs", type=int, default=None)
    parser.add_argument("--lease-s", type=float, default=5.0)
    parser.add_argument("--burst-agents", type=int, default=20)
    parser.add_argument("--burst-tokens", type=int, default=None)
    parser.add_argument("--paced-agents", type=int, default=100)
    parser.add_argument("--paced-rate", type=float, default=50.0, help="tokens/s per agent")
    parser.add_argument("--paced-tokens", type=int, default=None)
    parser.add_argument("--takeover-agents", type=int, default=10)
    parser.add_argument("--takeover-tokens", type=int, default=150)
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 2 if args.quick else 3
    if args.latency_runs is None:
        args.latency_runs = 1 if args.quick else 3
    if args.burst_tokens is None:
        args.burst_tokens = 1000 if args.quick else 2000
    if args.paced_tokens is None:
        args.paced_tokens = 100 if args.quick else 150
    result = run(args)
    print(json.dumps(result) if args.json else table(result))


if __name__ == "__main__":
    main()

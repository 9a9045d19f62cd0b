"""Events per second end to end: our API vs a bare sse-starlette endpoint.

Both servers run as separate uvicorn processes on this machine, one after the other, read
by the same ``httpx-sse`` client:

- ours: ``POST /v1/fanouts`` (``Accept: text/event-stream``) of scripted agents that send
  their tokens without delay, through the core fan-out, the hub's log and SSE;
- bare: an ``EventSourceResponse`` streaming the same number of pre-built events of the same
  size.

Usage: ``python bench/sse.py --json`` prints ONE JSON object with both rates and their ratio.

Also per side: the server process's CPU seconds per 1000 events (psutil, user + system), which
the load of a shared machine moves less than a rate. ``--before PATH`` runs a third server,
ours from another checkout (``git worktree add`` or ``git archive`` of a revision), in the
same rotation, for a before/after in one run. ``--coalesce-ms`` and ``--gzip`` set the
delivery options of our requests.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil
from httpx_sse import aconnect_sse

ROOT = Path(__file__).resolve().parents[1]


def _event_json(index: int) -> str:
    # Same shape and size as a content event of the fan-out.
    return json.dumps(
        {
            "v": 1,
            "type": "content",
            "fanout_id": "f-0123456789ab",
            "agent_id": "agent-0",
            "label": "agent-0",
            "seq": index + 1,
            "index": index,
            "t": 0.123456,
            "delta": "tok ",
            "message_id": "agent-0-m1",
        },
        separators=(",", ":"),
    )


def _serve(kind: str, port: int, agents: int, tokens: int) -> None:
    import uvicorn

    if kind == "ours":
        from api import ApiSettings, create_app
        from orchestrator import ScriptedDirectory, ScriptedSource

        def factory(agent_id: str, label: str) -> ScriptedSource:
            return ScriptedSource(agent_id, ["tok "] * tokens, label=label)

        directory = ScriptedDirectory({f"agent-{n}": factory for n in range(agents)})
        app: Any = create_app(ApiSettings(), directory)
    else:
        from sse_starlette import EventSourceResponse, ServerSentEvent
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.routing import Route

        async def bare(request: Request) -> EventSourceResponse:
            n = int(request.query_params["n"])
            prebuilt = [
                ServerSentEvent(data=_event_json(i), event="content", id=str(i)) for i in range(n)
            ]

            async def gen() -> AsyncIterator[ServerSentEvent]:
                for sse in prebuilt:
                    yield sse

            return EventSourceResponse(gen())

        async def health(request: Request) -> Any:
            from starlette.responses import PlainTextResponse

            return PlainTextResponse("ok")

        app = Starlette(routes=[Route("/bare", bare), Route("/healthz", health)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Server:
    def __init__(self, kind: str, agents: int, tokens: int, root: Path = ROOT) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, __file__, "--serve", kind, "--port", str(self.port)]
        cmd += ["--agents", str(agents), "--tokens", str(tokens)]
        env = {**os.environ, "PYTHONPATH": str(root)}
        self.proc = subprocess.Popen(cmd, env=env)
        self.process = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        self.close()
        raise RuntimeError(f"{kind} server did not start")

    def cpu_s(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def _read(client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> tuple[int, float]:
    count = 0
    start = time.perf_counter()
    async with aconnect_sse(client, method, url, **kw) as source:
        async for _ in source.aiter_sse():
            count += 1
    return count, time.perf_counter() - start


async def _measure(
    agents: int, tokens: int, rounds: int, before: Path | None, options: dict[str, Any]
) -> dict[str, Any]:
    body = {
        "agents": [{"agent_id": f"agent-{n}"} for n in range(agents)],
        "message": "go",
    }
    query = f"?coalesce_ms={options['coalesce_ms']}" if options.get("coalesce_ms") else ""
    # httpx offers gzip by default: ours then compresses, the bare endpoint never does.
    sse = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
    if options.get("gzip"):
        sse["Accept-Encoding"] = "gzip"
    servers = {"ours": _Server("ours", agents, tokens), "bare": _Server("bare", agents, tokens)}
    if before is not None:
        servers["before"] = _Server("ours", agents, tokens, before)
    rates: dict[str, list[float]] = {name: [] for name in servers}
    cpu: dict[str, list[float]] = {name: [] for name in servers}
    try:
        clients = {
            name: httpx.AsyncClient(base_url=server.base, timeout=60)
            for name, server in servers.items()
        }

        async def one(name: str, events: int) -> int:
            server = servers[name]
            cpu0 = server.cpu_s()
            if name == "bare":
                n, seconds = await _read(clients[name], "GET", f"/bare?n={events}")
            else:
                n, seconds = await _read(
                    clients[name], "POST", "/v1/fanouts" + query, json=body, headers=sse
                )
            rates[name].append(n / seconds)
            cpu[name].append(1000 * (server.cpu_s() - cpu0) / n)
            return n

        # Warm up each, then rotate the order round by round so that load from other
        # processes on the machine affects every side alike.
        events, _ = await _read(clients["ours"], "POST", "/v1/fanouts", json=body, headers=sse)
        for name in servers:
            await one(name, events)
            rates[name].clear()
            cpu[name].clear()
        names = list(servers)
        for k in range(rounds):
            for name in names[k % len(names) :] + names[: k % len(names)]:
                await one(name, events)
        for client in clients.values():
            await client.aclose()
    finally:
        for server in servers.values():
            server.close()
    eps = {name: statistics.median(values) for name, values in rates.items()}
    cpu_med = {name: statistics.median(values) for name, values in cpu.items()}
    result: dict[str, Any] = {
        "benchmark": "sse_end_to_end",
        "events": events,
        "agents": agents,
        "tokens_per_agent": tokens,
        "rounds": rounds,
        "options": options,
        "ours_events_per_s": round(eps["ours"]),
        "bare_events_per_s": round(eps["bare"]),
        "ratio": round(eps["ours"] / eps["bare"], 3),
        "ours_runs": [round(r) for r in rates["ours"]],
        "bare_runs": [round(r) for r in rates["bare"]],
        "server_cpu_s_per_1000_events": {name: round(v, 4) for name, v in cpu_med.items()},
        "cpu_ratio_bare_over_ours": round(cpu_med["bare"] / cpu_med["ours"], 3),
        "target_ratio": 0.9,
        "ok": eps["ours"] / eps["bare"] >= 0.9,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if "before" in eps:
        result["before_events_per_s"] = round(eps["before"])
        result["before_ratio"] = round(eps["before"] / eps["bare"], 3)
        result["before_runs"] = [round(r) for r in rates["before"]]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before", type=Path, default=None, help="another checkout's root")
    parser.add_argument("--coalesce-ms", type=int, default=0, help="delivery window of ours")
    parser.add_argument("--gzip", action="store_true", help="ours with Accept-Encoding: gzip")
    parser.add_argument("--serve", choices=["ours", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.port, args.agents, args.tokens)
        return
    options = {"coalesce_ms": args.coalesce_ms, "gzip": args.gzip}
    result = anyio.run(_measure, args.agents, args.tokens, args.rounds, args.before, options)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"ours {result['ours_events_per_s']} ev/s, bare {result['bare_events_per_s']} ev/s, "
            f"ratio {result['ratio']} (target >= 0.9) over {result['events']} events"
        )


if __name__ == "__main__":
    main()

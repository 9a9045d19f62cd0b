"""Events per second end to end: our API vs a bare sse-starlette endpoint.

Both servers run as separate uvicorn processes on this machine, one after the other, read
by the same ``httpx-sse`` client:

- ours: ``POST /v1/fanouts`` (``Accept: text/event-stream``) of scripted agents that send
  their tokens without delay, through the core fan-out, the hub's log and SSE;
- bare: an ``EventSourceResponse`` streaming the same number of pre-built events of the same
  size.

Usage: ``python bench/sse.py --json`` prints ONE JSON object with both rates and their ratio.
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
    def __init__(self, kind: str, agents: int, tokens: int) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, __file__, "--serve", kind, "--port", str(self.port)]
        cmd += ["--agents", str(agents), "--tokens", str(tokens)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(cmd, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        self.close()
        raise RuntimeError(f"{kind} server did not start")

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


async def _measure(agents: int, tokens: int, rounds: int) -> dict[str, Any]:
    body = {"agents": [{"agent_id": f"agent-{n}"} for n in range(agents)], "message": "go"}
    sse = {"Accept": "text/event-stream"}
    ours_rates: list[float] = []
    bare_rates: list[float] = []
    ours, bare = _Server("ours", agents, tokens), _Server("bare", agents, tokens)
    try:
        async with (
            httpx.AsyncClient(base_url=ours.base, timeout=60) as ours_client,
            httpx.AsyncClient(base_url=bare.base, timeout=60) as bare_client,
        ):
            # Warm up both, then alternate rounds so that load from other processes on the
            # machine affects both sides alike.
            events, _ = await _read(ours_client, "POST", "/v1/fanouts", json=body, headers=sse)
            await _read(bare_client, "GET", f"/bare?n={events}")
            for _ in range(rounds):
                n, seconds = await _read(ours_client, "POST", "/v1/fanouts", json=body, headers=sse)
                ours_rates.append(n / seconds)
                n, seconds = await _read(bare_client, "GET", f"/bare?n={events}")
                assert n == events
                bare_rates.append(n / seconds)
    finally:
        ours.close()
        bare.close()
    ours_eps = statistics.median(ours_rates)
    bare_eps = statistics.median(bare_rates)
    return {
        "benchmark": "sse_end_to_end",
        "events": events,
        "agents": agents,
        "tokens_per_agent": tokens,
        "rounds": rounds,
        "ours_events_per_s": round(ours_eps),
        "bare_events_per_s": round(bare_eps),
        "ratio": round(ours_eps / bare_eps, 3),
        "ours_runs": [round(r) for r in ours_rates],
        "bare_runs": [round(r) for r in bare_rates],
        "target_ratio": 0.7,
        "ok": ours_eps / bare_eps >= 0.7,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", choices=["ours", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.port, args.agents, args.tokens)
        return
    result = anyio.run(_measure, args.agents, args.tokens, args.rounds)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"ours {result['ours_events_per_s']} ev/s, bare {result['bare_events_per_s']} ev/s, "
            f"ratio {result['ratio']} (target >= 0.7) over {result['events']} events"
        )


if __name__ == "__main__":
    main()

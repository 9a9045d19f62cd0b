"""Bytes on the wire and frames per second for a panel client, per delivery option.

One ``orchestrator`` API server (uvicorn, its own process) runs fan-outs of ``--agents``
scripted agents that each stream ``--tokens`` tokens at ``--tps`` tokens/s (default 8 x 50).
A client reads each fan-out through a TCP relay in this process that counts the bytes the
server sends, once per delivery option:

- SSE (``POST /v1/fanouts``, ``Accept: text/event-stream``): plain, ``?coalesce_ms=N``,
  ``Accept-Encoding: gzip``, and both;
- WebSocket (``/v1/ws``, a ``start`` frame): plain, ``coalesce_ms`` in the start frame,
  ``permessage-deflate`` offered by the client (the server's uvicorn accepts it), and both.

Per option: bytes the server sent, frames the client had to parse (SSE events, WebSocket
messages), frames per second over the stream, events per frame, and whether every agent's
joined text equals the plain SSE run's. Options take turns over ``--rounds`` rounds; medians.

    .venv/bin/python bench/delivery.py --json
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
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
from anyio.abc import SocketStream
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.letta._sse import SSEFrames  # noqa: E402

OPTIONS: dict[str, dict[str, Any]] = {
    "sse": {"transport": "sse"},
    "sse_coalesce": {"transport": "sse", "coalesce": True},
    "sse_gzip": {"transport": "sse", "gzip": True},
    "sse_gzip_coalesce": {"transport": "sse", "gzip": True, "coalesce": True},
    "ws": {"transport": "ws"},
    "ws_coalesce": {"transport": "ws", "coalesce": True},
    "ws_deflate": {"transport": "ws", "deflate": True},
    "ws_deflate_coalesce": {"transport": "ws", "deflate": True, "coalesce": True},
}


def _serve(port: int, agents: int, tokens: int, tps: float) -> None:
    import uvicorn

    from api import ApiSettings, create_app
    from orchestrator import ScriptedDirectory, ScriptedSource

    def factory(agent_id: str, label: str) -> ScriptedSource:
        words = [f" w{k}" for k in range(tokens)]
        return ScriptedSource(agent_id, words, label=label, delay_s=1 / tps)

    directory = ScriptedDirectory({f"agent-{n}": factory for n in range(agents)})
    app = create_app(ApiSettings(), directory)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Relay:
    """A TCP relay to the server that counts the bytes the server sends to the client."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.down_bytes = 0

    async def serve(self, listener: anyio.abc.Listener[SocketStream]) -> None:
        await listener.serve(self._handle)

    async def _handle(self, client: SocketStream) -> None:
        async with client, await anyio.connect_tcp("127.0.0.1", self.target_port) as server:

            async def pump(src: SocketStream, dst: SocketStream, down: bool) -> None:
                try:
                    async for chunk in src:
                        if down:
                            self.down_bytes += len(chunk)
                        await dst.send(chunk)
                    await dst.send_eof()
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass

            async with anyio.create_task_group() as tg:
                tg.start_soon(pump, client, server, False)
                tg.start_soon(pump, server, client, True)


def _texts(events: list[dict[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for event in events:
        if event["type"] == "content":
            out[event["agent_id"]] = out.get(event["agent_id"], "") + event["delta"]
    return out


async def _sse(base: str, agents: int, coalesce_ms: int, gzip: bool) -> tuple[list[Any], int]:
    body = {"agents": [{"agent_id": f"agent-{n}"} for n in range(agents)], "message": "go"}
    headers = {"Accept": "text/event-stream", "Accept-Encoding": "gzip" if gzip else "identity"}
    url = "/v1/fanouts" + (f"?coalesce_ms={coalesce_ms}" if coalesce_ms else "")
    events: list[Any] = []
    frames = SSEFrames()
    decoder = zlib.decompressobj(31)
    async with (
        httpx.AsyncClient(base_url=base, timeout=120) as client,
        client.stream("POST", url, json=body, headers=headers) as response,
    ):
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
        encoded = response.headers.get("content-encoding", "")
        if gzip != (encoded == "gzip"):
            raise RuntimeError(f"asked gzip={gzip}, got content-encoding {encoded!r}")
        async for chunk in response.aiter_raw():
            plain = decoder.decompress(chunk) if gzip else chunk
            for _, data in frames.feed(plain):
                events.append(orjson.loads(data))
    return events, len(events)


async def _ws(base: str, agents: int, coalesce_ms: int, deflate: bool) -> tuple[list[Any], int]:
    url = base.replace("http://", "ws://") + "/v1/ws"
    start: dict[str, Any] = {
        "type": "start",
        "agents": [{"agent_id": f"agent-{n}"} for n in range(agents)],
        "message": "go",
    }
    if coalesce_ms:
        start["coalesce_ms"] = coalesce_ms
    events: list[Any] = []
    frames = 0
    async with connect(url, compression="deflate" if deflate else None) as ws:
        await ws.send(json.dumps(start))
        async for raw in ws:
            frames += 1
            message = orjson.loads(raw)
            if "fanout_id" in message and "index" in message:
                events.append(message)
                if message["type"] == "fanout_done":
                    break
            elif message.get("type") == "error":
                raise RuntimeError(f"websocket error: {message}")
    return events, frames


async def _measure(args: argparse.Namespace, port: int) -> dict[str, Any]:
    relay = Relay(port)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    relay_port = listener.extra(anyio.abc.SocketAttribute.local_port)
    base = f"http://127.0.0.1:{relay_port}"
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in OPTIONS}
    reference: dict[str, str] | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.serve, listener)
        names = list(OPTIONS)
        for k in range(args.rounds):
            for name in names[k % len(names) :] + names[: k % len(names)]:
                option = OPTIONS[name]
                coalesce = args.coalesce_ms if option.get("coalesce") else 0
                read: Callable[..., Any] = _sse if option["transport"] == "sse" else _ws
                flag = option.get("gzip", False) or option.get("deflate", False)
                relay.down_bytes = 0
                started = time.perf_counter()
                events, frames = await read(base, args.agents, coalesce, flag)
                seconds = time.perf_counter() - started
                texts = _texts(events)
                if name == "sse" and reference is None:
                    reference = texts
                runs[name].append(
                    {
                        "bytes": relay.down_bytes,
                        "frames": frames,
                        "seconds": seconds,
                        "texts": texts,
                        "done": bool(events) and events[-1]["type"] == "fanout_done",
                    }
                )
        tg.cancel_scope.cancel()
    assert reference is not None
    out: dict[str, Any] = {}
    for name, values in runs.items():
        frames = statistics.median(v["frames"] for v in values)
        out[name] = {
            "bytes": round(statistics.median(v["bytes"] for v in values)),
            "frames": round(frames),
            "frames_per_s": round(statistics.median(v["frames"] / v["seconds"] for v in values), 1),
            "seconds": round(statistics.median(v["seconds"] for v in values), 3),
            "text_identical": all(v["texts"] == reference and v["done"] for v in values),
        }
    plain = {"sse": out["sse"], "ws": out["ws"]}
    for name, row in out.items():
        base_row = plain["sse" if name.startswith("sse") else "ws"]
        row["frames_cut"] = round(base_row["frames"] / row["frames"], 2)
        row["bytes_cut"] = round(base_row["bytes"] / row["bytes"], 2)
    return {
        "benchmark": "delivery",
        "agents": args.agents,
        "tokens_per_agent": args.tokens,
        "tps_per_agent": args.tps,
        "coalesce_ms": args.coalesce_ms,
        "rounds": args.rounds,
        "options": out,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--tps", type=float, default=50.0)
    parser.add_argument("--coalesce-ms", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.port, args.agents, args.tokens, args.tps)
        return
    port = _free_port()
    cmd = [sys.executable, __file__, "--serve", "--port", str(port)]
    cmd += ["--agents", str(args.agents), "--tokens", str(args.tokens), "--tps", str(args.tps)]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        result = anyio.run(_measure, args, port)
    finally:
        proc.terminate()
        proc.wait(10)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

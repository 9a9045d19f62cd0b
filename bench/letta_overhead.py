"""What the orchestrator adds on top of streaming from Letta directly.

Same Letta server, same agents, interleaved runs: time to first token (TTFT) and total
duration when streaming with ``letta_client`` directly vs through ``open_fanout`` with
``LettaSource``, for 1 agent and for 3 agents at once. Prints the medians, their ratios and
a verdict as ONE JSON object: the orchestrator passes when it adds no more than 5 % (or
5 ms, whichever is larger) to the median TTFT.

Statistics: the two sides of a scenario run back to back, in an order counterbalanced over
every four rounds (see ``run_order``), each on a settled server (no active run of the agents,
then ``--pause-s``), so they see the same server state and load. The
verdict uses the median of the per-round paired differences (fan-out minus direct TTFT)
rather than the difference of the two medians, which mixes rounds of different load; a
distribution-free 95 % confidence interval of that median (binomial order statistics) says
whether the data decide the question (``decided``). A round that fails (the shared server
was restarted under it, say) is counted in ``failed_rounds`` and run again.

First token added (``first_token_added_ms`` per scenario): the client's HTTP transport is
wrapped (:class:`ChunkClock`) so that every chunk of a response body is timestamped as it
leaves httpx's connection pool; per agent, the time from the chunk that carries its first
``assistant_message`` frame to the fan-out yielding that agent's first ``content`` event. The
server's own time to first token, and its variance, is not in it. The same figure for the
SDK's iterator (chunk to its first ``AssistantMessage``) is printed beside it as context
(``direct_first_token_added_ms``). Median and p99 over every agent of every round.

Needs a running Letta server with the scripted model (``orchestrator stack up``); the
agents it creates are deleted at the end. The scripted model streams at ``--tps`` tokens per
second so TTFT measures a real wait, not a buffer flush.

    .venv/bin/python bench/letta_overhead.py --json

``--client-only`` needs no server: an ``httpx.MockTransport`` answers every request with a
Letta-shaped stream (ping, ``--tokens`` answer deltas, stop reason, usage, ``[DONE]``) in one
body, so the client's own CPU per request and per token is measured without the server's
noise: the SDK iterating its stream, ``LettaSource.stream`` alone, and ``open_fanout`` over
one ``LettaSource``, in rotating order.

    .venv/bin/python bench/letta_overhead.py --json --client-only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import anyio
import httpx
from letta_client import AsyncLetta, DefaultAsyncHttpxClient

from orchestrator import LettaSource, open_fanout
from orchestrator.config._config import LettaConnection
from orchestrator.letta._source import default_base_url

MODEL = "openai-proxy/scripted"
EMBEDDING = "openai/text-embedding-3-small"
PERSONAS = (
    "Optimist. You look for what could go right.",
    "Skeptic. You question every assumption.",
    "Historian. You answer with precedent.",
    "Engineer. You ask how it would be built.",
    "Economist. You count the costs.",
    "Lawyer. You look for the risks.",
    "Teacher. You explain it simply.",
    "Designer. You think of the user.",
)
#: Scenario name -> number of agents streaming at once.
SCENARIOS = {"1_agent": 1, "3_agents": 3, "8_agents": 8}
_CONTENT_FRAME = b'"message_type":"assistant_message"'


class _TimedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, clock: ChunkClock, agent_id: str) -> None:
        self._inner = inner
        self._clock = clock
        self._agent_id = agent_id

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = False
        async for chunk in self._inner:
            if not seen and _CONTENT_FRAME in chunk:
                seen = True
                self._clock.first_content[self._agent_id] = time.perf_counter()
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class ChunkClock(httpx.AsyncBaseTransport):
    """A transport that timestamps the body chunk carrying each agent's first text frame.

    ``first_content[agent_id]`` is the ``time.perf_counter()`` at which the chunk holding the
    first ``assistant_message`` frame of that agent's current stream left the connection
    pool (the first content byte as the client's HTTP layer sees it); :meth:`reset` before
    each run.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self.first_content: dict[str, float] = {}
        self.request_sent: dict[str, float] = {}

    def reset(self) -> None:
        self.first_content.clear()
        self.request_sent.clear()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")
        streaming = len(parts) >= 4 and parts[1] == "agents" and parts[3] == "messages"
        if streaming:
            self.request_sent[parts[2]] = time.perf_counter()
        response = await self._inner.handle_async_request(request)
        if streaming:
            stream = cast("httpx.AsyncByteStream", response.stream)
            response.stream = _TimedStream(stream, self, parts[2])
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


# One run of one scenario: per agent (ttft_s, duration_s), measured from the request.
Timings = list[tuple[float, float]]
#: Per agent of every run of the current round: (kind, scenario) -> seconds from the first
#: content chunk to the first text the reader got (the round loop keeps counted rounds).
ROUND_ADDED: dict[tuple[str, str], list[float]] = {}
#: The same for the seconds from the start of a run to its request reaching the transport.
ROUND_SENT: dict[tuple[str, str], list[float]] = {}


def _record_added(
    kind: str,
    agent_ids: list[str],
    t0: float,
    firsts: dict[str, float],
    clock: ChunkClock | None,
) -> None:
    if clock is None:
        return
    scenario = next(name for name, n in SCENARIOS.items() if n == len(agent_ids))
    for agent_id in agent_ids:
        ROUND_ADDED.setdefault((kind, scenario), []).append(
            firsts[agent_id] - clock.first_content[agent_id]
        )
        ROUND_SENT.setdefault((kind, scenario), []).append(clock.request_sent[agent_id] - t0)


async def direct(
    client: AsyncLetta, agent_ids: list[str], prompt: str, clock: ChunkClock | None = None
) -> Timings:
    """Stream from every agent at once with the SDK alone (the baseline)."""
    out: Timings = []
    firsts: dict[str, float] = {}
    if clock is not None:
        clock.reset()
    t0 = time.perf_counter()

    async def one(agent_id: str) -> None:
        first: float | None = None
        stream = await client.agents.messages.create(
            agent_id=agent_id,
            messages=[{"role": "user", "content": prompt}],
            streaming=True,
            stream_tokens=True,
        )
        async for item in stream:
            if first is None and getattr(item, "message_type", None) == "assistant_message":
                firsts[agent_id] = now = time.perf_counter()
                first = now - t0
        if first is None:
            raise RuntimeError(f"agent {agent_id} streamed no text")
        out.append((first, time.perf_counter() - t0))

    async with anyio.create_task_group() as tg:
        for agent_id in agent_ids:
            tg.start_soon(one, agent_id)
    _record_added("direct", agent_ids, t0, firsts, clock)
    return out


async def fanout(
    client: AsyncLetta, agent_ids: list[str], prompt: str, clock: ChunkClock | None = None
) -> Timings:
    """The same streams through ``open_fanout`` and ``LettaSource``."""
    firsts: dict[str, float] = {}
    done: dict[str, float] = {}
    if clock is not None:
        clock.reset()
    t0 = time.perf_counter()
    sources = [LettaSource(client, agent_id) for agent_id in agent_ids]
    async with open_fanout(sources, prompt) as stream:
        async for event in stream:
            if event.agent_id is None:
                continue
            if event.type == "content" and event.agent_id not in firsts:
                firsts[event.agent_id] = time.perf_counter()
            elif event.is_terminal:
                if event.type != "agent_done":
                    raise RuntimeError(f"agent {event.agent_id} ended with {event.to_json()}")
                done[event.agent_id] = time.perf_counter() - t0
    _record_added("fanout", agent_ids, t0, firsts, clock)
    return [(firsts[a] - t0, done[a]) for a in agent_ids]


def _added_summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"median": None, "p99": None, "max": None, "samples": 0}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return {
        "median": round(1000 * statistics.median(ordered), 3),
        "p99": round(1000 * p99, 3),
        "max": round(1000 * ordered[-1], 3),
        "samples": len(ordered),
    }


def summary(timings: Timings) -> dict[str, Any]:
    return {
        "ttft_median_s": round(statistics.median(t for t, _ in timings), 6),
        "duration_median_s": round(statistics.median(d for _, d in timings), 6),
        "samples": len(timings),
    }


def paired_differences(rounds: list[tuple[Timings, Timings]]) -> list[float]:
    """Per round: the fan-out's median TTFT minus the direct median TTFT of the same round."""
    return [
        statistics.median(t for t, _ in f) - statistics.median(t for t, _ in d) for d, f in rounds
    ]


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval of the median (binomial order statistics)."""
    ordered = sorted(values)
    n = len(ordered)
    alpha = (1 - confidence) / 2
    # The largest k with P(Binomial(n, 1/2) < k) <= alpha: [x_(k), x_(n-k+1)] covers the median.
    k, tail = 0, 0.0
    while k < n:
        nxt = tail + math.comb(n, k) / 2**n
        if nxt > alpha:
            break
        tail = nxt
        k += 1
    if k == 0:
        return ordered[0], ordered[-1]  # too few rounds for this confidence: the full range
    return ordered[k - 1], ordered[n - k]


def compare(
    direct_t: Timings, fanout_t: Timings, rounds: list[tuple[Timings, Timings]]
) -> dict[str, Any]:
    base, ours = summary(direct_t), summary(fanout_t)
    overhead = ours["ttft_median_s"] - base["ttft_median_s"]
    allowed = max(0.05 * base["ttft_median_s"], 0.005)
    diffs = paired_differences(rounds)
    paired = statistics.median(diffs)
    low, high = median_interval(diffs)
    return {
        "direct": base,
        "fanout": ours,
        "ttft_ratio": round(ours["ttft_median_s"] / base["ttft_median_s"], 4),
        "duration_ratio": round(ours["duration_median_s"] / base["duration_median_s"], 4),
        "ttft_overhead_s": round(overhead, 6),
        "ttft_paired_overhead_median_s": round(paired, 6),
        "ttft_paired_overhead_ci95_s": [round(low, 6), round(high, 6)],
        "ttft_paired_overhead_rounds_s": [round(d, 6) for d in diffs],
        "ttft_allowed_s": round(allowed, 6),
        "pass": paired <= allowed,
        # Decided when the whole interval lies on one side of the allowance.
        "decided": high <= allowed or low > allowed,
    }


def run_order(round_no: int, scenarios: list[str], kinds: list[str]) -> list[tuple[str, str]]:
    """The runs of one round, counterbalanced over every four rounds (ABBA).

    A rotating order (the first version of this benchmark) makes each kind follow the same
    predecessor in most rounds: the fan-out of 1 agent always came after the direct run of 1
    agent, the direct run of 3 agents after a 1-agent run, and so on, and what ran just
    before moves TTFT by 100 ms or more on this server. Here both sides of a scenario run
    back to back, and which side goes first and which scenario goes first alternate.
    """
    if round_no % 2:
        scenarios = scenarios[::-1]
    if (round_no // 2) % 2:
        kinds = kinds[::-1]
    return [(scenario, kind) for scenario in scenarios for kind in kinds]


async def settle(client: AsyncLetta, agent_ids: list[str], pause_s: float) -> None:
    """Wait until no run of these agents is active on the server, then ``pause_s`` more."""
    deadline = time.monotonic() + 30
    while (await client.runs.list(agent_ids=agent_ids, active=True, limit=1)).items:
        if time.monotonic() > deadline:
            break
        await anyio.sleep(0.02)  # polling a real condition, with a deadline
    # The run is marked done before its last database writes finish: a short quiet gap.
    await anyio.sleep(pause_s)


async def wait_healthy(client: AsyncLetta, within_s: float = 120.0) -> None:
    """Poll the server's health endpoint (a real condition) until it answers, or give up."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            await client.health()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await anyio.sleep(1.0)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    load_start = round(os.getloadavg()[0], 2)
    base_url = args.base_url or default_base_url()
    connection = LettaConnection(base_url=base_url)
    timeout = httpx.Timeout(connection.timeout_s, connect=connection.connect_timeout_s)
    limits = httpx.Limits(
        max_connections=connection.max_connections,
        max_keepalive_connections=connection.max_connections,
    )
    # The client create_letta_client builds, with the chunk clock around its transport.
    clock = ChunkClock(httpx.AsyncHTTPTransport(limits=limits))
    client = AsyncLetta(
        base_url=base_url,
        api_key=connection.token(),
        timeout=timeout,
        max_retries=0,
        http_client=DefaultAsyncHttpxClient(transport=clock, timeout=timeout),
    )
    prompt = f"Describe the sea [[words={args.words} tps={args.tps}]]"
    agent_ids: list[str] = []
    try:
        for persona in PERSONAS:
            agent = await client.agents.create(
                name=f"bench-overhead-{uuid.uuid4().hex[:8]}",
                model=MODEL,
                embedding=EMBEDDING,
                memory_blocks=[
                    {"label": "persona", "value": persona},
                    {"label": "human", "value": "A benchmark."},
                ],
            )
            agent_ids.append(agent.id)
        kinds: dict[
            str, Callable[[AsyncLetta, list[str], str, ChunkClock | None], Awaitable[Timings]]
        ] = {
            "direct": direct,
            "fanout": fanout,
        }
        scenarios = {name: agent_ids[:n] for name, n in SCENARIOS.items()}
        results: dict[tuple[str, str], Timings] = {(s, k): [] for s in scenarios for k in kinds}
        per_round: dict[str, list[tuple[Timings, Timings]]] = {s: [] for s in scenarios}
        added: dict[tuple[str, str], list[float]] = {}
        sent: dict[tuple[str, str], list[float]] = {}
        round_no = 0
        failed = 0
        while round_no < args.warmup + args.rounds:
            this_round: dict[tuple[str, str], Timings] = {}
            ROUND_ADDED.clear()
            ROUND_SENT.clear()
            try:
                for scenario, kind in run_order(round_no, list(scenarios), list(kinds)):
                    # The server goes on working for a moment after a stream ends: start
                    # each run on a settled server, or a run pays for the one before it.
                    await settle(client, agent_ids, args.pause_s)
                    this_round[(scenario, kind)] = await kinds[kind](
                        client, scenarios[scenario], prompt, clock
                    )
            except Exception:
                failed += 1
                if failed > args.rounds:
                    raise
                await wait_healthy(client)
                continue
            round_no += 1
            if round_no > args.warmup:
                for key, timings in this_round.items():
                    results[key].extend(timings)
                for key, values in ROUND_ADDED.items():
                    added.setdefault(key, []).extend(values)
                for key, values in ROUND_SENT.items():
                    sent.setdefault(key, []).extend(values)
                for scenario in scenarios:
                    per_round[scenario].append(
                        (this_round[(scenario, "direct")], this_round[(scenario, "fanout")])
                    )
    finally:
        for agent_id in agent_ids:
            await client.agents.delete(agent_id)
        await client.close()

    report = {
        s: compare(results[(s, "direct")], results[(s, "fanout")], per_round[s]) for s in scenarios
    }
    for s in scenarios:
        report[s]["first_token_added_ms"] = _added_summary(added.get(("fanout", s), []))
        report[s]["direct_first_token_added_ms"] = _added_summary(added.get(("direct", s), []))
        # Context: from the start of a run to each request reaching the HTTP transport.
        report[s]["request_sent_ms"] = {
            kind: _added_summary(sent.get((kind, s), [])) for kind in ("direct", "fanout")
        }
    return {
        "benchmark": "letta_overhead",
        "first_token_added_ms": {
            s: {k: report[s]["first_token_added_ms"][k] for k in ("median", "p99")}
            for s in scenarios
        },
        "first_token_target_ms": {"median": 1.0, "p99": 5.0},
        "base_url": base_url,
        "rounds": args.rounds,
        "warmup_rounds": args.warmup,
        "tokens_per_s": args.tps,
        "words": args.words,
        "failed_rounds": failed,
        "criterion": "fanout median TTFT <= direct median TTFT + max(5%, 5 ms)",
        "method": "median of per-round paired differences, 95% CI by order statistics",
        "order": "counterbalanced (ABBA over 4 rounds), settled server before each run",
        "pause_s": args.pause_s,
        "scenarios": report,
        "verdict": "pass" if all(r["pass"] for r in report.values()) else "fail",
        # The server shares the machine: a high load average means noisy medians.
        "load_average_1m": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
    }


def _letta_body(tokens: int) -> bytes:
    # The frames' shape is letta 0.16.8's (see orchestrator/_simulator_stream.py).
    head = '{"id":"message-1","date":"2025-01-01T00:00:00Z","name":null,'
    frames = [head + '"message_type":"ping","run_id":"run-1"}']
    for k in range(tokens):
        content = json.dumps(f" word{k}")
        frames.append(
            head + '"message_type":"assistant_message","otid":"otid-1","sender_id":null,'
            '"step_id":"step-1","is_err":null,"seq_id":null,"run_id":"run-1",'
            f'"content":{content}}}'
        )
    frames.append('{"message_type":"stop_reason","stop_reason":"end_turn"}')
    usage = {
        "message_type": "usage_statistics",
        "completion_tokens": tokens,
        "prompt_tokens": 370,
        "total_tokens": tokens + 370,
        "step_count": 1,
    }
    frames.append(json.dumps(usage, separators=(",", ":")))
    frames.append("[DONE]")
    return "".join(f"data: {frame}\n\n" for frame in frames).encode()


async def client_only(args: argparse.Namespace) -> dict[str, Any]:
    """Client CPU per request and per token against an in-process mock of the server."""
    bodies = {0: _letta_body(0), args.tokens: _letta_body(args.tokens)}
    wanted = [0]

    def answer(request: httpx.Request) -> httpx.Response:
        body = bodies[wanted[0]]
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    client = AsyncLetta(base_url="http://letta.invalid", http_client=http, max_retries=0)

    async def sdk() -> None:
        stream = await client.agents.messages.create(
            agent_id="agent-1",
            messages=[{"role": "user", "content": "hi"}],
            streaming=True,
            stream_tokens=True,
        )
        async for _ in cast("AsyncIterator[object]", stream):
            pass

    async def source() -> None:
        async for _ in LettaSource(client, "agent-1").stream("hi"):
            pass

    async def through_fanout() -> None:
        async with open_fanout([LettaSource(client, "agent-1")], "hi") as stream:
            async for _ in stream:
                pass

    kinds: dict[str, Callable[[], Awaitable[None]]] = {
        "direct": sdk,
        "source": source,
        "fanout": through_fanout,
    }
    # Per (kind, tokens): the mean seconds per request of each block of requests.
    blocks: dict[tuple[str, int], list[float]] = {(k, n): [] for k in kinds for n in bodies}
    order = list(kinds)
    for block in range(args.rounds + 1):
        shift = block % len(order)
        for kind in order[shift:] + order[:shift]:
            for tokens in bodies:
                wanted[0] = tokens
                # CPU time: the machine is shared, and the client is one thread.
                started = time.process_time()
                for _ in range(args.requests):
                    await kinds[kind]()
                if block:  # the first block warms up
                    blocks[(kind, tokens)].append((time.process_time() - started) / args.requests)
    await client.close()
    out: dict[str, Any] = {}
    for kind in kinds:
        fixed = statistics.median(blocks[(kind, 0)])
        full = statistics.median(blocks[(kind, args.tokens)])
        out[kind] = {
            "per_request_ms": round(1000 * fixed, 3),
            "per_token_us": round(1e6 * (full - fixed) / args.tokens, 2),
        }
    return {
        "benchmark": "letta_overhead_client_only",
        "clock": "process_time",
        "tokens": args.tokens,
        "requests_per_block": args.requests,
        "blocks": args.rounds,
        "kinds": out,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base-url", default=None, help="Letta server [$LETTA_BASE_URL, stack]")
    parser.add_argument("--rounds", type=int, default=30, help="measured rounds per scenario")
    parser.add_argument("--warmup", type=int, default=1, help="rounds run but not counted")
    parser.add_argument("--tps", type=float, default=20.0, help="scripted model tokens/s")
    parser.add_argument("--words", type=int, default=12, help="words per answer")
    parser.add_argument("--pause-s", type=float, default=0.3, help="quiet gap before each run")
    parser.add_argument("--json", action="store_true", help="one line of JSON (default: indented)")
    parser.add_argument("--client-only", action="store_true", help="no server: client CPU only")
    parser.add_argument("--tokens", type=int, default=200, help="--client-only: tokens per answer")
    parser.add_argument("--requests", type=int, default=50, help="--client-only: per block")
    args = parser.parse_args()
    result = anyio.run(client_only if args.client_only else bench, args)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

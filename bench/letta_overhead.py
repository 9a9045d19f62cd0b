"""What the orchestrator adds on top of streaming from Letta directly.

Same Letta server, same agents, interleaved runs: time to first token (TTFT) and total
duration when streaming with ``letta_client`` directly vs through ``open_fanout`` with
``LettaSource``, for 1 agent and for 3 agents at once. Prints the medians, their ratios and
a verdict as ONE JSON object: the orchestrator passes when it adds no more than 5 % (or
5 ms, whichever is larger) to the median TTFT.

Needs a running Letta server with the scripted model (``orchestrator stack up``); the
agents it creates are deleted at the end. The scripted model streams at ``--tps`` tokens per
second so TTFT measures a real wait, not a buffer flush.

    .venv/bin/python bench/letta_overhead.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from letta_client import AsyncLetta

from orchestrator import LettaSource, open_fanout
from orchestrator._config import LettaConnection
from orchestrator._letta import create_letta_client, default_base_url

MODEL = "openai-proxy/scripted"
EMBEDDING = "openai/text-embedding-3-small"
PERSONAS = (
    "Optimist. You look for what could go right.",
    "Skeptic. You question every assumption.",
    "Historian. You answer with precedent.",
)

# One run of one scenario: per agent (ttft_s, duration_s), measured from the request.
Timings = list[tuple[float, float]]


async def direct(client: AsyncLetta, agent_ids: list[str], prompt: str) -> Timings:
    """Stream from every agent at once with the SDK alone (the baseline)."""
    out: Timings = []
    t0 = time.monotonic()

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
                first = time.monotonic() - t0
        if first is None:
            raise RuntimeError(f"agent {agent_id} streamed no text")
        out.append((first, time.monotonic() - t0))

    async with anyio.create_task_group() as tg:
        for agent_id in agent_ids:
            tg.start_soon(one, agent_id)
    return out


async def fanout(client: AsyncLetta, agent_ids: list[str], prompt: str) -> Timings:
    """The same streams through ``open_fanout`` and ``LettaSource``."""
    first: dict[str, float] = {}
    done: dict[str, float] = {}
    t0 = time.monotonic()
    sources = [LettaSource(client, agent_id) for agent_id in agent_ids]
    async with open_fanout(sources, prompt) as stream:
        async for event in stream:
            if event.agent_id is None:
                continue
            if event.type == "content" and event.agent_id not in first:
                first[event.agent_id] = time.monotonic() - t0
            elif event.is_terminal:
                if event.type != "agent_done":
                    raise RuntimeError(f"agent {event.agent_id} ended with {event.to_json()}")
                done[event.agent_id] = time.monotonic() - t0
    return [(first[a], done[a]) for a in agent_ids]


def summary(timings: Timings) -> dict[str, Any]:
    return {
        "ttft_median_s": round(statistics.median(t for t, _ in timings), 6),
        "duration_median_s": round(statistics.median(d for _, d in timings), 6),
        "samples": len(timings),
    }


def paired_overhead(rounds: list[tuple[Timings, Timings]]) -> float:
    # Runs next to each other see the same server load: the median of per-round
    # differences is less sensitive to load drift than the difference of medians.
    return statistics.median(
        statistics.median(t for t, _ in f) - statistics.median(t for t, _ in d) for d, f in rounds
    )


def compare(
    direct_t: Timings, fanout_t: Timings, rounds: list[tuple[Timings, Timings]]
) -> dict[str, Any]:
    base, ours = summary(direct_t), summary(fanout_t)
    overhead = ours["ttft_median_s"] - base["ttft_median_s"]
    allowed = max(0.05 * base["ttft_median_s"], 0.005)
    return {
        "direct": base,
        "fanout": ours,
        "ttft_ratio": round(ours["ttft_median_s"] / base["ttft_median_s"], 4),
        "duration_ratio": round(ours["duration_median_s"] / base["duration_median_s"], 4),
        "ttft_overhead_s": round(overhead, 6),
        "ttft_paired_overhead_median_s": round(paired_overhead(rounds), 6),
        "ttft_allowed_s": round(allowed, 6),
        "pass": overhead <= allowed,
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    load_start = round(os.getloadavg()[0], 2)
    base_url = args.base_url or default_base_url()
    client = create_letta_client(LettaConnection(base_url=base_url))
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
        kinds: dict[str, Callable[[AsyncLetta, list[str], str], Awaitable[Timings]]] = {
            "direct": direct,
            "fanout": fanout,
        }
        scenarios = {"1_agent": agent_ids[:1], "3_agents": agent_ids}
        results: dict[tuple[str, str], Timings] = {(s, k): [] for s in scenarios for k in kinds}
        per_round: dict[str, list[tuple[Timings, Timings]]] = {s: [] for s in scenarios}
        plan = [(s, k) for s in scenarios for k in kinds]
        for round_no in range(args.warmup + args.rounds):
            # Rotate the order every round: slow drift of the server (its growing message
            # history, other load) then hits both sides alike.
            shift = round_no % len(plan)
            this_round: dict[tuple[str, str], Timings] = {}
            for scenario, kind in plan[shift:] + plan[:shift]:
                this_round[(scenario, kind)] = await kinds[kind](
                    client, scenarios[scenario], prompt
                )
            if round_no >= args.warmup:
                for key, timings in this_round.items():
                    results[key].extend(timings)
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
    return {
        "benchmark": "letta_overhead",
        "base_url": base_url,
        "rounds": args.rounds,
        "warmup_rounds": args.warmup,
        "tokens_per_s": args.tps,
        "words": args.words,
        "criterion": "fanout median TTFT <= direct median TTFT + max(5%, 5 ms)",
        "scenarios": report,
        "verdict": "pass" if all(r["pass"] for r in report.values()) else "fail",
        # The server shares the machine: a high load average means noisy medians.
        "load_average_1m": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base-url", default=None, help="Letta server [$LETTA_BASE_URL, stack]")
    parser.add_argument("--rounds", type=int, default=10, help="measured rounds per scenario")
    parser.add_argument("--warmup", type=int, default=1, help="rounds run but not counted")
    parser.add_argument("--tps", type=float, default=20.0, help="scripted model tokens/s")
    parser.add_argument("--words", type=int, default=12, help="words per answer")
    parser.add_argument("--json", action="store_true", help="one line of JSON (default: indented)")
    args = parser.parse_args()
    result = anyio.run(bench, args)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

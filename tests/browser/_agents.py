"""The scripted agents the browser tests serve, and the exact text each one answers.

Each agent is a fresh :class:`~orchestrator.ScriptedSource` per fan-out, so the server's
behaviour is deterministic: a test knows every column's final text in advance.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from orchestrator import ScriptedDirectory, ScriptedSource


def words(text: str) -> list[str]:
    """``text`` as token deltas: each word with the spaces or newlines that follow it."""
    return re.findall(r"\S+\s*", text)


PLAIN = {
    "alpha": "Alpha answers first: the sky is blue because air scatters short waves most. " * 3,
    "beta": "Beta agrees and adds that sunsets are red for the very same reason. " * 3,
    "gamma": "Gamma notes that on Mars the daytime sky looks butterscotch instead. " * 3,
}

MARKDOWN = {
    "optimist": (
        "**Yes, with care.** A monorepo gives a small team:\n\n"
        "- one place for every change\n"
        "- atomic refactors across packages\n"
        "- a single CI setup\n\n"
        "| Size | Verdict |\n|---|---|\n| 2-10 people | go |\n| 50+ | plan tooling |\n\n"
        "Start with `make test` at the root.\n"
    ),
    "skeptic": (
        "**Maybe not.** Ask first what problem it solves.\n\n"
        "1. Build times grow with the repo.\n"
        "2. Access control gets coarse.\n"
        "3. Tooling must scale.\n\n"
        "```python\nif team_size < 10:\n    print('fine either way')\n```\n"
    ),
    "historian": (
        "Google and Facebook ran monorepos for decades; many open-source projects "
        "*split* theirs once contributors multiplied.\n\n"
        "> The record favours whatever the team can keep fast.\n"
    ),
}

#: Untrusted output: HTML and script that must be shown as text and never run.
XSS_TEXT = (
    "Look: <img src=x onerror=alert(1)> and "
    "<script>window.__pwned = 'script'; alert(2)</script> and "
    '<a href="javascript:alert(3)">a link</a> and [md link](javascript:alert(4)) and '
    "<svg onload=alert(5)></svg> the end."
)

#: What each agent answers when nothing interrupts it.
EXPECTED: dict[str, str] = {
    **PLAIN,
    **MARKDOWN,
    "xss": XSS_TEXT,
    "steady-1": "Steady one keeps counting: " + "tick " * 60,
    "steady-2": "Steady two keeps counting: " + "tock " * 60,
}


def _fixed(agent_id: str, delay_s: float, **extra: object) -> Callable[[str, str], ScriptedSource]:
    def make(key: str, label: str) -> ScriptedSource:
        return ScriptedSource(
            key,
            words(EXPECTED[agent_id]),
            delay_s=delay_s,
            label=label,
            **extra,  # type: ignore[arg-type]
        )

    return make


def _slow(key: str, label: str) -> ScriptedSource:
    # Streams for minutes: always mid-stream when a test presses Stop.
    return ScriptedSource(key, words("slow " * 5000), delay_s=0.04, label=label)


def create_directory() -> ScriptedDirectory:
    """The directory the test server serves (ids equal names equal labels by default)."""
    agents: dict[str, Callable[[str, str], ScriptedSource]] = {
        name: _fixed(name, 0.03) for name in PLAIN
    }
    agents["optimist"] = _fixed(
        "optimist",
        0.02,
        reasoning=["The user asks about repos; ", "list the upsides."],
        tool_calls=[
            {
                "name": "search_notes",
                "arguments": {"query": "monorepo"},
                "result": {"hits": 2, "top": "<b>not bold</b>"},
            }
        ],
    )
    agents["skeptic"] = _fixed("skeptic", 0.02)
    agents["historian"] = _fixed("historian", 0.02)
    agents["xss"] = _fixed(
        "xss",
        0.01,
        reasoning=["<img src=y onerror=alert(6)>"],
        tool_calls=[
            {
                "name": "<script>alert(7)</script>",
                "arguments": "<img src=z onerror=alert(8)>",
                "result": "<script>alert(9)</script>",
            }
        ],
    )
    agents["steady-1"] = _fixed("steady-1", 0.04)
    agents["steady-2"] = _fixed("steady-2", 0.04)
    agents["slow"] = _slow
    return ScriptedDirectory(agents)

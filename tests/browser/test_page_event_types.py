"""The page's list of event types is the protocol's: read from the real module by Node."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import get_args

from orchestrator import EventType

STREAM_JS = Path(__file__).resolve().parents[2] / "api" / "static" / "js" / "stream.js"


def test_the_page_knows_every_event_type_and_no_other() -> None:
    node = shutil.which("node")
    assert node, "node is needed to load the page's modules (it comes with the machine)"
    out = subprocess.run(
        [
            node,
            "--input-type=module",
            "-e",
            f"const m = await import({json.dumps(STREAM_JS.as_uri())});"
            "console.log(JSON.stringify(m.EVENT_TYPES));",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    page_types = json.loads(out.stdout)
    assert len(page_types) == len(set(page_types))
    assert set(page_types) == set(get_args(EventType))

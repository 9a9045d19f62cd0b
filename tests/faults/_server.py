"""The API served by a real uvicorn in its own thread and event loop, for the fault tests.

The fault tests load the server with many clients and then check that it returns to its
baseline: the number of asyncio tasks on *its* loop (the clients run on the test's loop, so
they are not counted) and the process's RSS. Inspection runs on the server's loop through
``call_soon_threadsafe``, never from a task, so it does not change what it measures.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import psutil
import uvicorn
from fastapi import FastAPI

from api import ApiSettings, create_app
from orchestrator import Event, FanOutHub, ScriptedDirectory
from tests._servers import bind_loopback
from tests._wait import wait_until_sync

T = TypeVar("T")


@dataclass
class ServerProbe:
    """A running server: where it listens, and ways to look inside it."""

    app: FastAPI
    base_url: str
    port: int
    directory: ScriptedDirectory
    loop: asyncio.AbstractEventLoop
    done: dict[str, Event] = field(default_factory=dict)
    """Every ``fanout_done`` the hub retained, by fan-out id (an observer records them)."""

    def call(self, fn: Callable[[], T], timeout_s: float = 30.0) -> T:
        """Run ``fn`` on the server's loop (between its callbacks) and return its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout_s)

    def tasks(self) -> int:
        """How many asyncio tasks exist on the server's loop (see :meth:`task_names`)."""
        return len(self.task_names())

    def task_names(self) -> list[str]:
        """The names of the tasks on the server's loop.

        Leaves out sse-starlette's shutdown watcher: the first SSE response starts it, once
        for the loop's lifetime, so it is no leak and the baseline can be taken at start.
        """

        def names() -> list[str]:
            return sorted(
                t.get_name()
                for t in asyncio.all_tasks(self.loop)
                if getattr(t.get_coro(), "__qualname__", "") != "_shutdown_watcher"
            )

        return self.call(names)

    @property
    def hub(self) -> FanOutHub:
        """The app's hub (only touch it through :meth:`call`)."""
        hub: FanOutHub | None = self.app.state.api.hub
        assert hub is not None, "the app's lifespan is not running"
        return hub

    def active_fanouts(self) -> int:
        """Fan-outs still running in the hub."""
        return self.call(lambda: self.hub.active)


def rss_mb() -> float:
    """Resident set size of this process (server and clients), in MB."""
    return psutil.Process().memory_info().rss / 2**20


@contextmanager
def serve_in_thread(
    directory: ScriptedDirectory,
    settings: ApiSettings,
    *,
    sndbuf: int | None = None,
    access_log: bool = True,
) -> Iterator[ServerProbe]:
    """Serve a fresh app for ``directory`` with uvicorn in a thread until the block ends.

    ``sndbuf`` sets the kernel send buffer of the listening socket, which accepted
    connections inherit: a small one makes a client that stops reading block the server's
    writes after a few kilobytes instead of megabytes. ``access_log=False`` keeps pytest's
    log capture from holding a record per request (it would look like a leak in a soak).
    """
    app = create_app(settings, directory)
    sock = bind_loopback(sndbuf=sndbuf)
    port = sock.getsockname()[1]
    # log_config=None: uvicorn's loggers propagate to the root logger, so pytest's caplog
    # sees a traceback the server would log.
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="info",
        access_log=access_log,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    loops: list[asyncio.AbstractEventLoop] = []
    failures: list[BaseException] = []

    async def main() -> None:
        loops.append(asyncio.get_running_loop())
        await server.serve([sock])

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    thread = threading.Thread(target=run, name="fault-server", daemon=True)
    thread.start()
    try:
        wait_until_sync(
            lambda: server.started or bool(failures) or not thread.is_alive(), "uvicorn"
        )
        assert not failures, f"the server failed to start: {failures!r}"
        assert server.started
        probe = ServerProbe(app, f"http://127.0.0.1:{port}", port, directory, loops[0])

        def record(event: Event) -> None:
            if event.type == "fanout_done":
                probe.done[event.fanout_id] = event

        probe.call(lambda: probe.hub.add_observer(record))
        yield probe
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        assert not thread.is_alive(), "the server thread did not stop"
        assert not failures, f"the server failed: {failures!r}"


def tracebacks(records: list[logging.LogRecord]) -> list[str]:
    """Log records that carry a traceback, formatted for a failure message."""
    return [f"{r.name} {r.levelname}: {r.getMessage()}" for r in records if r.exc_info]

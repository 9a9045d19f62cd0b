"""The processes of the local stack: started in their own group, stopped by pid and start time.

A pid is only trusted together with its start time (``/proc/<pid>/stat``), so a recycled pid
is never signalled; servers run in their own session, so stopping one stops its children.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from ._errors import StackError

__all__ = [
    "alive",
    "http_ok",
    "port_is_open",
    "reap_children",
    "spawn",
    "start_ticks",
    "stop_group",
    "wait_http",
]


def start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or ``None`` if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) follows the parenthesised command name.
    return int(stat.rsplit(")", 1)[1].split()[19])


def alive(pid: int | None, ticks: int | None) -> bool:
    """True when ``pid`` runs (not a zombie) and, given ``ticks``, is the same process."""
    if pid is None:
        return False
    current = start_ticks(pid)
    if current is None:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z" and (ticks is None or current == ticks)


# Popen objects of the servers this process started: kept so that they are never
# garbage-collected while the server runs (Popen.__del__ would warn).
_CHILDREN: list[subprocess.Popen[bytes]] = []


def spawn(args: list[str], env: dict[str, str], log: Path) -> tuple[int, int | None]:
    """Start a server in its own session, output appended to ``log``: ``(pid, ticks)``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh:
        fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(args)}\n")
        fh.flush()
        proc = subprocess.Popen(
            args,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so `down` can stop it whole
        )
    reap_children()
    _CHILDREN.append(proc)
    return proc.pid, start_ticks(proc.pid)


def reap_children() -> None:
    """Collect the servers this process started that have exited."""
    # Collect servers that have exited (stopped, or killed by someone else) through their
    # Popen objects, so those know it and never warn "still running" at interpreter exit.
    for proc in list(_CHILDREN):
        if proc.poll() is not None:
            _CHILDREN.remove(proc)


def stop_group(pid: int | None, ticks: int | None, timeout: float = 15.0) -> None:
    """SIGTERM the process group of ``pid`` (if it still is that process), SIGKILL after ``timeout``."""
    if not alive(pid, ticks):
        return
    assert pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            reap_children()  # our own children become zombies until reaped
            if not alive(pid, ticks):
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    finally:
        reap_children()


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when ``GET url`` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_http(url: str, pid: int, ticks: int | None, timeout: float, step: str, log: Path) -> None:
    """Wait until ``url`` answers 2xx; :class:`StackError` if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_ok(url):
            return
        if not alive(pid, ticks):
            raise StackError(
                step, f"the process exited before {url} answered", log=log, fix="read the log"
            )
        time.sleep(0.25)
    raise StackError(
        step,
        f"{url} did not answer within {timeout:.0f} s",
        log=log,
        fix="read the log; raise the timeout or check the port",
    )


def port_is_open(port: int) -> bool:
    """True when something accepts TCP connections on loopback ``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0

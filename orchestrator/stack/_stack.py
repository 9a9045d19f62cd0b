"""The local Letta stack: PostgreSQL, Redis, the scripted model server and ``letta server``.

Everything lives in one folder, the stack's home: ``--home`` or ``$LETTA_FANOUT_STACK_DIR``,
else ``./.letta`` in the working directory (git-ignored). It holds the
server's venv, the sdist cache, the PostgreSQL cluster, ``logs/`` and
``stack.json`` (pids, ports, log paths). :func:`stack_up` is idempotent: a
second call reuses whatever still runs. :func:`stack_down` stops exactly the
processes the stack started, by pid and process group.

Use :func:`ensure_stack` from async code (tests) and :func:`stack_up` /
:func:`stack_down` / :func:`stack_status` from sync code (the CLI).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio

from ._errors import StackError
from ._install import LETTA_VERSION, ServerInstall
from ._postgres import Postgres
from ._process import alive as _alive
from ._process import http_ok as _http_ok
from ._process import port_is_open as _port_is_open
from ._process import spawn as _spawn
from ._process import stop_group as _stop_group
from ._process import wait_http as _wait_http
from ._redis import (
    RedisTarget,
    parse_redis_url,
    redis_ping,
    redis_server_args,
    redis_server_bin,
)

__all__ = [
    "DEFAULT_LETTA_PORT",
    "DEFAULT_MODEL_PORT",
    "DEFAULT_PG_PORT",
    "DEFAULT_REDIS_PORT",
    "PROVIDER_ENV_VARS",
    "STACK_COMPONENTS",
    "ComponentStatus",
    "StackConfig",
    "StackError",
    "StackInfo",
    "ensure_stack",
    "stack_down",
    "stack_log",
    "stack_status",
    "stack_up",
]

DEFAULT_LETTA_PORT = 8283
DEFAULT_PG_PORT = 55432
DEFAULT_MODEL_PORT = 8799
#: The stack's own redis-server; far from the 6379 of a system Redis on the same machine.
DEFAULT_REDIS_PORT = 56379

PROVIDER_ENV_VARS = (
    "ANTHROPIC_API_KEY",
    "AZURE_API_KEY",
    "AZURE_BASE_URL",
    "AZURE_API_VERSION",
    "GEMINI_API_KEY",
    "GROQ_API_KEY",
    "TOGETHER_API_KEY",
    "MISTRAL_API_KEY",
    "DEEPSEEK_API_KEY",
    "XAI_API_KEY",
    "OPENROUTER_API_KEY",
    "OLLAMA_BASE_URL",
    "VLLM_API_BASE",
    "LMSTUDIO_BASE_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
)
"""Provider variables passed through to ``letta server`` when set in the environment."""

# Keep the server quiet and offline: no telemetry, no tracing exporters, no
# NLTK/tiktoken downloads that would wait on an unreachable network.
_QUIET_ENV = {
    "LETTA_TELEMETRY_ENABLE_DATADOG": "false",
    "LETTA_DISABLE_TRACING": "true",
    "DD_TRACE_ENABLED": "false",
    "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
    "DD_REMOTE_CONFIGURATION_ENABLED": "false",
    "OTEL_SDK_DISABLED": "true",
    "DO_NOT_TRACK": "1",
    "ANONYMIZED_TELEMETRY": "false",
    "HF_HUB_OFFLINE": "1",
    "PYTHONUNBUFFERED": "1",
}


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _default_home() -> Path:
    # Not found from __file__: in an installed wheel that is site-packages. The working
    # directory is the project for `make demo`, and anyone else sets the folder explicitly.
    env = os.environ.get("LETTA_FANOUT_STACK_DIR")
    return Path(env) if env else Path.cwd() / ".letta"


@dataclass(frozen=True)
class StackConfig:
    """Where and how the stack runs. Every field has an ``LETTA_FANOUT_*`` env default.

    ``openai_base_url`` set means: use that OpenAI-compatible provider instead of
    the scripted model server (which is then not started). ``redis_url`` set means: the
    Letta server uses that Redis and the stack starts no ``redis-server`` of its own
    (which otherwise listens on ``redis_port``).
    """

    home: Path = field(default_factory=_default_home)
    letta_port: int = field(
        default_factory=lambda: _env_int("LETTA_FANOUT_LETTA_PORT", DEFAULT_LETTA_PORT)
    )
    pg_port: int = field(default_factory=lambda: _env_int("LETTA_FANOUT_PG_PORT", DEFAULT_PG_PORT))
    model_port: int = field(
        default_factory=lambda: _env_int("LETTA_FANOUT_MODEL_PORT", DEFAULT_MODEL_PORT)
    )
    redis_port: int = field(
        default_factory=lambda: _env_int("LETTA_FANOUT_REDIS_PORT", DEFAULT_REDIS_PORT)
    )
    redis_url: str | None = field(
        default_factory=lambda: os.environ.get("LETTA_FANOUT_REDIS_URL") or None
    )
    openai_base_url: str | None = field(
        default_factory=lambda: os.environ.get("LETTA_FANOUT_OPENAI_BASE_URL") or None
    )
    openai_api_key: str | None = field(
        default_factory=lambda: os.environ.get("LETTA_FANOUT_OPENAI_API_KEY") or None
    )
    python: str = field(
        default_factory=lambda: (
            os.environ.get("LETTA_FANOUT_PYTHON")
            or str(getattr(sys, "_base_executable", sys.executable))
        )
    )
    extra_env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout_s: float = 180.0

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def state_file(self) -> Path:
        return self.home / "stack.json"

    @property
    def scripted(self) -> bool:
        return self.openai_base_url is None

    @property
    def redis(self) -> RedisTarget:
        """The Redis the Letta server is given (``redis_url``, else the stack's own)."""
        if self.redis_url is not None:
            return parse_redis_url(self.redis_url)
        return RedisTarget("127.0.0.1", self.redis_port)


@dataclass(frozen=True)
class StackInfo:
    """What runs where; ``base_url`` is the Letta server to give ``AsyncLetta``.

    ``redis_url`` is the Redis the Letta server uses (``redis://host:port``); ``redis_pid``
    is the stack's own ``redis-server``, ``None`` when it was given with ``--redis-url``.
    """

    base_url: str
    letta_port: int
    letta_pid: int
    pg_port: int
    pg_pid: int
    pg_uri: str
    model_base_url: str
    model_pid: int | None
    redis_url: str
    redis_pid: int | None
    scripted: bool
    letta_version: str
    home: str
    logs: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ComponentStatus:
    """One line of ``stack status``."""

    name: str
    pid: int | None
    running: bool
    address: str
    healthy: bool
    log: str


# --- state -----------------------------------------------------------------


def _read_state(config: StackConfig) -> dict[str, Any]:
    try:
        data = json.loads(config.state_file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(config: StackConfig, state: Mapping[str, Any]) -> None:
    config.home.mkdir(parents=True, exist_ok=True)
    tmp = config.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(config.state_file)


def _install(config: StackConfig) -> ServerInstall:
    return ServerInstall(config.home, config.python, config.logs / "install.log")


def _postgres(config: StackConfig, install: ServerInstall) -> Postgres:
    return Postgres(
        install.pg_bin_dir(), config.home / "pg", config.pg_port, config.logs / "postgres.log"
    )


def _letta_env(
    config: StackConfig, pg_uri: str, model_base_url: str, redis: RedisTarget
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "LETTA_", "VIRTUAL_ENV", "PYTHON"))
    }
    env.update(_QUIET_ENV)
    for name in PROVIDER_ENV_VARS:
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(
        {
            "LETTA_PG_URI": pg_uri,
            "LETTA_DIR": str(config.home / "letta-home"),
            "OPENAI_BASE_URL": model_base_url,
            "OPENAI_API_KEY": config.openai_api_key or "scripted-model-needs-no-key",
            "LETTA_REDIS_HOST": redis.host,
            "LETTA_REDIS_PORT": str(redis.port),
            "TIKTOKEN_CACHE_DIR": str(config.home / "cache" / "tiktoken"),
            "NLTK_DATA": str(config.home / "cache" / "nltk"),
        }
    )
    env.update(config.extra_env)
    return env


# --- public API --------------------------------------------------------------


@contextlib.contextmanager
def _locked(config: StackConfig) -> Iterator[None]:
    # Several test sessions may bring the stack up at once: one at a time.
    config.home.mkdir(parents=True, exist_ok=True)
    with (config.home / "stack.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def stack_up(
    config: StackConfig | None = None, *, echo: Callable[[str], None] | None = None
) -> StackInfo:
    """Bring the stack up (install on first use) and return where it runs.

    Idempotent and safe to call from several processes at once: running
    components are reused. Raises :class:`StackError` naming the failed step,
    its log file and a fix.
    """
    config = config or StackConfig()
    with _locked(config):
        return _up(config, echo or (lambda _msg: None))


def _up(config: StackConfig, say: Callable[[str], None]) -> StackInfo:
    config.logs.mkdir(parents=True, exist_ok=True)
    state = _read_state(config)

    install = _install(config)
    if not install.is_installed():
        say(f"installing letta=={LETTA_VERSION} into {install.venv} (first run, a few minutes)")
    install.ensure_installed()

    pg = _postgres(config, install)
    pg.ensure_initialised()
    pg_pid = pg.start()
    pg.ensure_database()
    say(f"postgres: 127.0.0.1:{pg.port} (pid {pg_pid})")
    schema_marker = pg.data_dir / "letta-fanout-schema"
    if not schema_marker.exists():
        say("schema: alembic upgrade head")
    install.ensure_schema(pg.uri, schema_marker)

    model_log = config.logs / "modelserver.log"
    model_pid: int | None = None
    model_ticks: int | None = None
    if config.scripted:
        model_base_url = f"http://127.0.0.1:{config.model_port}/v1"
        old = state.get("model") or {}
        if (
            old.get("port") == config.model_port
            and _alive(old.get("pid"), old.get("ticks"))
            and _http_ok(f"{model_base_url}/models")
        ):
            model_pid, model_ticks = old["pid"], old.get("ticks")
        else:
            _stop_group(old.get("pid"), old.get("ticks"))
            if _http_ok(f"{model_base_url}/models"):
                raise StackError(
                    "model server: start",
                    f"port {config.model_port} is taken by another process",
                    fix="free it or choose --model-port / LETTA_FANOUT_MODEL_PORT",
                )
            model_pid, model_ticks = _spawn(
                [
                    sys.executable,
                    "-m",
                    "orchestrator.testing._modelserver",
                    "--port",
                    str(config.model_port),
                ],
                {**os.environ, "PYTHONUNBUFFERED": "1"},
                model_log,
            )
            _wait_http(
                f"{model_base_url}/models",
                model_pid,
                model_ticks,
                30,
                "model server: start",
                model_log,
            )
        say(f"model server: {model_base_url} (pid {model_pid})")
    else:
        assert config.openai_base_url is not None
        model_base_url = config.openai_base_url
        _stop_group((state.get("model") or {}).get("pid"), (state.get("model") or {}).get("ticks"))

    redis, redis_pid, redis_ticks = _up_redis(config, state, say)

    letta_log = config.logs / "letta.log"
    base_url = f"http://127.0.0.1:{config.letta_port}"
    health = f"{base_url}/v1/health/"
    old_letta = state.get("letta") or {}
    same_setup = (
        old_letta.get("port") == config.letta_port
        and old_letta.get("model_base_url") == model_base_url
        and old_letta.get("redis_url") == redis.url
    )
    if same_setup and _alive(old_letta.get("pid"), old_letta.get("ticks")) and _http_ok(health):
        letta_pid, letta_ticks = old_letta["pid"], old_letta.get("ticks")
    else:
        _stop_group(old_letta.get("pid"), old_letta.get("ticks"))
        if _http_ok(health, timeout=1.0):
            raise StackError(
                "letta server: start",
                f"port {config.letta_port} is taken by another process",
                fix="free it or choose --letta-port / LETTA_FANOUT_LETTA_PORT",
            )
        say("letta server: starting (about 15 s)")
        letta_pid, letta_ticks = _spawn(
            [
                str(install.venv / "bin" / "letta"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(config.letta_port),
            ],
            _letta_env(config, pg.uri, model_base_url, redis),
            letta_log,
        )
        _wait_http(
            health,
            letta_pid,
            letta_ticks,
            config.startup_timeout_s,
            "letta server: start",
            letta_log,
        )
    logs = {
        "install": str(install.log_file),
        "postgres": str(pg.log_file),
        "model": str(model_log),
        "redis": str(config.logs / "redis.log"),
        "letta": str(letta_log),
    }
    _write_state(
        config,
        {
            "letta": {
                "pid": letta_pid,
                "ticks": letta_ticks,
                "port": config.letta_port,
                "base_url": base_url,
                "model_base_url": model_base_url,
                "redis_url": redis.url,
            },
            "model": (
                {"pid": model_pid, "ticks": model_ticks, "port": config.model_port}
                if config.scripted
                else None
            ),
            "postgres": {"pid": pg_pid, "port": pg.port, "uri": pg.uri, "data": str(pg.data_dir)},
            "redis": {
                "pid": redis_pid,
                "ticks": redis_ticks,
                "port": redis.port,
                "url": redis.url,
                "external": config.redis_url is not None,
            },
            "logs": logs,
            "letta_version": LETTA_VERSION,
        },
    )
    say(f"letta server: {base_url} (pid {letta_pid})")
    return StackInfo(
        base_url=base_url,
        letta_port=config.letta_port,
        letta_pid=letta_pid,
        pg_port=pg.port,
        pg_pid=pg_pid,
        pg_uri=pg.uri,
        model_base_url=model_base_url,
        model_pid=model_pid,
        redis_url=redis.url,
        redis_pid=redis_pid,
        scripted=config.scripted,
        letta_version=LETTA_VERSION,
        home=str(config.home),
        logs=logs,
    )


def stack_down(
    config: StackConfig | None = None, *, echo: Callable[[str], None] | None = None
) -> None:
    """Stop the Letta server, the model server, Redis and PostgreSQL that the stack started."""
    config = config or StackConfig()
    with _locked(config):
        _down(config, echo or (lambda _msg: None))


def _down(config: StackConfig, say: Callable[[str], None]) -> None:
    state = _read_state(config)
    for name in ("letta", "model", "redis"):
        entry = state.get(name) or {}
        if entry.get("pid"):
            _stop_group(entry.get("pid"), entry.get("ticks"))
            say(f"{name}: stopped (pid {entry['pid']})")
    install = _install(config)
    if install.venv_python.exists() and (config.home / "pg" / "data").exists():
        pg = Postgres(
            install.pg_bin_dir(),
            config.home / "pg",
            int((state.get("postgres") or {}).get("port") or config.pg_port),
            config.logs / "postgres.log",
        )
        if pg.running_pid() is not None or (pg.data_dir / "postmaster.pid").exists():
            pg.stop()
            say("postgres: stopped")
    if state:
        _write_state(config, {"logs": state.get("logs", {})})


def stack_status(config: StackConfig | None = None) -> list[ComponentStatus]:
    """Report each component: pid, whether it runs, its address and health."""
    config = config or StackConfig()
    state = _read_state(config)
    logs: dict[str, str] = state.get("logs") or {}
    out: list[ComponentStatus] = []
    pg_state = state.get("postgres") or {}
    pg_port = int(pg_state.get("port") or config.pg_port)
    pidfile = config.home / "pg" / "data" / "postmaster.pid"
    pg_pid: int | None = None
    with contextlib.suppress(OSError, ValueError):
        pg_pid = int(pidfile.read_text().split("\n", 1)[0])
    pg_running = _alive(pg_pid, None)
    out.append(
        ComponentStatus(
            "postgres",
            pg_pid,
            pg_running,
            f"127.0.0.1:{pg_port}",
            pg_running and _port_is_open(pg_port),
            logs.get("postgres", str(config.logs / "postgres.log")),
        )
    )
    out.append(_redis_status(config, state, logs))
    # The two HTTP servers the stack started itself: (name, default port, health path, log).
    servers = (
        ("model", config.model_port, "/v1", "/v1/models", "modelserver.log"),
        ("letta", config.letta_port, "", "/v1/health/", "letta.log"),
    )
    for name, default_port, prefix, health, log_name in servers:
        entry = state.get(name) or {}
        port = int(entry.get("port") or default_port)
        running = _alive(entry.get("pid"), entry.get("ticks"))
        out.append(
            ComponentStatus(
                name,
                entry.get("pid"),
                running,
                f"http://127.0.0.1:{port}{prefix}",
                running and _http_ok(f"http://127.0.0.1:{port}{health}"),
                logs.get(name, str(config.logs / log_name)),
            )
        )
    return out


def _redis_status(
    config: StackConfig, state: Mapping[str, Any], logs: Mapping[str, str]
) -> ComponentStatus:
    entry = state.get("redis") or {}
    log = logs.get("redis", str(config.logs / "redis.log"))
    if entry.get("external"):
        # Not ours: it runs when it answers, and it has no pid we know.
        target = parse_redis_url(str(entry.get("url")))
        ok = redis_ping(target)
        return ComponentStatus("redis", None, ok, target.url, ok, log)
    port = int(entry.get("port") or config.redis_port)
    target = RedisTarget("127.0.0.1", port)
    running = _alive(entry.get("pid"), entry.get("ticks"))
    return ComponentStatus(
        "redis", entry.get("pid"), running, target.url, running and redis_ping(target), log
    )


def _up_redis(
    config: StackConfig, state: Mapping[str, Any], say: Callable[[str], None]
) -> tuple[RedisTarget, int | None, int | None]:
    # The given server, or the stack's own one (reused while it runs on the same port).
    old = state.get("redis") or {}
    log = config.logs / "redis.log"
    target = config.redis
    if config.redis_url is not None:
        if not old.get("external"):
            _stop_group(old.get("pid"), old.get("ticks"))
        if not redis_ping(target, timeout=3.0):
            raise StackError(
                "redis: --redis-url",
                f"{target.url} does not answer PING",
                fix="start that Redis, or leave --redis-url out to let the stack run its own",
            )
        say(f"redis: {target.url} (given, not started by the stack)")
        return target, None, None
    if (
        not old.get("external")
        and old.get("port") == config.redis_port
        and _alive(old.get("pid"), old.get("ticks"))
        and redis_ping(target)
    ):
        pid, ticks = int(old["pid"]), old.get("ticks")
    else:
        if not old.get("external"):
            _stop_group(old.get("pid"), old.get("ticks"))
        if redis_ping(target) or _port_is_open(config.redis_port):
            raise StackError(
                "redis: start",
                f"port {config.redis_port} is taken by another process",
                fix="free it, choose --redis-port / LETTA_FANOUT_REDIS_PORT, "
                "or use that server with --redis-url",
            )
        data_dir = config.home / "redis"
        data_dir.mkdir(parents=True, exist_ok=True)
        pid, ticks = _spawn(
            redis_server_args(redis_server_bin(log), config.redis_port, data_dir),
            dict(os.environ),
            log,
        )
        deadline = time.monotonic() + 15
        while not redis_ping(target):
            if not _alive(pid, ticks):
                raise StackError(
                    "redis: start", "redis-server exited at start", log=log, fix="read the log"
                )
            if time.monotonic() > deadline:
                raise StackError("redis: start", f"{target.url} did not answer PING", log=log)
            time.sleep(0.05)
    say(f"redis: {target.url} (pid {pid})")
    return target, pid, ticks


STACK_COMPONENTS = ("letta", "model", "postgres", "redis", "install")
_LOG_NAMES = {"model": "modelserver.log"}


def stack_log(component: str, config: StackConfig | None = None) -> Path:
    """The log file of ``component`` (one of :data:`STACK_COMPONENTS`); may not exist yet."""
    if component not in STACK_COMPONENTS:
        raise ValueError(f"unknown stack component {component!r}; one of {STACK_COMPONENTS}")
    config = config or StackConfig()
    known = (_read_state(config).get("logs") or {}).get(component)
    return Path(known) if known else config.logs / _LOG_NAMES.get(component, f"{component}.log")


async def ensure_stack(config: StackConfig | None = None) -> StackInfo:
    """Async twin of :func:`stack_up` (runs it in a worker thread)."""
    return await anyio.to_thread.run_sync(lambda: stack_up(config))

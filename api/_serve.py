"""``orchestrator serve``: run the HTTP API with uvicorn.

The command lives with the app it serves. The ``orchestrator`` command finds it through the
``orchestrator.cli`` entry-point group (``register``), so the library never imports ``api``.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any

import typer

from orchestrator import AgentDirectory, ConfigError

__all__ = ["load_factory", "register", "serve"]


def load_factory(spec: str) -> AgentDirectory:
    """Call the factory named ``module:function`` and return the directory it builds.

    Raises :class:`ConfigError` when the name does not resolve or the result is no
    :class:`AgentDirectory`.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--scripted must look like 'module:function', got {spec!r}")
    try:
        factory: Any = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"--scripted {spec!r}: {exc}") from None
    directory = factory()
    if not isinstance(directory, AgentDirectory):
        raise ConfigError(f"--scripted {spec!r} returned {type(directory).__name__}, no directory")
    return directory


def serve(
    host: Annotated[
        str, typer.Option(envvar="ORCHESTRATOR_HOST", help="Bind address (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="ORCHESTRATOR_PORT", help="Port.")] = 8080,
    fd: Annotated[
        int | None,
        typer.Option(
            help="Serve on this already-listening socket (socket activation, tests) instead "
            "of binding --host/--port; --host is still checked as the bind address."
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="ORCHESTRATOR_API_KEY",
            help="Require 'Authorization: Bearer <key>'. Needed to bind a non-loopback address.",
        ),
    ] = None,
    letta_base_url: Annotated[
        str | None, typer.Option(envvar="LETTA_BASE_URL", help="The Letta server.")
    ] = None,
    letta_token: Annotated[
        str | None, typer.Option(envvar="LETTA_API_KEY", help="Token for the Letta server.")
    ] = None,
    letta_max_connections: Annotated[
        int,
        typer.Option(
            envvar="LETTA_MAX_CONNECTIONS",
            help="Connections to the Letta server at once: one per streaming agent of every "
            "running fan-out.",
        ),
    ] = 100,
    scripted: Annotated[
        str | None,
        typer.Option(
            envvar="ORCHESTRATOR_SCRIPTED",
            help="Testing/demo: serve scripted agents from a 'module:function' directory factory "
            "instead of a Letta server.",
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            help="Allow pages of this web origin (CORS, the WebSocket); repeatable. Off by default."
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            envvar="ORCHESTRATOR_ALLOWED_HOSTS",
            help="Also answer requests for this Host name (the server's public name behind a "
            "proxy); repeatable, '*.example.com' wildcards. Loopback names and a non-wildcard "
            "--host are always allowed.",
        ),
    ] = None,
    token_secret: Annotated[
        str | None,
        typer.Option(
            envvar="ORCHESTRATOR_TOKEN_SECRET",
            help="Secret that signs stream tokens (random per process by default; replicas "
            "behind one load balancer need the same one).",
        ),
    ] = None,
    max_body_bytes: Annotated[
        int, typer.Option(help="Largest request body (and WebSocket frame); 413 beyond.")
    ] = 1024 * 1024,
    send_timeout_s: Annotated[
        float, typer.Option(help="Drop a client that takes no data for this long.")
    ] = 30.0,
    limit_concurrency: Annotated[
        int, typer.Option(help="Connections at once; uvicorn answers 503 beyond.")
    ] = 1000,
    timeout_keep_alive: Annotated[
        int, typer.Option(help="Seconds an idle keep-alive connection stays open.")
    ] = 5,
    header_timeout_s: Annotated[
        float,
        typer.Option(help="Close a connection that sends no complete request head this long."),
    ] = 10.0,
    max_agents: Annotated[int, typer.Option(help="Agents per fan-out.")] = 16,
    max_active: Annotated[int, typer.Option(help="Fan-outs running at once (then 429).")] = 32,
    retention_s: Annotated[
        float, typer.Option(help="Seconds a finished fan-out stays resumable.")
    ] = 600.0,
    max_log_events: Annotated[
        int,
        typer.Option(
            help="Events kept per fan-out (in memory, and in Redis with --redis); a reader "
            "further behind than that gets 410."
        ),
    ] = 10_000,
    ping_s: Annotated[float, typer.Option(help="SSE keep-alive interval.")] = 15.0,
    database_url: Annotated[
        str | None,
        typer.Option(
            envvar="ORCHESTRATOR_DATABASE_URL",
            help="The SQL database of sessions: sqlite:///PATH or postgresql://... "
            "(default: SQLite at ./.orchestrator/state.db).",
        ),
    ] = None,
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis",
            envvar="ORCHESTRATOR_REDIS_URL",
            help="Share fan-outs with other replicas through this Redis (redis://...): any "
            "replica serves, resumes and cancels any fan-out (docs/deployment.md).",
        ),
    ] = None,
    lease_s: Annotated[
        float, typer.Option(help="With --redis: seconds before a dead replica's fan-outs move.")
    ] = 5.0,
    redis_max_connections: Annotated[
        int,
        typer.Option(
            help="With --redis: connections at most (one per fan-out read for another "
            "replica, plus a few)."
        ),
    ] = 256,
    replica_id: Annotated[
        str | None,
        typer.Option(envvar="ORCHESTRATOR_REPLICA_ID", help="With --redis: this replica's name."),
    ] = None,
    letta_background: Annotated[
        bool | None,
        typer.Option(
            "--letta-background/--no-letta-background",
            help="Background Letta runs (resumable; needs Redis on the Letta server). "
            "Default: on with --redis.",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the HTTP API (SSE, WebSocket, REST control, the panel page)."""
    import uvicorn

    from ._app import create_app
    from ._settings import ApiSettings, check_bind
    from ._transport import create_http_protocol

    try:
        settings = ApiSettings(
            api_key=api_key,
            cors_origins=tuple(cors_origin or ()),
            allowed_hosts=_allowed_hosts(host, allowed_host or []),
            token_secret=token_secret,
            max_body_bytes=max_body_bytes,
            send_timeout_s=send_timeout_s,
            letta_base_url=letta_base_url,
            letta_token=letta_token,
            letta_max_connections=letta_max_connections,
            database_url=database_url,
            redis_url=redis,
            lease_s=lease_s,
            redis_max_connections=redis_max_connections,
            replica_id=replica_id,
            letta_background=letta_background,
            max_agents=max_agents,
            max_active_fanouts=max_active,
            retention_s=retention_s,
            max_log_events=max_log_events,
            ping_s=ping_s,
        )
        check_bind(host, settings)
        if header_timeout_s <= 0:
            raise ConfigError(f"--header-timeout-s must be > 0, got {header_timeout_s}")
        directory = load_factory(scripted) if scripted else None
        if directory is None and not letta_base_url:
            raise ConfigError("set --letta-base-url (LETTA_BASE_URL) or --scripted module:function")
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    app = create_app(settings, directory)
    limits: dict[str, Any] = {
        "log_level": log_level,
        "lifespan": "on",
        "http": create_http_protocol(header_timeout_s=header_timeout_s),
        "limit_concurrency": limit_concurrency,
        "timeout_keep_alive": timeout_keep_alive,
        # The largest request head h11 buffers (httptools has its own fixed cap).
        "h11_max_incomplete_event_size": 64 * 1024,
        "ws_max_size": max_body_bytes,
    }
    if fd is not None:
        uvicorn.run(app, fd=fd, **limits)
    else:
        uvicorn.run(app, host=host, port=port, **limits)


def _allowed_hosts(bind: str, extra: list[str]) -> tuple[str, ...]:
    # A server bound to a named address answers to that name; 0.0.0.0 and :: are no name
    # a client would use, so those need --allowed-host.
    from ._settings import is_loopback

    hosts = list(extra)
    wildcard = bind.strip("[]") in ("", "0.0.0.0", "::")
    if not wildcard and not is_loopback(bind) and bind not in hosts:
        hosts.append(bind)
    return tuple(hosts)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``orchestrator`` command (the ``orchestrator.cli`` entry point)."""
    app.command("serve")(serve)

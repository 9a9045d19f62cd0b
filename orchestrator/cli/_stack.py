"""``orchestrator stack up|down|status|logs``: the local Letta stack from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from ..stack._stack import (
    STACK_COMPONENTS,
    StackConfig,
    StackError,
    stack_down,
    stack_log,
    stack_status,
    stack_up,
)

__all__ = ["stack_app"]

stack_app = typer.Typer(
    no_args_is_help=True,
    help="Run a local Letta server (letta 0.16.8 + PostgreSQL + Redis + the scripted model) in "
    "./.letta "
    "(or --home).",
)


@stack_app.callback()
def _home(
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            envvar="LETTA_FANOUT_STACK_DIR",
            help="The stack's folder (server venv, PostgreSQL data, logs) [default: ./.letta]",
        ),
    ] = None,
) -> None:
    # Every StackConfig of this process (and of the servers it starts) reads the variable.
    if home is not None:
        os.environ["LETTA_FANOUT_STACK_DIR"] = str(home.resolve())


def _config(
    letta_port: int | None = None,
    pg_port: int | None = None,
    model_port: int | None = None,
    openai_base_url: str | None = None,
    openai_api_key: str | None = None,
    env: list[str] | None = None,
    redis_port: int | None = None,
    redis_url: str | None = None,
) -> StackConfig:
    base = StackConfig()
    extra: dict[str, str] = {}
    for item in env or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--env wants KEY=VALUE, got {item!r}")
        extra[key] = value
    return StackConfig(
        home=base.home,
        letta_port=letta_port or base.letta_port,
        pg_port=pg_port or base.pg_port,
        model_port=model_port or base.model_port,
        redis_port=redis_port or base.redis_port,
        redis_url=redis_url or base.redis_url,
        openai_base_url=openai_base_url or base.openai_base_url,
        openai_api_key=openai_api_key or base.openai_api_key,
        python=base.python,
        extra_env=extra,
    )


def _fail(error: StackError) -> None:
    typer.secho(f"stack: {error}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@stack_app.command()
def up(
    letta_port: Annotated[
        int | None, typer.Option(help="Letta server port [env LETTA_FANOUT_LETTA_PORT, 8283]")
    ] = None,
    pg_port: Annotated[
        int | None, typer.Option(help="PostgreSQL port [env LETTA_FANOUT_PG_PORT, 55432]")
    ] = None,
    model_port: Annotated[
        int | None, typer.Option(help="Scripted model port [env LETTA_FANOUT_MODEL_PORT, 8799]")
    ] = None,
    redis_port: Annotated[
        int | None,
        typer.Option(help="The stack's own redis-server port [env LETTA_FANOUT_REDIS_PORT, 56379]"),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            help="Use this Redis (redis://HOST:PORT) instead of starting one "
            "[env LETTA_FANOUT_REDIS_URL]"
        ),
    ] = None,
    openai_base_url: Annotated[
        str | None,
        typer.Option(help="Use this OpenAI-compatible provider instead of the scripted model"),
    ] = None,
    openai_api_key: Annotated[
        str | None, typer.Option(help="API key for --openai-base-url")
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", help="Extra KEY=VALUE for the Letta server (repeatable)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the stack info as JSON")] = False,
) -> None:
    """Start the stack (installing it on first use) and print the Letta base URL."""
    config = _config(
        letta_port, pg_port, model_port, openai_base_url, openai_api_key, env, redis_port, redis_url
    )
    started = time.monotonic()
    try:
        info = stack_up(config, echo=lambda msg: typer.echo(msg, err=as_json))
    except StackError as error:
        _fail(error)
        return
    if as_json:
        typer.echo(json.dumps(info.to_json(), indent=2))
    else:
        typer.echo(f"ready in {time.monotonic() - started:.1f} s")
        typer.echo(info.base_url)


@stack_app.command()
def down() -> None:
    """Stop the processes the stack started (Letta server, model server, Redis, PostgreSQL)."""
    try:
        stack_down(StackConfig(), echo=typer.echo)
    except StackError as error:
        _fail(error)


@stack_app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """Say what runs where and whether it answers; exit 1 if the Letta server does not."""
    rows = stack_status(StackConfig())
    if as_json:
        typer.echo(json.dumps([row.__dict__ for row in rows], indent=2))
    else:
        for row in rows:
            state = "running" if row.running else "stopped"
            health = "healthy" if row.healthy else "not answering"
            pid = row.pid if row.pid is not None else "-"
            typer.echo(f"{row.name:<9} {state:<8} pid {pid!s:<8} {row.address:<28} {health}")
    if not any(row.name == "letta" and row.healthy for row in rows):
        raise typer.Exit(1)


@stack_app.command()
def logs(
    component: Annotated[
        str, typer.Argument(help=f"One of: {', '.join(STACK_COMPONENTS)}")
    ] = "letta",
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many lines")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep following")] = False,
) -> None:
    """Show the end of a component's log file."""
    try:
        path = stack_log(component)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    if not path.exists():
        typer.secho(f"no log yet: {path}", err=True)
        raise typer.Exit(1)
    if follow:
        os.execvp("tail", ["tail", "-n", str(lines), "-f", str(path)])
    result = subprocess.run(["tail", "-n", str(lines), str(path)], check=False)
    sys.exit(result.returncode)

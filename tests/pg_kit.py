"""A throwaway PostgreSQL server for the tests: Debian's ``postgresql`` run by pytest-postgresql's executor.

:func:`running_pg_server` starts one server (``initdb`` + ``pg_ctl start``) in a temporary directory and stops
it afterwards; the session-scoped ``pg_server`` fixture in ``tests/conftest.py`` is built on it, and
``store_url`` with the param ``"postgresql"`` gives each test a fresh database on it
(:meth:`PgServer.create_database`, about 0.1 s). ``pg_ctl`` is found in ``/usr/lib/postgresql/*/bin``
(Debian's layout; ``.ci/run`` installs the package when missing) or on ``PATH``. PostgreSQL refuses to
run as root, so as root (CI) the server runs as the ``postgres`` user through a small ``runuser`` wrapper.
The server is tuned for throwaway data (no fsync): durability across a machine crash is not tested here.
"""
from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from port_for import get_port
from pytest_postgresql.executors import PostgreSQLExecutor

from tests.kit import wait_until

#: how the tests look for pg_ctl, newest version first, then PATH
PG_CTL_GLOB = "/usr/lib/postgresql/*/bin/pg_ctl"
#: throwaway data: no fsync; enough connections for two hosts and their tests
SERVER_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
MISSING = ("PostgreSQL server binaries not found (looked for pg_ctl in /usr/lib/postgresql/*/bin and on PATH): "
           "install them with `apt-get install -y postgresql`")


def find_pg_ctl() -> str | None:
    """The newest ``pg_ctl`` in Debian's versioned directories, else the one on ``PATH``, else None."""
    found = sorted(glob.glob(PG_CTL_GLOB), key=lambda p: int(Path(p).parent.parent.name), reverse=True)
    return found[0] if found else shutil.which("pg_ctl")


@dataclass
class PgServer:
    """A running server: ``url(db)`` is a store URL for database ``db`` on it."""

    host: str
    port: int
    user: str = "postgres"
    _names: Iterator[int] = field(default_factory=itertools.count)

    def url(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True)

    def accepts_connections(self) -> bool:
        """True once the server is past its start-up (the TCP port opens before it takes connections)."""
        try:
            self._admin().close()
        except psycopg.OperationalError:
            return False
        return True

    def create_database(self) -> str:
        """A new empty database (``wb_<n>``); returns its store URL."""
        name = f"wb_{os.getpid()}_{next(self._names)}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database of ``url`` (closing whatever connections a test left open to it)."""
        name = url.rsplit("/", 1)[1]
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _as_postgres(pg_ctl: str, where: Path) -> str:
    """A ``pg_ctl`` that runs as the ``postgres`` user (PostgreSQL will not run as root), and ``where``
    handed to that user."""
    account = pwd.getpwnam("postgres")
    os.chown(where, account.pw_uid, account.pw_gid)
    wrapper = where.parent / f"{where.name}-pg_ctl"
    wrapper.write_text(f'#!/bin/sh\nexec runuser -u postgres -- "{pg_ctl}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper)


@contextmanager
def running_pg_server() -> Iterator[PgServer]:
    """Start a PostgreSQL server in a new temporary directory; stop it and remove the directory after."""
    pg_ctl = find_pg_ctl()
    if pg_ctl is None:
        raise FileNotFoundError(MISSING)
    base = Path(tempfile.mkdtemp(prefix="wb-pg-"))
    where = base / "pg"
    where.mkdir(mode=0o700)
    try:
        if os.geteuid() == 0:
            base.chmod(0o755)
            pg_ctl = _as_postgres(pg_ctl, where)
        port = get_port(None)
        assert port is not None
        executor = PostgreSQLExecutor(
            executable=pg_ctl, host="127.0.0.1", port=port, datadir=str(where / "data"),
            unixsocketdir=str(where), logfile=str(where / "server.log"), startparams="-w", dbname="postgres",
            user="postgres", postgres_options=SERVER_OPTIONS)
        executor.start()
        try:
            server = PgServer("127.0.0.1", port)
            wait_until(server.accepts_connections, 60, step=0.1, message=f"PostgreSQL (log: {where}/server.log)")
            yield server
        finally:
            executor.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)

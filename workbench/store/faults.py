"""Storage faults: the database could not be written or read for a reason outside the program.

:class:`StorageFault` is what :class:`~workbench.store.Store` raises for them, instead of the driver's
error: the disk is full (SQLite ``SQLITE_FULL``, PostgreSQL 53100), an I/O error (``SQLITE_IOERR``,
58030), the database stayed locked past the busy timeout and the retries (``SQLITE_BUSY``/``LOCKED``
after :func:`~workbench.store.db.retry` gave up; 55P03), the file or connection is read-only
(``SQLITE_READONLY``; 25006), the file is corrupt or not a database (``SQLITE_CORRUPT``/``NOTADB``)
or cannot be opened (``SQLITE_CANTOPEN``), the database server cannot be reached (SQLSTATE class 08,
or a connection that failed before the server said anything). A fault says which database and what to do; the work
itself can be tried again once the cause is gone (nothing half-written stays: the transaction rolled
back). Everything else (bad SQL, a constraint violated, a missing table) is a programming error and
stays the driver's exception. The rule is :func:`fault_kind`, by the driver's error code (SQLite's
primary result code, PostgreSQL's SQLSTATE), by its message only for drivers that give no code.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from workbench.store.errors import StoreError
from workbench.store.files import sqlite_path

#: SQLite primary result code -> kind
SQLITE_KINDS = {13: "disk_full", 10: "io_error", 5: "locked", 6: "locked", 8: "readonly", 11: "corrupt",
                26: "corrupt", 14: "cannot_open"}
#: PostgreSQL SQLSTATE -> kind
SQLSTATE_KINDS = {"53100": "disk_full", "58030": "io_error", "55P03": "locked", "25006": "readonly",
                  "XX001": "corrupt", "XX002": "corrupt", "08000": "unreachable", "08001": "unreachable",
                  "08003": "unreachable", "08004": "unreachable", "08006": "unreachable", "57P01": "unreachable",
                  "57P03": "unreachable"}
#: the message of a driver without codes -> kind (SQLite's wording)
MESSAGE_KINDS = (("database or disk is full", "disk_full"), ("disk i/o error", "io_error"),
                 ("database is locked", "locked"), ("database is busy", "locked"),
                 ("readonly database", "readonly"), ("disk image is malformed", "corrupt"),
                 ("file is not a database", "corrupt"), ("unable to open database file", "cannot_open"),
                 ("connection failed", "unreachable"), ("could not connect", "unreachable"),
                 ("server closed the connection", "unreachable"), ("connection refused", "unreachable"))
KINDS = ("disk_full", "io_error", "locked", "readonly", "corrupt", "cannot_open", "unreachable")


class StorageFault(StoreError):
    """The database at ``database`` could not be read or written for a storage reason (see the module).

    ``kind``: one of :data:`KINDS`; ``database``: the file (SQLite) or URL, password hidden;
    ``operation``: "open", "read" or "write"; ``detail``: the driver's message. The original error is
    ``__cause__``. Retrying the same call is safe once the cause is gone (see ``Store.writable()``).
    """

    def __init__(self, kind: str, database: str, operation: str = "write", detail: str = ""):
        self.kind, self.database, self.operation, self.detail = kind, database, operation, detail
        super().__init__(f"storage fault ({kind}) on {operation} of {database}: {detail}; {advice(kind, database)}")


def advice(kind: str, database: str) -> str:
    """What an operator does about a fault of ``kind`` on ``database``."""
    return {
        "disk_full": f"free disk space on the disk holding {database} (or raise its size limit); "
                     "nothing recorded is lost and writing resumes once there is room",
        "io_error": f"check the disk holding {database} (kernel log, SMART, the mount), then run "
                    "`workbench store check`; restore a backup (`workbench store restore BACKUP`) if it fails",
        "locked": f"another process held a write lock on {database} past the busy timeout and retries: find it "
                  f"(`fuser {database}` or `lsof {database}`) and let it finish or stop it",
        "readonly": f"{database} is read-only here: check the permissions of the file and its directory (SQLite "
                    "writes -wal and -shm files beside it) and that the filesystem is mounted read-write",
        "corrupt": f"stop the hosts and dashboards using {database} and restore a backup: "
                   "`workbench store restore BACKUP --db URL` (see `workbench store check`)",
        "cannot_open": f"check that {database}'s directory exists and this user may create files in it",
        "unreachable": f"check that the database server of {database} is running and reachable from here "
                       "(`pg_isready -h HOST -p PORT`) and that the URL's host, port, user and password are right",
    }.get(kind, "check the database")


def fault_kind(err: BaseException) -> str | None:
    """The :class:`StorageFault` kind of a driver error (a SQLAlchemy ``DBAPIError`` or the driver's own
    exception), or None when it is not a storage fault (a programming error)."""
    orig = err.orig if isinstance(err, DBAPIError) else err
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return SQLITE_KINDS.get(code & 0xFF)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(state, str):
        return SQLSTATE_KINDS.get(state)
    text = str(orig).lower()
    return next((kind for words, kind in MESSAGE_KINDS if words in text), None)


def database_name(url: URL) -> str:
    """How a fault names the database at ``url``: the SQLite file's path, else the URL (password hidden)."""
    path = sqlite_path(url)
    return str(path) if path is not None else url.render_as_string(hide_password=True)


def as_fault(err: BaseException, url: URL, operation: str) -> StorageFault | None:
    """``err`` as a :class:`StorageFault` on the database at ``url`` (cause set), or None if it is not one."""
    kind = fault_kind(err)
    if kind is None:
        return None
    orig: Any = err.orig if isinstance(err, DBAPIError) else err
    fault = StorageFault(kind, database_name(url), operation, " ".join(str(orig).split()))  # one line
    fault.__cause__ = err
    return fault

"""Schema migrations: the Alembic environment shipped in ``workbench/store/migrations``.

Opening a store whose schema is current reads its ``alembic_version`` and nothing more: Alembic (and
its script directory) is imported only to migrate, which keeps every process that opens a store
(dashboard kernels above all) ~10 MB and ~0.2 s lighter.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from workbench.store.db import RETRY_SECONDS, WRITE, make_engine, retry

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
_REVISION = re.compile(r'^(down_)?revision\b[^=]*=\s*(?:"([^"]*)"|None)', re.M)


@functools.cache
def head_revision() -> str | None:
    """The newest revision of the shipped migrations (the one no other revises), read from their files;
    None if that is not exactly one (Alembic then decides, and says what is wrong)."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for down, rev in _REVISION.findall(path.read_text(encoding="utf-8")):
            if rev:
                (revised if down else revisions).add(rev)
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None


def is_current(engine: Engine) -> bool:
    """Whether the database behind ``engine`` is at :func:`head_revision` (False if it cannot tell)."""
    head = head_revision()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))] == [head]
    except DBAPIError:  # no version table yet (a new database), or it cannot be read: migrate
        return False


def alembic_config(url: str) -> Config:
    """An Alembic Config for ``url`` pointing at the package's migrations (no alembic.ini needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str | Engine, revision: str = "head", *, retry_seconds: float = RETRY_SECONDS) -> None:
    """Bring the database at ``url`` (or behind ``engine``) up to ``revision``; a no-op when current
    (retried for ``retry_seconds`` while the database is busy).

    Runs in one write transaction, so processes opening the same new database at once (SQLite or PostgreSQL)
    migrate it once.
    """
    engine = make_engine(url) if isinstance(url, str) else url
    if revision == "head" and is_current(engine):
        if isinstance(url, str):
            engine.dispose()
        return
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))

    def run() -> None:
        with engine.execution_options(**WRITE).begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

    try:
        retry(run, retry_seconds)
    finally:
        if isinstance(url, str):
            engine.dispose()

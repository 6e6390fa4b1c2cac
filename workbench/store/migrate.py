"""Schema migrations: the Alembic environment shipped in ``workbench/store/migrations``."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from workbench.store.db import RETRY_SECONDS, WRITE, make_engine, retry

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    """An Alembic Config for ``url`` pointing at the package's migrations (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str | Engine, revision: str = "head", *, retry_seconds: float = RETRY_SECONDS) -> None:
    """Bring the database at ``url`` (or behind ``engine``) up to ``revision``; a no-op when current
    (retried for ``retry_seconds`` while the database is busy).

    Runs in one write transaction, so processes opening the same new SQLite file at once
    migrate it once.
    """
    engine = make_engine(url) if isinstance(url, str) else url
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

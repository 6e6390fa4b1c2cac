"""The test kit's fixtures: a throwaway store, sample bars, a small valid config and a fake clock.

Fixtures (pytest finds them; no import needed): ``store_url`` and ``store`` (a fresh SQLite file in
``tmp_path``, closed after the test; a fresh PostgreSQL database on the run's one ``pg_server`` for
tests marked ``@both_backends`` from tests.kit, which run once per backend), ``bars`` (one day of 1m
sample bars for BTC/USDT), ``config`` (a small valid paper :class:`~workbench.config.SessionConfig`)
and ``clock`` (a :class:`FakeClock` at T0).
``loopback_exchange`` (a running loopback exchange, tests/exchange) is re-exported here too;
``page_limit`` makes the ``store``'s disk full on demand (``page_limit["n"] = 1``).
Helpers: ``from tests.kit import until, wait_until, FakeClock, paper_config, bars_for, T0``.
(The repository-root ``conftest.py`` is nbval's and separate.)
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import event

from tests.exchange.fixtures import loopback_exchange
from tests.exchange.server import LoopbackExchange
from tests.kit import FakeClock, paper_config
from tests.pg_kit import MISSING, PgServer, find_pg_ctl, running_pg_server
from workbench.config import SessionConfig
from workbench.data import sample_bars
from workbench.store import Store

__all__ = ["bars", "clock", "config", "loopback_exchange", "page_limit", "pg_server", "store", "store_url"]


# ---- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the whole run (tests/pg_kit.py), started when a test first needs it.
    Without the server binaries the PostgreSQL tests are skipped, except on CI (``CI`` set), where they fail."""
    if find_pg_ctl() is None:
        if os.environ.get("CI"):
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    with running_pg_server() as server:
        yield server


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh store: a SQLite file in this test's ``tmp_path``, or with the param
    ``"postgresql"`` (``@both_backends``) a new database on :func:`pg_server`, dropped after the test."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'wb.db'}"
        return
    if backend != "postgresql":
        raise ValueError(f"store_url param must be 'sqlite' or 'postgresql', got {backend!r}")
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.create_database()
    yield url
    server.drop_database(url)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A throwaway :class:`Store` on ``store_url``, closed after the test."""
    st = Store(store_url)
    yield st
    st.close()


@pytest.fixture
def bars() -> pd.DataFrame:
    """One day of 1m sample bars for BTC/USDT (a fresh copy per test)."""
    return sample_bars("BTC/USDT", days=1)


@pytest.fixture
def config() -> SessionConfig:
    """A small valid paper config (:func:`paper_config`)."""
    return paper_config()


@pytest.fixture
def lx() -> Iterator[LoopbackExchange]:
    """The live tests' loopback exchange (:func:`tests.live_kit.live_exchange`), stopped after the test."""
    from tests.live_kit import live_exchange

    with live_exchange() as exchange:
        yield exchange


@pytest.fixture
def clock() -> FakeClock:
    """A :class:`FakeClock` at :data:`T0`."""
    return FakeClock()


@pytest.fixture
def page_limit(store: Store) -> Iterator[dict[str, int]]:
    """Disk full made real: every connection the store checks out gets ``PRAGMA max_page_count = limit['n']``
    (SQLite keeps at least the pages the file has: 1 means "no room to grow")."""
    limit = {"n": 1_000_000_000}

    def apply(dbapi_conn, _record, _proxy) -> None:
        dbapi_conn.execute(f"PRAGMA max_page_count = {limit['n']}")

    event.listen(store.engine, "checkout", apply)
    yield limit
    event.remove(store.engine, "checkout", apply)

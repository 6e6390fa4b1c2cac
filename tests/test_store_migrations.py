"""The Alembic migrations build exactly the schema of workbench.store.schema."""
from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from workbench.config import make_config
from workbench.domain import TRADE_COLUMNS
from workbench.store import Store
from workbench.store.migrate import alembic_config, upgrade
from workbench.store.schema import metadata


def diff(url: str, target: sa.MetaData) -> list:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            return compare_metadata(ctx, target)
    finally:
        engine.dispose()


def test_upgraded_database_matches_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    assert diff(url, metadata) == []
    assert set(sa.inspect(sa.create_engine(url)).get_table_names()) == set(metadata.tables) | {"alembic_version"}


def test_comparison_would_notice_a_drift(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    drifted = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["sessions"].append_column(sa.Column("colour", sa.String(10)))
    sa.Index("ix_fills_price", drifted.tables["fills"].c.price)
    changes = diff(url, drifted)
    kinds = {c[0] if isinstance(c, tuple) else c[0][0] for c in changes}
    assert {"add_column", "add_index"} <= kinds


def test_single_head_and_version_stamped(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    script = ScriptDirectory.from_config(alembic_config(url))
    newest = max(rev.revision for rev in script.walk_revisions())  # revisions are numbered 0001, 0002, ...
    assert script.get_heads() == [newest]
    Store(url).close()
    with sa.create_engine(url).connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == newest


def test_reopening_keeps_data_and_downgrade_round_trips(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    with Store(url) as st:
        sid = st.create_session(make_config())
    with Store(url) as st:  # upgrade on open is a no-op for a current database
        assert st.get_session(sid)["id"] == sid
    command.downgrade(alembic_config(url), "base")
    assert sa.inspect(sa.create_engine(url)).get_table_names() == ["alembic_version"]
    upgrade(url)
    assert diff(url, metadata) == []


def test_0002_upgrades_a_0001_store_in_place_keeping_trades(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url, "0001")
    t0 = datetime(2024, 1, 1, 12, 0)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO sessions (id, name, kind, state, strategy, symbols, config_json, initial_balance, "
            "created_at, run_no) VALUES ('s1', '', 'paper', 'stopped', 'sma_cross', '[]', '{}', 1000.0, :t, 1)"
        ), {"t": t0})
        trade = ("INSERT INTO trades (session_id, symbol, entry_time, exit_time, entry_price, exit_price, quantity, "
                 "pnl, return_pct, commission, slippage, exit_reason, status) VALUES ('s1', 'BTC/USDT', :entry, "
                 ":exit, 100.0, 110.0, 2.0, 19.0, 0.095, 1.0, 0.25, :reason, :status)")
        conn.execute(sa.text(trade), {"entry": t0, "exit": t0 + timedelta(minutes=90), "reason": "signal",
                                      "status": "closed"})
        conn.execute(sa.text(trade), {"entry": t0, "exit": None, "reason": None, "status": "open"})
    engine.dispose()
    with Store(url) as st:  # opening upgrades to head
        got = st.trades("s1")
    assert list(got.columns) == list(TRADE_COLUMNS)
    assert got.pnl.tolist() == [19.0, 19.0] and got.commission.tolist() == [1.0, 1.0]
    assert got.duration.iloc[0] == pd.Timedelta(minutes=90) and pd.isna(got.duration.iloc[1])
    assert np.isnan(got.entry_fees).all() and np.isnan(got.exit_fees).all()  # the split was never stored
    command.downgrade(alembic_config(url), "0001")  # and back: the rows survive that too
    with sa.create_engine(url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM trades")).scalar() == 2
        assert "duration" not in {c["name"] for c in sa.inspect(conn).get_columns("trades")}

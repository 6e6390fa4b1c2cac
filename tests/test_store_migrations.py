"""The Alembic migrations build exactly the schema of workbench.store.schema."""
from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from workbench.config import make_config
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
    heads = ScriptDirectory.from_config(alembic_config(url)).get_heads()
    assert heads == ["0001"]
    Store(url).close()
    with sa.create_engine(url).connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "0001"


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

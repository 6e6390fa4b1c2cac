"""The store on a real PostgreSQL server (started by the tests, tests/pg_kit.py), and what a bad ``--db`` says.

Every ``--db`` mistake is one line naming what a store URL looks like, never a traceback: a URL that does
not parse, a database the store does not run on, a missing driver, a server that is not there. On
PostgreSQL: the migrations build exactly the models' schema and round-trip; several stores opening
one new database at once migrate it once; writers queue one after another (the SQLite rules, kept by one
advisory lock) while a read sees one snapshot; commands cross processes.
"""
from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import sqlalchemy as sa
from alembic import command
from port_for import get_port

from tests.kit import paper_config, wait_until
from tests.test_store_migrations import diff
from workbench.cli import main
from workbench.store import Store
from workbench.store.db import URL_HELP, make_engine
from workbench.store.migrate import alembic_config, upgrade
from workbench.store.schema import metadata

PG = pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The error ``main(argv)`` prints: one line (after any progress bars), no traceback; exit code 2."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("workbench: ")
    return last


@pytest.mark.parametrize("url", ["notaurl", "postgresql://u@127.0.0.1:notaport/wb", "mysql://u@host/wb"])
@pytest.mark.parametrize("argv", [["sessions", "list"], ["store", "check"], ["backtest", "--strategy", "momentum"]])
def test_a_bad_db_url_is_one_line_saying_what_a_store_url_looks_like(capsys, argv, url):
    err = _one_line_error(capsys, [*argv, "--db", url])
    assert URL_HELP in err or (argv[0] == "store" and "is not a SQLite file" in err), err


def test_a_missing_driver_is_one_line_saying_how_to_install_it(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now raises ImportError
    err = _one_line_error(capsys, ["sessions", "list", "--db", "postgresql://u:secret@127.0.0.1:5432/wb"])
    assert "pip install 'psycopg[binary]'" in err and URL_HELP in err and "secret" not in err


def test_a_server_that_is_not_there_is_one_line_naming_it_without_the_password(capsys):
    port = get_port(None)
    err = _one_line_error(capsys, ["sessions", "list", "--db", f"postgresql://u:secret@127.0.0.1:{port}/wb"])
    assert "unreachable" in err and f"127.0.0.1:{port}" in err and "pg_isready" in err and "secret" not in err


def test_a_bare_postgresql_url_gets_the_psycopg_3_driver():
    assert make_engine("postgresql://u@h/wb").dialect.driver == "psycopg"


@PG
def test_migrations_build_the_models_schema_and_downgrade_round_trips(store_url):
    upgrade(store_url)
    assert diff(store_url, metadata) == []
    command.downgrade(alembic_config(store_url), "base")
    engine = sa.create_engine(store_url)
    assert sa.inspect(engine).get_table_names() == ["alembic_version"]
    engine.dispose()
    upgrade(store_url)
    assert diff(store_url, metadata) == []


@PG
def test_stores_opening_one_new_database_at_once_migrate_it_once(store_url):
    start, stores, errors = threading.Barrier(3), [], []

    def open_store() -> None:  # each Store has its own engine and connections, as another process would
        start.wait()
        try:
            stores.append(Store(store_url))
        except Exception as e:  # noqa: BLE001 (collected and asserted below)
            errors.append(e)

    threads = [threading.Thread(target=open_store) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert errors == [] and len(stores) == 3
    ids = [st.create_session(paper_config()) for st in stores]
    assert sorted(stores[0].list_sessions().id) == sorted(ids)
    for st in stores:
        st.close()


@PG
def test_writers_queue_while_a_read_keeps_one_snapshot(store_url, store):
    sid = store.create_session(paper_config())
    other = Store(store_url)
    inside, release, wrote = threading.Event(), threading.Event(), threading.Event()

    def hold(conn) -> None:  # a write transaction that stays open until released
        inside.set()
        assert release.wait(30)

    holder = threading.Thread(target=store._write, args=(hold,))
    holder.start()
    assert inside.wait(30)
    writer = threading.Thread(target=lambda: (other.add_event(sid, "note", "queued"), wrote.set()))
    writer.start()
    assert not wrote.wait(0.5)  # the second writer waits for the first's lock, as on SQLite
    release.set()
    holder.join(30)
    writer.join(30)
    assert wrote.is_set()

    def two_reads(conn) -> tuple[int, int]:  # another writer commits between the two statements
        count = sa.select(sa.func.count()).select_from(sa.table("events"))
        first = conn.execute(count).scalar()
        other.add_event(sid, "note", "between")
        return first, conn.execute(count).scalar()

    first, second = store._read(two_reads)
    assert first == second  # one snapshot
    assert (store.events(sid)["message"] == "between").any()
    other.close()


@PG
def test_a_command_from_another_process_reaches_a_store_polling_for_it(store_url, store):
    sid = store.create_session(paper_config())
    code = "import sys; from workbench.store import Store; Store(sys.argv[1]).send_command(sys.argv[2], 'pause')"
    subprocess.run([sys.executable, "-c", code, store_url, sid], check=True, timeout=120)
    pending = wait_until(lambda: store.pending_commands(sid), 30)
    assert [c["command"] for c in pending] == ["pause"] and sid in store.sessions_with_pending_commands()

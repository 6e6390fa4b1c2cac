"""Store round trips on a real SQLite file."""
from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tests.kit import both_backends
from workbench.config import make_config
from workbench.domain import Fill, Order, OrderStatus, OrderType, Position, SessionState, Side
from workbench.store import NotFoundError, Store, StoreError, format_history

UTC = timezone.utc
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def config():
    """Two symbols, a name (the kit's ``store`` fixture gives the throwaway store)."""
    return make_config(strategy="momentum", symbols=["BTC/USDT", "ETH/USDT"], initial_balance=5_000, name="mom")


def count(store: Store, table: str, session_id: str) -> int:
    with sqlite3.connect(store.engine.url.database) as conn:
        return conn.execute(f"SELECT count(*) FROM {table} WHERE session_id = ?", (session_id,)).fetchone()[0]


# ---- opening ---------------------------------------------------------------
def test_default_url_is_under_workbench_home(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    with Store() as st:
        st.create_session(make_config())
    assert (tmp_path / "home" / "workbench.db").stat().st_size > 0


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(store):
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_bad_url_is_a_clear_error():
    with pytest.raises(ValueError, match="not a database URL"):
        Store("no-such-thing")


# ---- sessions ----------------------------------------------------------------
@both_backends
def test_session_round_trip(store, config):
    sid = store.create_session(config)
    s = store.get_session(sid)
    assert s["id"] == sid and s["name"] == "mom" and s["state"] == "created" and s["run_no"] == 1
    assert s["kind"] == "backtest" and s["strategy"] == "momentum"
    assert s["symbols"] == ["BTC/USDT", "ETH/USDT"] and s["initial_balance"] == 5_000
    assert s["config"] == config
    assert s["created_at"].tzinfo is not None and abs(datetime.now(UTC) - s["created_at"]) < timedelta(seconds=30)
    with pytest.raises(NotFoundError, match="no session 'nope'"):
        store.get_session("nope")


def test_restart_lineage_counts_runs(store, config):
    first = store.create_session(config)
    second = store.create_session(config, parent_id=first, name="again", state="requested")
    third = store.create_session(config, parent_id=second)
    assert [store.get_session(x)["run_no"] for x in (first, second, third)] == [1, 2, 3]
    assert store.get_session(second)["parent_id"] == first and store.get_session(second)["state"] == "requested"
    with pytest.raises(NotFoundError):
        store.create_session(config, parent_id="missing")
    with pytest.raises(ValueError, match="unknown session state"):
        store.create_session(config, state="dancing")


def test_update_session(store, config):
    sid = store.create_session(config)
    paper = config.replace(kind="paper", strategy="mean_reversion", params={}, symbols=["SOL/USDT"],
                           initial_balance=100)
    store.update_session(sid, config=paper, error="boom", metrics={"sharpe_ratio": 1.5}, pnl=12.5,
                         trade_count=np.int64(3))
    s = store.get_session(sid)
    assert (s["kind"], s["strategy"], s["symbols"]) == ("paper", "mean_reversion", ["SOL/USDT"])
    assert s["initial_balance"] == 100
    assert s["config"] == paper and s["error"] == "boom" and s["metrics"] == {"sharpe_ratio": 1.5}
    assert (s["pnl"], s["trade_count"]) == (12.5, 3)
    with pytest.raises(ValueError, match="unknown session field 'colour'"):
        store.update_session(sid, colour="red")
    with pytest.raises(ValueError, match="set_state"):
        store.update_session(sid, state="running")
    with pytest.raises(NotFoundError):
        store.update_session("missing", error="x")


@both_backends
def test_set_state_records_events_and_times(store, config):
    sid = store.create_session(config, state="requested")
    assert store.set_state(sid, "starting", expect="requested", actor="host-1")
    assert not store.set_state(sid, "starting", expect="requested", actor="host-2")  # already claimed
    assert store.set_state(sid, SessionState.RUNNING)
    started = store.get_session(sid)["started_at"]
    assert store.set_state(sid, "paused", actor="alice", message="news event")
    assert store.set_state(sid, "running", expect=["paused", "orphaned"])
    assert store.get_session(sid)["started_at"] == started and store.get_session(sid)["ended_at"] is None
    assert store.set_state(sid, "stopped", actor="alice")
    s = store.get_session(sid)
    assert s["state"] == "stopped" and s["ended_at"] >= started
    ev = store.events(sid)
    states = ev[ev.kind == "state"]
    assert [d["to"] for d in states.data] == ["requested", "starting", "running", "paused", "running", "stopped"]
    paused = states[states.message == "news event"].iloc[0]
    assert paused.actor == "alice" and paused.data == {"from": "running", "to": "paused"}
    assert states.iloc[1].actor == "host-1"
    with pytest.raises(ValueError, match="unknown session state"):
        store.set_state(sid, "sleeping")
    with pytest.raises(NotFoundError):
        store.set_state("missing", "running")


def test_heartbeat(store, config):
    sid = store.create_session(config)
    store.heartbeat(sid, "box:123")
    s = store.get_session(sid)
    assert s["runner"] == "box:123" and abs(datetime.now(UTC) - s["heartbeat_at"]) < timedelta(seconds=30)
    with pytest.raises(NotFoundError):
        store.heartbeat("missing", "box:1")


def test_list_sessions_filters(store, config):
    a = store.create_session(config)
    b = store.create_session(config.replace(kind="paper"), state="running")
    c = store.create_session(config.replace(strategy="mean_reversion", params={}, kind="paper"), state="stopped")
    df = store.list_sessions()
    assert list(df.id) == [c, b, a]  # newest first
    assert "config_json" not in df.columns and df.symbols.iloc[0] == ["BTC/USDT", "ETH/USDT"]
    assert str(df.created_at.dtype) == "datetime64[us, UTC]"
    assert set(store.list_sessions(kind="paper").id) == {b, c}
    assert list(store.list_sessions(kind="paper", strategy="momentum").id) == [b]
    assert set(store.list_sessions(states=["running", "stopped"]).id) == {b, c}
    assert list(store.list_sessions(states="created").id) == [a]
    created_b = store.get_session(b)["created_at"]
    assert set(store.list_sessions(since=created_b).id) == {b, c}
    assert list(store.list_sessions(until=created_b).id) == [a]
    assert store.list_sessions(since="2999-01-01").empty
    with pytest.raises(ValueError, match="unknown kind"):
        store.list_sessions(kind="futures")
    with pytest.raises(ValueError, match="since"):
        store.list_sessions(since="yesterday-ish")


def test_delete_session_cascades(store, config):
    parent = store.create_session(config)
    child = store.create_session(config, parent_id=parent)
    t = T0
    store.upsert_order(parent, Order("o1", "BTC/USDT", Side.BUY, 1.0, created_at=t))
    store.add_fill(parent, Fill("o1", "BTC/USDT", Side.BUY, 1.0, 100.0, 0.1, 0.05, t, fill_id="f1"))
    store.upsert_position(parent, Position("BTC/USDT", 1.0, 100.0, t))
    store.save_trades(parent, pd.DataFrame({"symbol": ["BTC/USDT"], "entry_time": [t], "entry_price": [1.0],
                                            "quantity": [1.0]}))
    store.add_equity_points(parent, pd.Series([1.0, 2.0], index=[t, t + timedelta(minutes=1)]))
    store.send_command(parent, "pause")
    store.save_runner_state(parent, {"bar": t})
    tables = ("orders", "fills", "positions", "trades", "equity", "events", "commands", "session_state")
    assert all(count(store, tb, parent) > 0 for tb in tables)
    store.delete_session(parent)
    assert [count(store, tb, parent) for tb in tables] == [0] * len(tables)
    assert store.get_session(child)["parent_id"] is None
    with pytest.raises(NotFoundError):
        store.get_session(parent)
    with pytest.raises(NotFoundError):
        store.delete_session(parent)


# ---- events ------------------------------------------------------------------
def test_events(store, config):
    sid = store.create_session(config)
    other = store.create_session(config)
    ids = [store.add_event(sid, "risk", f"rejected {i}", {"rule": "max_position", "at": T0, "n": i}, actor="risk")
           for i in range(5)]
    assert ids == sorted(ids)
    glob = store.add_event(None, "host", "host started")
    ev = store.events(sid)
    risk = ev[ev.kind == "risk"]
    assert list(risk.message) == [f"rejected {i}" for i in range(5)]
    assert risk.data.iloc[2] == {"rule": "max_position", "at": T0, "n": 2} and set(risk.actor) == {"risk"}
    last2 = store.events(sid, limit=2)
    assert list(last2.message) == ["rejected 3", "rejected 4"]
    everything = store.events()
    assert glob in set(everything.id) and set(everything.session_id.dropna()) == {sid, other}
    with pytest.raises(NotFoundError):
        store.add_event("missing", "x", "y")
    with pytest.raises(ValueError, match="kind"):
        store.add_event(sid, "", "y")


# ---- orders, fills, positions -------------------------------------------------
@both_backends
def test_orders_upsert_and_filter(store, config):
    sid = store.create_session(config)
    o = Order("c1", "BTC/USDT", Side.BUY, 2.0, OrderType.LIMIT, limit_price=99.5, created_at=T0, reason="signal")
    store.upsert_order(sid, o)
    store.upsert_order(sid, Order("c2", "ETH/USDT", Side.SELL, 1.0))
    first_update = store.orders(sid).updated_at.iloc[0]
    o.status, o.filled_quantity, o.exchange_id = OrderStatus.PARTIALLY_FILLED, 0.5, "X-9"
    store.upsert_order(sid, o)
    df = store.orders(sid)
    assert list(df.client_id) == ["c1", "c2"]
    row = df.iloc[0]
    assert (row.symbol, row.side, row.type, row.quantity, row.limit_price) == ("BTC/USDT", "buy", "limit", 2.0, 99.5)
    assert (row.status, row.filled_quantity, row.exchange_id, row.reason) == ("partially_filled", 0.5, "X-9", "signal")
    assert row.created_at == T0 and row.updated_at >= first_update
    assert list(store.orders(sid, status="new").client_id) == ["c2"]
    assert len(store.orders(sid, status=["new", OrderStatus.PARTIALLY_FILLED])) == 2
    with pytest.raises(TypeError, match="Order"):
        store.upsert_order(sid, {"client_id": "c3"})
    with pytest.raises(NotFoundError):
        store.upsert_order("missing", o)


@both_backends
def test_fills_are_idempotent(store, config):
    sid = store.create_session(config)
    f = Fill("c1", "BTC/USDT", Side.BUY, 0.5, 100.0, 0.05, 0.02, T0, fill_id="c1-1")
    assert store.add_fill(sid, f) is True
    assert store.add_fill(sid, f) is False
    assert store.add_fill(sid, Fill("c1", "BTC/USDT", Side.BUY, 0.5, 101.0, 0.05, 0.0, T0, fill_id="c1-1")) is False
    other = store.create_session(config)
    assert store.add_fill(other, f) is True  # unique per session only
    df = store.fills(sid)
    assert len(df) == 1 and (df.price.iloc[0], df.side.iloc[0], df.time.iloc[0]) == (100.0, "buy", T0)
    with pytest.raises(ValueError, match="fill_id"):
        store.add_fill(sid, Fill("c1", "BTC/USDT", Side.BUY, 0.5, 100.0, 0.0, 0.0, T0))


def test_add_fill_updates_order_and_position_together(store, config):
    sid = store.create_session(config)
    order = Order("c1", "BTC/USDT", Side.BUY, 1.0, status=OrderStatus.FILLED, filled_quantity=1.0)
    pos = Position("BTC/USDT", 1.0, 100.0, T0)
    fill = Fill("c1", "BTC/USDT", Side.BUY, 1.0, 100.0, 0.1, 0.0, T0, fill_id="c1-1")
    assert store.add_fill(sid, fill, order=order, position=pos)
    assert store.orders(sid).status.tolist() == ["filled"] and store.positions(sid).quantity.tolist() == [1.0]
    # a replayed fill changes nothing, not even the order/position passed with it
    order.status, pos.quantity = OrderStatus.CANCELED, 7.0
    assert not store.add_fill(sid, fill, order=order, position=pos)
    assert store.orders(sid).status.tolist() == ["filled"] and store.positions(sid).quantity.tolist() == [1.0]


def test_positions_upsert(store, config):
    sid = store.create_session(config)
    store.upsert_position(sid, Position("BTC/USDT", 1.0, 100.0, T0, peak_price=101.0, extra={"stop": 95.0}))
    store.upsert_position(sid, Position("ETH/USDT", 3.0, 10.0, T0))
    store.upsert_position(sid, Position("BTC/USDT", 0.0, 0.0, None, realized_pnl=12.5, peak_price=0.0))
    df = store.positions(sid).set_index("symbol")
    assert list(df.index) == ["BTC/USDT", "ETH/USDT"]
    assert (df.loc["BTC/USDT", "quantity"], df.loc["BTC/USDT", "realized_pnl"]) == (0.0, 12.5)
    assert pd.isna(df.loc["BTC/USDT", "opened_at"]) and df.loc["ETH/USDT", "opened_at"] == T0
    assert df.loc["BTC/USDT", "extra"] == {} and df.loc["ETH/USDT", "avg_price"] == 10.0
    store.upsert_position(sid, Position("BTC/USDT", 1.0, 100.0, T0, extra={"stop": 95.0}))
    assert store.positions(sid).set_index("symbol").loc["BTC/USDT", "extra"] == {"stop": 95.0}


# ---- history -----------------------------------------------------------------
def test_history_and_format(store, config):
    def backtest(balance: float, final: float, strategy: str, n_trades: int) -> str:
        cfg = config.replace(strategy=strategy, params={}, initial_balance=balance)
        eq = pd.Series([balance, final], index=pd.date_range("2024-01-01", periods=2, freq="1D", tz="UTC"))
        return store.save_backtest(cfg, SimpleNamespace(equity=eq, trades=pd.DataFrame(
            {"symbol": ["BTC/USDT"] * n_trades, "entry_time": [T0] * n_trades, "entry_price": [1.0] * n_trades,
             "quantity": [1.0] * n_trades}), metrics={}))

    a = backtest(10_000, 12_180, "mean_reversion", 156)
    b = store.create_session(config.replace(kind="paper", initial_balance=10_000), state="running")
    store.add_equity_points(b, pd.Series([10_100.0, 9_660.0], index=pd.date_range(T0, periods=2, freq="1min")))
    store.save_trades(b, pd.DataFrame({"symbol": ["BTC/USDT"] * 18, "entry_time": [T0] * 18,
                                       "entry_price": [1.0] * 18, "quantity": [1.0] * 18}))
    c = store.create_session(config.replace(kind="live", strategy="pump_detection", params={}, initial_balance=10_000))
    store.update_session(c, pnl=1_240.0, total_return=0.124, trade_count=23)
    d = store.create_session(config.replace(kind="paper"))  # nothing yet

    h = store.history()
    assert list(h.id) == [d, c, b, a]
    assert list(h.columns[:6]) == ["date", "strategy", "kind", "pnl", "return", "trades"]
    rows = h.set_index("id")
    assert rows.loc[a, "pnl"] == pytest.approx(2_180) and rows.loc[a, "return"] == pytest.approx(0.218)
    assert rows.loc[a, "trades"] == 156 and rows.loc[a, "state"] == "completed"
    assert rows.loc[b, "pnl"] == pytest.approx(-340) and rows.loc[b, "return"] == pytest.approx(-0.034)
    assert rows.loc[b, "trades"] == 18
    assert np.isnan(rows.loc[d, "pnl"]) and rows.loc[d, "trades"] == 0
    assert list(store.history(kind="paper").id) == [d, b]
    assert list(store.history(strategy="pump_detection").id) == [c]

    text = format_history(h)
    lines = text.splitlines()
    assert lines[0].split()[:6] == ["Date", "Strategy", "Type", "P&L", "Return", "Trades"]
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    live = next(line for line in lines if c in line)
    assert live.startswith(today) and "Pump Detection" in live and "Live" in live
    assert re.search(r"\+\$1,240\s+\+12\.4%\s+23\s+created", live)
    paper = next(line for line in lines if b in line)
    assert "-$340" in paper and "-3.4%" in paper and "running" in paper
    back = next(line for line in lines if a in line)
    assert "+$2,180" in back and "+21.8%" in back and "156" in back and "Mean Reversion" in back
    assert "n/a" in next(line for line in lines if d in line)
    end = lines[0].index("Trades") + len("Trades")  # numbers right-aligned under their header
    assert live[end - 2:end + 1] == "23 " and back[end - 3:end + 1] == "156 "
    assert format_history(h.iloc[:0]) == "no sessions"
    with pytest.raises(ValueError, match="history frame"):
        format_history(pd.DataFrame({"x": [1]}))


# ---- commands ------------------------------------------------------------------
@both_backends
def test_commands(store, config):
    sid = store.create_session(config, state="running")
    c1 = store.send_command(sid, "pause", actor="alice")
    c2 = store.send_command(sid, "adjust_sizing", {"factor": 0.5, "until": T0})
    pending = store.pending_commands(sid)
    assert [p["id"] for p in pending] == [c1, c2]
    assert pending[1]["args"] == {"factor": 0.5, "until": T0} and pending[0]["actor"] == "alice"
    assert pending[0]["status"] == "pending" and pending[0]["args"] == {}
    store.finish_command(c1, "applied", "paused at bar 42")
    store.finish_command(c2, "rejected", "factor too small")
    assert store.pending_commands(sid) == []
    got = store.get_command(c1)
    assert (got["status"], got["result"]) == ("applied", "paused at bar 42") and got["applied_at"] is not None
    assert store.get_command(c2)["status"] == "rejected"
    cmd_events = store.events(sid).query("kind == 'command'")
    assert cmd_events.message.tolist() == [
        "pause requested", "adjust_sizing requested",
        "pause applied: paused at bar 42", "adjust_sizing rejected: factor too small"]
    assert cmd_events.actor.iloc[0] == "alice"
    with pytest.raises(StoreError, match="already applied"):
        store.finish_command(c1, "rejected")
    with pytest.raises(ValueError, match="applied"):
        store.finish_command(c1, "done")
    with pytest.raises(NotFoundError):
        store.finish_command(9999, "applied")
    with pytest.raises(NotFoundError):
        store.send_command("missing", "pause")
    with pytest.raises(ValueError, match="command"):
        store.send_command(sid, "")


# ---- templates and runner state ------------------------------------------------------
def test_templates(store, config):
    store.save_template("scalper", config, "fast in, fast out")
    store.save_template("builtin-momentum", make_config(strategy="momentum"), builtin=True)
    assert store.get_template("scalper") == config
    changed = config.replace(initial_balance=777)
    store.save_template("scalper", changed, "v2")
    assert store.get_template("scalper") == changed
    lst = store.list_templates()
    assert list(lst.name) == ["builtin-momentum", "scalper"]
    row = lst.set_index("name").loc["scalper"]
    assert (row.description, bool(row.builtin), row.strategy, row.symbols) == ("v2", False, "momentum",
                                                                               ["BTC/USDT", "ETH/USDT"])
    assert bool(lst.set_index("name").loc["builtin-momentum", "builtin"]) is True
    store.delete_template("scalper")
    with pytest.raises(NotFoundError, match="no template 'scalper'"):
        store.get_template("scalper")
    with pytest.raises(NotFoundError):
        store.delete_template("scalper")
    with pytest.raises(ValueError, match="name"):
        store.save_template("  ", config)


@both_backends
def test_runner_state(store, config):
    sid = store.create_session(config)
    assert store.load_runner_state(sid) is None
    state = {"last_bar": T0, "cash": 4_321.5, "open_orders": ["c7"], "peak": {"BTC/USDT": 101.0}}
    store.save_runner_state(sid, state)
    assert store.load_runner_state(sid) == state
    store.save_runner_state(sid, {"last_bar": T0 + timedelta(minutes=1)})
    assert store.load_runner_state(sid) == {"last_bar": T0 + timedelta(minutes=1)}
    with pytest.raises(TypeError, match="dict"):
        store.save_runner_state(sid, ["not", "a", "dict"])
    with pytest.raises(TypeError, match="cannot store"):
        store.save_runner_state(sid, {"x": object()})
    with pytest.raises(NotFoundError):
        store.save_runner_state("missing", {})


@both_backends
def test_times_are_utc_aware(store, config):
    sid = store.create_session(config)
    cet = timezone(timedelta(hours=1))
    store.upsert_order(sid, Order("c1", "BTC/USDT", Side.BUY, 1.0, created_at=datetime(2024, 3, 1, 13, 0, tzinfo=cet)))
    store.upsert_order(sid, Order("c2", "BTC/USDT", Side.BUY, 1.0, created_at=datetime(2024, 3, 1, 12, 0)))
    assert store.orders(sid).created_at.tolist() == [T0, T0]
    assert store.get_session(sid)["created_at"].utcoffset() == timedelta(0)
    with pytest.raises(TypeError, match="expected a datetime, got str"):
        store.upsert_order(sid, Order("c3", "BTC/USDT", Side.BUY, 1.0, created_at="2024-03-01"))  # type: ignore[arg-type]
    assert len(store.orders(sid)) == 2

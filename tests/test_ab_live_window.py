"""The comparison of an A/B beside a live session is over the A/B window only (the variants' first bar to the
last bar they saw), whether the live session still runs or has ended: its curve, its metrics (not the whole-run
metrics an ended session keeps) and its round trips, in the view, `workbench ab --follow --json` and ab_follow."""
from __future__ import annotations

import asyncio
import json

import pandas as pd
import pytest

from tests.kit import paper_config
from workbench.ab.host import ab_follow
from workbench.domain import TRADE_COLUMNS

T0 = pd.Timestamp("2024-01-10", tz="UTC")
WINDOW = range(5, 13)  # the minutes the variants ran


def _t(i: int) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=i)


def _trade(entry: int, exit_: int, pnl: float) -> dict:
    row = {c: 0.0 for c in TRADE_COLUMNS}
    row.update(symbol="BTC/USDT", entry_time=_t(entry), exit_time=_t(exit_), pnl=pnl, return_pct=pnl / 1000,
               duration=_t(exit_) - _t(entry), exit_reason="signal", status="closed", side="long")
    return row


def _ab(store, live_state: str, live_until: int) -> dict[str, float]:
    """A live session (equity 10,000 -> 12,000 before the window, then +50 a minute up to ``live_until``) and
    two ended variants beside it; returns what the live arm's window metrics must be."""
    config = paper_config(data={"source": "ccxt", "live": True})
    live = store.create_session(config, state="running")
    curve = pd.Series([10_000.0 + 400 * i if i < 5 else 12_000.0 + 50 * (i - 4) for i in range(live_until + 1)],
                      index=[_t(i) for i in range(live_until + 1)])
    store.add_equity_points(live, curve)
    store.save_trades(live, pd.DataFrame([_trade(1, 3, 900.0), _trade(6, 8, 120.0), _trade(9, 11, -60.0)]))
    store.update_session(live, metrics={"total_return": 0.5, "trade_count": 99.0})  # whole run: not the window's
    store.set_state(live, live_state, actor="test")
    for name, step in (("A", 10.0), ("B", -5.0)):
        sid = store.create_session(config.replace(kind="paper", name=f"A/B wx {name}: base"), parent_id=live)
        store.add_equity_points(sid, pd.Series([10_000.0 + step * k for k in range(len(WINDOW))],
                                               index=[_t(i) for i in WINDOW]))
        store.update_session(sid, metrics={"total_return": step * (len(WINDOW) - 1) / 10_000, "trade_count": 0.0})
        store.set_state(sid, "completed", actor="test")
    scale = 10_000.0 / curve[_t(4)]  # its equity just before the window -> the variants' initial balance
    return {"total_return": (12_000.0 + 50 * (WINDOW[-1] - 4)) / curve[_t(4)] - 1, "trade_count": 2.0, "scale": scale}


@pytest.mark.parametrize("live_state,live_until", [("completed", 20), ("running", 20), ("running", 12)])
def test_the_live_arm_is_compared_over_the_ab_window_running_or_ended(store, store_url, capsys, live_state,
                                                                      live_until):
    from workbench.cli import main
    from workbench.ui.ab import ABView

    want = _ab(store, live_state, live_until)
    view = ABView(store, label="wx", interval=60)
    equity, metrics, _, _ = view._read()
    live = equity["live"].dropna()
    assert list(live.index) == [_t(i) for i in WINDOW]  # cut to the window at both ends
    assert live.iloc[-1] == pytest.approx((12_000.0 + 50 * (WINDOW[-1] - 4)) * want["scale"])
    assert metrics["live"]["total_return"] == pytest.approx(want["total_return"])
    assert metrics["live"]["trade_count"] == want["trade_count"]  # the round trips opened in the window
    assert metrics["A"]["total_return"] == pytest.approx(0.007)  # a variant's stored metrics
    assert view.done  # the variants have ended and the live arm's equity reached their last bar
    view.ticker.stop()

    res = asyncio.run(ab_follow(store, "wx", poll=0.01, n_boot=100))
    assert res.kind == "beside" and [v.name for v in res.variants] == ["live", "A", "B"]
    assert res.metrics.loc["live", "total_return"] == pytest.approx(want["total_return"])
    assert res.equity.index[0] == _t(WINDOW[0]) and res.equity.index[-1] == _t(WINDOW[-1])

    assert main(["ab", "--follow", "wx", "--db", store_url, "--poll", "0.01", "--n-boot", "100", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "beside" and doc["variants"][0]["name"] == "live"
    assert doc["variants"][0]["metrics"]["total_return"] == pytest.approx(want["total_return"])
    assert doc["variants"][0]["metrics"]["trade_count"] == want["trade_count"]


def test_the_view_waits_for_a_running_live_session_to_reach_the_variants_last_bar(store):
    from workbench.ab import ab_sessions
    from workbench.ui.ab import ABView

    _ab(store, "running", 9)  # its equity is stored up to minute 9, the variants ran to minute 12
    view = ABView(store, label="wx", interval=60)
    assert not view.done and view._read()[0]["live"].dropna().index[-1] == _t(9)
    store.add_equity_points(ab_sessions(store, "wx")["live"], [(_t(i), 12_500.0) for i in range(10, 15)])
    view.refresh()
    assert view.done and view._read()[0]["live"].dropna().index[-1] == _t(WINDOW[-1])

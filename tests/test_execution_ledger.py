"""Portfolio: cash, average price, trade rows with fees and slippage, marks, snapshot/restore."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from workbench.domain import Fill, Side
from workbench.execution.ledger import Portfolio
from workbench.metrics import TRADE_COLUMNS, compute_metrics

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
BTC = "BTC/USDT"


def fill(side, qty, price, commission, slippage=0.0, minutes=0, reason="entry", symbol=BTC, n=0):
    return Fill(f"o{n}", symbol, side, qty, price, commission, slippage, T0 + timedelta(minutes=minutes),
                fill_id=f"f{n}", reason=reason)


@pytest.fixture
def pf() -> Portfolio:
    """10 @ 100.05 (fee 1.0005, slippage 0.5), then 10 @ 110 (fee 1.1)."""
    p = Portfolio(10_000.0)
    p.apply_fill(fill(Side.BUY, 10, 100.05, 1.0005, 0.5, minutes=0, n=1))
    p.apply_fill(fill(Side.BUY, 10, 110.0, 1.1, 0.0, minutes=1, n=2))
    return p


def test_buys_move_cash_and_average_the_price(pf):
    assert pf.cash == pytest.approx(10_000 - 1000.5 - 1.0005 - 1100 - 1.1)
    pos = pf.position(BTC)
    assert pos.quantity == 20 and pos.avg_price == pytest.approx(105.025)
    assert pos.opened_at == T0  # the first entry fill
    assert pos.extra["entry_fees"] == pytest.approx(2.1005)


def test_marks_exposure_equity_unrealized(pf):
    pf.mark({BTC: 120.0})
    assert pf.exposure == pytest.approx(2400.0)
    assert pf.symbol_exposure(BTC) == pytest.approx(2400.0)
    assert pf.exposures() == {BTC: pytest.approx(2400.0)}
    assert pf.equity == pytest.approx(pf.cash + 2400.0)
    assert pf.unrealized_pnl() == pytest.approx(20 * (120 - 105.025))
    assert pf.symbol_exposure("ETH/USDT") == 0.0


def test_partial_then_full_exit_log_two_trades_with_pro_rata_entry_fees(pf):
    t1 = pf.apply_fill(fill(Side.SELL, 5, 120.0, 0.6, 0.25, minutes=10, reason="take_profit", n=3))
    assert t1["quantity"] == 5 and t1["entry_price"] == pytest.approx(105.025)
    assert t1["entry_fees"] == pytest.approx(2.1005 / 4)
    assert t1["pnl"] == pytest.approx(5 * (120 - 105.025) - 0.525125 - 0.6)  # 73.749875
    assert t1["return_pct"] == pytest.approx(73.749875 / (5 * 105.025))
    assert t1["slippage"] == pytest.approx(0.5 / 4 + 0.25)
    assert t1["commission"] == pytest.approx(0.525125 + 0.6)
    assert t1["duration"] == timedelta(minutes=10) and t1["exit_reason"] == "take_profit"
    assert pf.position(BTC).quantity == 15

    t2 = pf.apply_fill(fill(Side.SELL, 15, 100.0, 1.5, 0.0, minutes=20, reason="stop_loss", n=4))
    assert t2["pnl"] == pytest.approx(15 * (100 - 105.025) - (2.1005 - 0.525125) - 1.5)  # -78.450375
    assert pf.position(BTC) is None and pf.quantity(BTC) == 0.0
    assert pf.realized_pnl == pytest.approx(-4.7005)
    assert pf.cash == pytest.approx(10_000 - 4.7005)  # flat: cash = initial + realized
    assert pf.equity == pytest.approx(pf.cash)
    assert [t["status"] for t in pf.trades] == ["closed", "closed"]


def test_reopening_resets_entry_time_and_peak(pf):
    pf.track_high(BTC, 130.0)
    assert pf.position(BTC).peak_price == 130.0
    pf.track_high(BTC, 125.0)
    assert pf.position(BTC).peak_price == 130.0
    pf.apply_fill(fill(Side.SELL, 20, 120.0, 0.0, minutes=5, reason="signal", n=3))
    pf.track_high(BTC, 200.0)  # flat: ignored
    pf.apply_fill(fill(Side.BUY, 1, 90.0, 0.0, minutes=30, n=4))
    pos = pf.position(BTC)
    assert pos.opened_at == T0 + timedelta(minutes=30) and pos.peak_price == 0.0 and pos.avg_price == 90.0


def test_selling_more_than_held_is_an_error(pf):
    with pytest.raises(ValueError, match="long-only"):
        pf.apply_fill(fill(Side.SELL, 21, 100.0, 0.0, n=3))
    with pytest.raises(ValueError):
        pf.apply_fill(fill(Side.SELL, 1, 100.0, 0.0, symbol="ETH/USDT", n=4))
    assert list(pf.positions) == [BTC] and pf.position(BTC).quantity == 20


def test_trade_log_rows_fit_the_backtest_schema_and_metrics(pf):
    pf.apply_fill(fill(Side.SELL, 5, 120.0, 0.6, minutes=10, reason="take_profit", n=3))
    pf.mark({BTC: 110.0})
    rows = pf.trade_log()
    assert all(tuple(r) == TRADE_COLUMNS for r in rows)
    open_row = rows[-1]
    assert open_row["status"] == "open" and open_row["quantity"] == 15 and open_row["exit_price"] == 110.0
    assert open_row["pnl"] == pytest.approx(15 * (110 - 105.025) - 2.1005 * 0.75)
    assert len(pf.trade_log(include_open=False)) == 1
    frame = pd.DataFrame(rows, columns=list(TRADE_COLUMNS))
    equity = pd.Series([10_000.0, pf.equity], index=pd.DatetimeIndex([T0, T0 + timedelta(days=1)]))
    metrics = compute_metrics(equity, frame, 10_000.0)
    assert metrics["trade_count"] == 1 and metrics["win_rate"] == 1.0


def test_snapshot_round_trips_through_json(pf):
    pf.apply_fill(fill(Side.SELL, 5, 120.0, 0.6, 0.25, minutes=10, reason="take_profit", n=3))
    pf.mark({BTC: 111.0})
    pf.track_high(BTC, 125.0)
    state = json.loads(json.dumps(pf.snapshot()))
    back = Portfolio(1.0)
    back.restore(state)
    assert back.cash == pf.cash and back.initial_cash == 10_000.0
    assert back.equity == pf.equity
    assert back.positions == pf.positions
    assert back.trades == pf.trades
    # and it keeps working identically
    for p in (pf, back):
        p.apply_fill(fill(Side.SELL, 15, 100.0, 1.5, minutes=20, reason="stop_loss", n=4))
    assert back.trades == pf.trades and back.cash == pf.cash

"""Trade-by-trade review (workbench.review): excursions, timing, attribution, on hand-computed cases and
against a slow reference loop on the sample data; its report section and the detail view's tab."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from workbench import make_config
from workbench.backtest import run_backtest
from workbench.review import attribution, excursion_summary, review_trades, segment_reduce

T0 = pd.Timestamp("2024-01-01 00:00", tz="UTC")


def ohlc(start: pd.Timestamp, rows: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    idx = pd.date_range(start, periods=len(rows), freq="1min")
    return pd.DataFrame(rows, index=idx, columns=["open", "high", "low", "close"]).assign(volume=1.0)


BTC = ohlc(T0, [(100, 101, 99, 100), (100, 103, 98, 102), (102, 106, 101, 105), (105, 105, 95, 96),
                (96, 97, 94, 95), (95, 99, 95, 98), (98, 100, 97, 99), (99, 99, 98, 98)])
E0 = pd.Timestamp("2024-01-01 05:00", tz="UTC")
ETH = ohlc(E0, [(200, 201, 199, 200), (200, 201, 199, 200), (200, 205, 198, 204), (204, 212, 203, 211),
                (211, 213, 209, 210), (210, 210, 205, 206)])


def trade(symbol, entry_time, exit_time, entry, exit_, reason, status="closed", qty=1.0):
    pnl = (exit_ - entry) * qty if status == "closed" else np.nan
    return {"symbol": symbol, "entry_time": entry_time, "exit_time": exit_time, "entry_price": entry,
            "exit_price": exit_, "quantity": qty, "pnl": pnl, "return_pct": pnl / (entry * qty),
            "exit_reason": reason, "status": status}


@pytest.fixture
def reviewed() -> pd.DataFrame:
    trades = pd.DataFrame([
        trade("BTC/USDT", T0 + pd.Timedelta("1min"), T0 + pd.Timedelta("4min"), 100.0, 96.0, "signal"),
        trade("ETH/USDT", E0 + pd.Timedelta("2min"), E0 + pd.Timedelta("5min"), 200.0, 210.0, "take_profit"),
        trade("BTC/USDT", T0 + pd.Timedelta("6min"), pd.NaT, 98.0, np.nan, None, status="open"),
    ])
    return review_trades(trades, {"BTC/USDT": BTC, "ETH/USDT": ETH}, timezone="Asia/Tokyo", around=1)


def test_excursions_and_timing_by_hand(reviewed):
    btc, eth, still = reviewed.iloc[0], reviewed.iloc[1], reviewed.iloc[2]
    # held bars 1..3 (the exit bar 4 and its low of 94 come after the exit at its open), plus the exit 96
    assert (btc["mfe"], btc["mae"]) == (6.0, 5.0)
    assert (btc["mfe_pct"], btc["mae_pct"]) == pytest.approx((0.06, 0.05))
    assert btc["entry_timing"] == pytest.approx((106 - 100) / (106 - 98))  # bars 0..2 around the entry bar
    assert btc["exit_timing"] == pytest.approx((96 - 94) / (105 - 94))  # bars 3..5 around the exit bar
    assert btc["capture"] == pytest.approx(-4 / 11)
    assert (eth["mfe"], eth["mae"]) == (13.0, 2.0)  # bars 2..4: high 213, low 198
    assert eth["capture"] == pytest.approx(10 / 15)
    assert (still["mfe"], still["mae"]) == (2.0, 1.0)  # open: held through the last bar
    assert math.isnan(still["exit_timing"]) and math.isnan(still["capture"])
    assert list(reviewed["hour"]) == [9, 14, 9]  # entry hours in Tokyo (UTC+9)
    assert list(reviewed["holding_hours"].iloc[:2]) == pytest.approx([3 / 60, 3 / 60])


def test_attribution_by_hand(reviewed):
    by_symbol = attribution(reviewed, "symbol")
    assert list(by_symbol.index) == ["BTC/USDT", "ETH/USDT", "all"]
    assert list(by_symbol["trades"]) == [1, 1, 2]  # the open trade is not attributed
    assert list(by_symbol["pnl"]) == [-4.0, 10.0, 6.0]
    assert by_symbol.loc["all", "win_rate"] == 0.5 and by_symbol.loc["all", "profit_factor"] == 2.5
    assert by_symbol.loc["BTC/USDT", "profit_factor"] == 0.0 and by_symbol.loc["ETH/USDT", "profit_factor"] == math.inf
    assert dict(attribution(reviewed, "hour")["pnl"]) == {9: -4.0, 14: 10.0, "all": 6.0}
    assert list(attribution(reviewed, "exit_reason").index) == ["signal", "take_profit", "all"]
    assert list(attribution(reviewed, "regime").index) == ["unknown", "all"]  # 50 bars of history needed
    summary = excursion_summary(reviewed)
    assert summary.loc["mae_pct", "losers"] == pytest.approx(0.05) and summary.loc["mfe_pct", "winners"] == 0.065
    with pytest.raises(ValueError, match="use one of symbol, hour, exit_reason, regime"):
        attribution(reviewed, "weekday")


def test_regime_is_trend_and_volatility_tercile_before_the_entry():
    r = np.r_[np.full(10, 0.001), np.tile([0.03, 0.0], 5), np.full(10, 0.002)]
    close = 100 * np.exp(np.cumsum(r))
    bars = ohlc(T0, [(c, c * 1.001, c * 0.999, c) for c in close])
    entry = T0 + pd.Timedelta("20min")  # regime read at bar 19: after a rising, jumpy stretch
    trades = pd.DataFrame([trade("BTC/USDT", entry, entry + pd.Timedelta("3min"), close[20], close[23], "signal")])
    row = review_trades(trades, {"BTC/USDT": bars}, regime_window=5).iloc[0]
    assert (row["trend"], row["volatility"], row["regime"]) == ("up", "high", "up · high vol")


def test_segment_reduce_matches_slices():
    values = np.arange(10.0)[::-1]
    lo, hi = np.array([0, 3, 5, 9, 2]), np.array([3, 10, 5, 10, 8])
    got = segment_reduce(np.maximum, values, lo, hi)
    assert list(got[[0, 1, 3, 4]]) == [values[a:b].max() for a, b in zip(lo[[0, 1, 3, 4]], hi[[0, 1, 3, 4]])]
    assert math.isnan(got[2])  # an empty segment


@pytest.fixture(scope="module")
def result():
    config = make_config(strategy="momentum", symbols=["BTC/USDT", "ETH/USDT"], start="2024-01-01",
                         end="2024-01-04", params={"window": 30}, risk={"stop_loss": 0.005})
    return run_backtest(config, progress=False)


def test_vectorised_review_agrees_with_a_slow_loop_on_the_sample_data(result):
    rv = review_trades(result.trades, result.bars, around=2)
    closed = rv[rv["status"] == "closed"]
    assert len(closed) >= 5
    for _, t in closed.iloc[:: max(len(closed) // 5, 1)].iterrows():
        bars = result.bars[t["symbol"]]
        times = list(bars.index)
        i, j = times.index(t["entry_time"]), times.index(t["exit_time"])
        top = max([*bars["high"].iloc[i:j], t["exit_price"]])
        bottom = min([*bars["low"].iloc[i:j], t["exit_price"]])
        assert t["mfe"] == pytest.approx(max(top - t["entry_price"], 0))
        assert t["mae"] == pytest.approx(max(t["entry_price"] - bottom, 0))
        near = bars.iloc[max(i - 2, 0):i + 3]
        h, lo = near["high"].max(), near["low"].min()
        assert t["entry_timing"] == pytest.approx((h - t["entry_price"]) / (h - lo))
        near = bars.iloc[max(j - 2, 0):j + 3]
        h, lo = near["high"].max(), near["low"].min()
        assert t["exit_timing"] == pytest.approx((t["exit_price"] - lo) / (h - lo))
    assert set(closed["exit_reason"]) >= {"stop_loss"}
    by_reason = attribution(rv, "exit_reason")
    assert by_reason.loc["all", "trades"] == len(closed)
    assert by_reason.loc["all", "pnl"] == pytest.approx(closed["pnl"].sum())


def test_report_section_tables_and_figures(result):
    from workbench.reports import sections

    tables = sections.trade_review_tables(result)
    assert set(tables) == {"Excursions and timing", "By symbol", "By hour of day (UTC)", "By exit reason",
                           "By market regime"}
    assert tables["By symbol"].loc["all", "trades"] == int((result.trades["status"] == "closed").sum())
    figs = sections.trade_review_figures(result)
    assert [f.layout.title.text for f in figs] == ["P&L against holding time",
                                                   "P&L against maximum adverse excursion"]
    assert sum(len(tr.x) for tr in figs[0].data) == int((result.trades["status"] == "closed").sum())


def test_detail_view_builds_the_review_tab_when_selected(store, result):
    from workbench.ui.detail import DetailView
    from workbench.ui.review import TITLE

    session_id = store.save_backtest(result.config, result)
    view = DetailView(session_id, store, refresh=60)
    try:
        tabs = view.widget.children[-1]
        index = list(tabs.titles).index(TITLE)
        assert view.review is None  # not built until selected
        tabs.selected_index = index
        assert view.review is not None and "wb-review-attribution-table" in view.review.attribution_html.value
        assert "BTC/USDT" in view.review.attribution_html.value
        view.review.by.value = "exit_reason"
        assert "stop_loss" in view.review.attribution_html.value
        assert len(view.review.holding_fig.data) == 2  # wins and losses
    finally:
        view.close()

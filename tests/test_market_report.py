"""Issue 15 in the report and the detail view: base currency and converted markets, side, leverage,
liquidations, funding and interest totals (``workbench.metrics.market``)."""
from __future__ import annotations

import pandas as pd
import pytest

from workbench.config import make_config
from workbench.metrics.market import market_rows
from workbench.reports.report import Report
from workbench.ui.detail import DetailView

MULTI = {"kind": "backtest", "strategy": "sma_cross", "params": {"fast": 5, "slow": 20},
         "symbols": ["BTC/USDT", "ETH/BTC"], "base_currency": "USDT", "start": "2024-01-01", "end": "2024-01-01 12:00"}


def test_market_rows_sum_side_funding_interest_and_count_liquidations_by_hand() -> None:
    config = make_config(direction="both", margin={"leverage": 3})
    trades = pd.DataFrame({"symbol": ["BTC/USDT"] * 3, "side": ["long", "short", "short"],
                           "pnl": [10.0, -4.0, 2.5], "exit_reason": ["signal", "liquidation", "stop_loss"],
                           "funding": [-1.25, 0.5, 0.25], "interest": [0.0, -0.75, -0.5]})
    rows = dict(market_rows(config, trades))
    assert rows["Long trades"] == "1 · P&L 10.00 USDT" and rows["Short trades"] == "2 · P&L -1.50 USDT"
    assert rows["Liquidations"] == "1"
    assert rows["Funding (paid < 0)"] == "-0.50 USDT" and rows["Borrow interest (paid < 0)"] == "-1.25 USDT"
    assert rows["Leverage"] == "3×" and rows["Direction"] == "long and short"
    plain = pd.DataFrame({"symbol": ["BTC/USDT"], "side": ["long"], "pnl": [1.0], "exit_reason": ["signal"],
                          "funding": [0.0], "interest": [0.0]})
    assert market_rows(make_config(), plain) == []  # long-only spot in one quote: nothing to say


def test_the_report_and_the_detail_view_show_the_base_currency_and_converted_markets(store) -> None:
    config = make_config(**MULTI)
    report = Report(config=config)
    html = report.show_market().to_html()
    assert "Converted markets" in html and "ETH/BTC (BTC → USDT)" in html
    single = Report(config=make_config(**{**MULTI, "symbols": ["BTC/USDT"], "base_currency": None}))
    assert repr(single.show_market()).startswith("long-only spot in one quote currency")
    result = report._res()
    view = DetailView(store.save_backtest(config, result), store, refresh=60)
    try:
        assert "Base currency" in view.risk_html.value and "ETH/BTC (BTC → USDT)" in view.risk_html.value
        shown = view.trades.sort_values(["entry_time", "symbol"])  # stored in USDT: the market's prices added back
        made = result.trades.sort_values(["entry_time", "symbol"])
        assert shown["market_entry_price"].to_numpy() == pytest.approx(made["market_entry_price"].to_numpy())
        assert "Market entry" in view.trades_html.value
        view.show_symbol("ETH/BTC")  # its price chart in USDT, as the fills drawn on it
        assert view._bars_error is None and view._bars is not None
        assert float(view._bars.iloc[-1]) == pytest.approx(float(result.bars["ETH/BTC"]["close"].iloc[-1]))
        from workbench.ui.review import TITLE

        tabs = view.widget.children[-1]
        tabs.selected_index = list(tabs.titles).index(TITLE)  # the trade review, on bars in USDT as its trades
        eth = view.review.reviewed[view.review.reviewed["symbol"] == "ETH/BTC"]
        assert len(eth) and eth["mae_pct"].abs().max() < 0.2  # on BTC-priced bars it is ~100 %
    finally:
        view.close()


def test_base_currency_flag_of_backtest_and_report(capsys) -> None:
    from workbench.cli import main
    from workbench.reports.report import prepare

    few = ["--symbols", "BTC/USDT,ETH/BTC", "--start", "2024-01-01", "--end", "2024-01-01T02:00:00Z"]
    assert main(["backtest", "--no-save", *few]) == 2
    err = capsys.readouterr().err
    assert "--base-currency (base_currency): the symbols are quoted in BTC and USDT" in err
    assert main(["backtest", "--no-save", *few, "--base-currency", "USDT"]) == 0
    report = prepare(symbols="BTC/USDT,ETH/BTC", start="2024-01-01", end="2024-01-01T02:00:00Z", base_currency="USDT")
    assert report.config.currency == "USDT"

"""Base currency (issue 15): a BTC/USDT + ETH/BTC session trades, values and reports in USDT."""
from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from tests.test_execution_parity import canonical
from workbench.backtest import run_backtest
from workbench.config import ConfigError, make_config
from workbench.data import sample_bars
from workbench.data.currency import to_base, with_market_prices
from workbench.data.schema import BarsError
from workbench.engine.session import Session

T = pd.date_range("2024-01-01", periods=3, freq="1min", tz="UTC", name="time")


def _bars(closes: list[float], opens: list[float] | None = None) -> pd.DataFrame:
    o = opens or closes
    return pd.DataFrame({"open": o, "high": np.maximum(o, closes) * 1.01, "low": np.minimum(o, closes) * 0.99,
                         "close": closes, "volume": [5.0] * len(closes)}, index=T[:len(closes)])


def multi(**fields: object):
    base: dict = {"kind": "paper", "strategy": "sma_cross", "params": {"fast": 5, "slow": 20},
                  "symbols": ["BTC/USDT", "ETH/BTC"], "base_currency": "USDT",
                  "sizing": {"mode": "percent_equity", "value": 0.4}, "risk": {"stop_loss": 0.004},
                  "start": "2024-01-01", "end": "2024-01-02"}
    return make_config(**{**base, **fields})


def test_a_session_whose_symbols_have_different_quotes_must_name_its_base_currency() -> None:
    with pytest.raises(ConfigError) as e:
        make_config(symbols=["BTC/USDT", "ETH/BTC"])
    assert "quoted in BTC and USDT" in e.value.by_field()["base_currency"]
    assert make_config(symbols=["BTC/USDT", "ETH/USDT"]).currency == "USDT"  # the common quote
    assert multi().currency == "USDT"
    with pytest.raises(ConfigError, match="base_currency: a live session trades in its markets' quote"):
        multi(kind="live")
    with pytest.raises(ConfigError, match="currency code in capitals"):
        multi(base_currency="usdt")


def test_conversion_by_hand() -> None:
    eth_btc = _bars([0.05, 0.06, 0.04])
    btc_usdt = _bars([40_000.0, 50_000.0, 30_000.0], opens=[39_000.0, 41_000.0, 49_000.0])
    out = to_base({"ETH/BTC": eth_btc}, "USDT", lambda pair: {"BTC/USDT": btc_usdt}[pair])
    conv = out["ETH/BTC"]
    # each price × BTC/USDT's close of the same bar: 0.05 × 40 000 = 2 000, 0.06 × 50 000 = 3 000, 0.04 × 30 000
    assert conv["close"].tolist() == pytest.approx([2_000.0, 3_000.0, 1_200.0])
    assert conv["high"].iloc[1] == pytest.approx(0.06 * 1.01 * 50_000.0)
    assert conv["volume"].tolist() == [5.0] * 3  # ETH units: unchanged
    assert out.rates["ETH/BTC"].tolist() == [40_000.0, 50_000.0, 30_000.0]
    # the inverse pair: BTC prices in a USDT-quoted market, base BTC: ÷ BTC/USDT
    inv = to_base({"BTC/USDT": btc_usdt, "SOL/USDT": _bars([100.0, 100.0, 100.0])}, "BTC", lambda p: {}[p])
    assert inv["SOL/USDT"]["close"].tolist() == pytest.approx([0.0025, 0.002, 100 / 30_000])
    # a trade's market prices: ETH/BTC bought at bar 0 (2 000 USDT) and sold at bar 2 (1 200 USDT)
    trades = pd.DataFrame({"symbol": ["ETH/BTC", "BTC/USDT"], "entry_time": [T[0], T[0]], "exit_time": [T[2], pd.NaT],
                           "entry_price": [2_000.0, 40_000.0], "exit_price": [1_200.0, 30_000.0]})
    got = with_market_prices(trades, out.rates)
    assert got["market_entry_price"].tolist() == pytest.approx([0.05, 40_000.0])
    assert got["market_exit_price"].tolist() == pytest.approx([0.04, 30_000.0])
    with pytest.raises(BarsError, match="cannot convert BTC prices into the base currency USDT"):
        to_base({"ETH/BTC": eth_btc}, "USDT", lambda pair: sample_bars("NOPE/X"))
    late = btc_usdt.iloc[1:]
    with pytest.raises(BarsError, match="no BTC/USDT bar at or before 2024-01-01 00:00:00"):
        to_base({"ETH/BTC": eth_btc}, "USDT", lambda pair: late)


@pytest.mark.parametrize("fields", [{}, {"direction": "both", "margin": {"leverage": 2, "funding_rate": 0.0001}}],
                         ids=["long", "shorts-margin-funding"])
def test_backtest_and_paper_make_the_same_trades_in_the_base_currency(store, fields: dict) -> None:
    config = multi(**fields)
    result = run_backtest(config)  # loads ETH/BTC and BTC/USDT from the sample data, converts ETH/BTC
    trades = result.trades
    eth = trades[trades.symbol == "ETH/BTC"]
    assert len(eth) > 3 and (eth.entry_price > 1_000).all() and (eth.market_entry_price < 0.2).all()
    rate = sample_bars("BTC/USDT", days=2)["close"]
    first = eth.iloc[0]
    assert first.entry_price == pytest.approx(first.market_entry_price * rate[first.entry_time])
    assert (trades[trades.symbol == "BTC/USDT"].eval("entry_price == market_entry_price")).all()
    if not fields:  # the fees and P&L are USDT: the pnl of a closed ETH/BTC trade from the converted prices
        closed = eth[eth.status == "closed"].iloc[0]
        gross = closed.quantity * (closed.exit_price - closed.entry_price)
        assert closed.pnl == pytest.approx(gross - closed.entry_fees - closed.exit_fees)
    else:
        assert (eth.side == "short").any() and eth.funding.abs().sum() > 0
    session = Session(config, store, checkpoint_interval=1000)  # its own feed: the shipped replay of the data
    assert asyncio.run(session.run()).value == "completed", store.events(session.id).message.tolist()
    got, expected = canonical(pd.DataFrame(session.portfolio.trade_log(include_open=True))), canonical(trades)
    assert len(got) == len(expected) > 10
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-9)
    assert store.get_session(session.id)["final_equity"] == pytest.approx(result.equity.iloc[-1])


def test_the_risk_report_values_a_converted_market_in_the_base_currency() -> None:
    from workbench.engine.exposure import default_bars_loader

    end = pd.Timestamp("2024-01-01 06:00", tz="UTC")
    got = default_bars_loader(multi(), "ETH/BTC", end.to_pydatetime(), bars=30)
    eth, btc = sample_bars("ETH/BTC", days=1)["close"], sample_bars("BTC/USDT", days=1)["close"]
    assert got["close"].iloc[-1] == pytest.approx(eth[end] * btc[end])  # USDT, as the session's positions


def test_the_console_header_never_adds_equity_of_two_base_currencies(store) -> None:
    from tests.test_ui_console import running, text
    from workbench.ui.console import console_summary, header_html

    running(store, equity=10_500.0)
    running(store, equity=0.25, exposure=0.0, initial_balance=0.2, symbols=["ETH/BTC"])  # a BTC session
    s = console_summary(store)
    assert s.mixed == {"USDT": 10_500.0, "BTC": 0.25} and s.equity != s.equity  # NaN: no sum
    assert "Equity 0.25 BTC · 10,500 USDT" in text(header_html(s))
    running(store, equity=1_000.0, symbols=["ETH/BTC", "BTC/USDT"], base_currency="USDT")
    assert console_summary(store).mixed["USDT"] == pytest.approx(11_500.0)


def test_the_risk_report_does_not_add_up_sessions_in_two_base_currencies(store) -> None:
    from tests.test_ui_console import running
    from workbench.account import RiskPolicy
    from workbench.engine.exposure import risk_report

    running(store, equity=10_500.0)
    assert risk_report(store, policy=RiskPolicy()).total_equity == pytest.approx(10_500.0)
    running(store, equity=0.25, exposure=0.0, initial_balance=0.2, symbols=["ETH/BTC"])
    report = risk_report(store, policy=RiskPolicy())
    assert report.total_equity != report.total_equity and report.total_exposure != report.total_exposure
    assert any("in BTC and USDT: total equity and exposure are not added up" in p for p in report.problems)


def test_a_paper_ab_of_a_multi_quote_session_replays_bars_in_the_base_currency(store) -> None:
    from workbench.ab import ab_paper

    config = multi(start="2024-01-01T00:00:00Z", end="2024-01-01T03:59:00Z")
    res = asyncio.run(ab_paper(config, [{}, {}], store, poll_interval=0.05, label="fx", n_boot=100))
    expected = run_backtest(config).equity
    got = store.equity(res.session_ids["A"])["equity"]
    assert len(got) == len(expected) and got.iloc[-1] == pytest.approx(expected.iloc[-1], rel=1e-9)


def test_a_csv_session_is_not_converted_with_its_own_file(tmp_path) -> None:
    path = tmp_path / "eth_btc.csv"
    eth = sample_bars("ETH/BTC", days=1).iloc[:300]
    eth.to_csv(path)
    config = make_config(symbols=["ETH/BTC"], base_currency="USDT", data={"source": "csv", "csv_path": str(path)})
    with pytest.raises(BarsError, match="holds one market's bars, not BTC/USDT's; pass BTC/USDT's bars too"):
        run_backtest(config)  # the file's ETH/BTC bars are no BTC/USDT rate
    btc = sample_bars("BTC/USDT", days=1).iloc[:300]
    result = run_backtest(config, bars={"ETH/BTC": eth, "BTC/USDT": btc})
    assert result.bars["ETH/BTC"]["close"].to_numpy() == pytest.approx((eth["close"] * btc["close"]).to_numpy())

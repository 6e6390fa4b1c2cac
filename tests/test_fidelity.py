"""The fidelity twin: a paper session against its own config backtested on the bars it saw."""
from __future__ import annotations

import asyncio

import pandas as pd
import pytest

import workbench
from tests.kit import paper_config
from workbench.engine.brokers.paper import PaperBroker
from workbench.engine.session import Session
from workbench.twin import compare_trades, fidelity, fidelity_summary

STOPS = {"stop_loss": 0.006, "take_profit": 0.01, "trailing_stop": 0.004}


def _config(**fields):
    return paper_config(start="2024-01-02", end="2024-01-02T23:59:00", data={"source": "sample"}, risk=STOPS,
                        **fields)


def _run(store, config, broker=None):
    session = Session(config, store, broker=broker, checkpoint_interval=1000)
    assert asyncio.run(session.run()).value == "completed", store.events(session.id).message.tolist()
    return session.id


def test_a_paper_session_replaying_sample_bars_has_zero_divergence(store):
    sid = _run(store, _config())
    twin = workbench.fidelity(sid, store)
    s = twin.summary
    assert s["matched"] > 5 and s["missing"] == s["extra"] == 0
    assert s["pnl_gap"] == pytest.approx(0.0, abs=1e-6) and s["session_pnl"] != 0
    assert (twin.trades["match"] == "matched").all() and twin.trades["entry_bps"].abs().max() < 1e-9
    assert twin.identical
    assert fidelity_summary(twin)["identical"] is True
    assert twin.upto == pd.Timestamp("2024-01-02T23:59:00", tz="UTC")
    row = store.get_session(sid)
    assert row["regime"] in ("trending", "ranging", "high-volatility")  # recorded as the session ended
    from workbench.reports.sections import fidelity_table

    table = fidelity_table(sid, store)["value"]  # the report's section
    assert table["identical"] is True and table["matched"] == s["matched"] and table["missing"] == 0


def test_extra_slippage_in_the_session_broker_shows_as_divergence(store):
    config = _config()
    slipped = config.model_copy(update={"slippage": config.slippage.model_copy(update={"bps": 25.0})})
    sid = _run(store, config, broker=PaperBroker(slipped))  # the store (and the twin) keep 5 bps
    twin = fidelity(sid, store)
    s = twin.summary
    assert not twin.identical
    matched = twin.trades[twin.trades["match"] == "matched"]
    assert len(matched) >= 3
    buys = matched["entry_bps"]  # long entries paid ~20 bps more than the twin
    assert buys.median() == pytest.approx(20.0, abs=1.0)
    assert s["pnl_gap"] < 0 and s["session_pnl"] < s["twin_pnl"]
    assert "P&L gap -" in twin.text()


def test_trades_not_saved_yet_are_rebuilt_from_the_fills(store):
    from workbench.domain import TRADE_COLUMNS

    sid = _run(store, _config())
    full = fidelity(sid, store)
    store.save_trades(sid, pd.DataFrame(columns=list(TRADE_COLUMNS)))  # as while it runs: fills, no trade list
    assert len(store.fills(sid)) and not len(store.trades(sid))
    again = fidelity(sid, store, bars=full.twin.bars)
    assert again.summary["matched"] == full.summary["matched"] and again.identical


def test_matching_names_missing_and_extra_trades():
    t = pd.Timestamp("2024-01-01", tz="UTC")
    row = dict(quantity=1.0, exit_time=None, duration=None, fees=0.0, exit_reason="signal", status="closed")
    ours = pd.DataFrame([dict(symbol="A", entry_time=t, entry_price=101.0, exit_price=110.0, pnl=9.0, **row),
                         dict(symbol="B", entry_time=t, entry_price=50.0, exit_price=51.0, pnl=1.0, **row)])
    theirs = pd.DataFrame([dict(symbol="A", entry_time=t, entry_price=100.0, exit_price=110.0, pnl=10.0, **row),
                           dict(symbol="A", entry_time=t + pd.Timedelta("1h"), entry_price=90.0, exit_price=95.0,
                                pnl=5.0, **row)])
    out = compare_trades(ours, theirs).set_index(["symbol", "entry_time"])
    assert out.loc[("A", t), "match"] == "matched"
    assert out.loc[("A", t), "entry_bps"] == pytest.approx(100.0)
    assert out.loc[("A", t), "pnl_gap"] == pytest.approx(-1.0)
    assert out.loc[("B", t), "match"] == "extra"
    assert out.loc[("A", t + pd.Timedelta("1h")), "match"] == "missing"


def test_a_backtest_has_no_twin(store):
    from workbench.backtest import run_backtest

    config = _config(kind="backtest")
    sid = store.save_backtest(config, run_backtest(config))
    with pytest.raises(ValueError, match="is a backtest; a fidelity twin is for paper and live"):
        fidelity(sid, store)


# ---- the detail view's tab ----------------------------------------------------------------------
def _tab(detail, title):
    import ipywidgets as W

    tabs = next(w for w in detail.widget.children if isinstance(w, W.Tab))
    return tabs, list(tabs.titles).index(title) if title in tabs.titles else None


def test_detail_view_shows_the_twin_and_its_divergent_trades_first(store):
    from workbench.ui.detail import DetailView

    config = _config()
    slipped = config.model_copy(update={"slippage": config.slippage.model_copy(update={"bps": 25.0})})
    sid = _run(store, config, broker=PaperBroker(slipped))
    detail = DetailView(sid, store, refresh=60)
    try:
        tabs, index = _tab(detail, "Fidelity twin")
        assert detail.fidelity is None  # built when first selected
        tabs.selected_index = index
        panel = detail.fidelity
        assert "diverges from its twin" in panel.summary.value and "P&amp;L gap -" in panel.summary.value
        assert panel.gap < 0
        first_row = panel.table.value.split("<tr")[2]  # after the header row
        assert "matched" in first_row and "20." in first_row  # a trade filled ~20 bps off, listed first
        panel.refresh_button.click()  # recomputed on demand
        assert panel.gap == pytest.approx(fidelity(sid, store).summary["pnl_gap"])
    finally:
        detail.close()


def test_a_backtest_detail_view_has_no_twin_tab(store):
    from workbench.backtest import run_backtest
    from workbench.ui.detail import DetailView

    config = _config(kind="backtest")
    detail = DetailView(store.save_backtest(config, run_backtest(config)), store, refresh=60)
    try:
        assert _tab(detail, "Fidelity twin")[1] is None
    finally:
        detail.close()


def test_cli_session_fidelity_prints_the_summary_and_json(store_url, capsys):
    import json

    from workbench.cli import main
    from workbench.store import Store

    with Store(store_url) as st:
        config = _config()
        slipped = config.model_copy(update={"slippage": config.slippage.model_copy(update={"bps": 25.0})})
        sid = _run(st, config, broker=PaperBroker(slipped))
    assert main(["session", "fidelity", sid, "--db", store_url, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["session_id"] == sid and doc["identical"] is False and doc["pnl_gap"] < 0
    assert {t["match"] for t in doc["trades"]} == {"matched"} and len(doc["trades"]) == doc["matched"]
    assert main(["session", "fidelity", sid, "--db", store_url]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("twin up to 2024-01-02 23:59 UTC:") and "match" in lines[1] and "matched" in lines[2]


def test_a_running_session_is_compared_up_to_its_checkpoint(store_url):
    """The twin while the session runs: its feed holds after 700 bars, the runner has checkpointed them."""
    import threading

    from tests.kit import wait_until
    from workbench.engine.feeds import ReplayFeed
    from workbench.store import Store

    config = _config()
    bars = ReplayFeed.shared(config.data, config.symbols, config.start, config.end).block
    go = threading.Event()

    class HeldFeed:  # the replay, held after 700 bars until the test lets it go on
        def __aiter__(self):
            return self._run()

        async def _run(self):
            for i, step in enumerate(ReplayFeed(bars).bars()):
                while i == 700 and not go.is_set():
                    await asyncio.sleep(0.01)
                yield step

    store = Store(store_url)
    session = Session(config, store, feed=HeldFeed(), checkpoint_interval=100, poll_interval=0.05)
    runner = threading.Thread(target=lambda: asyncio.run(session.run()), daemon=True)
    runner.start()
    try:
        held = pd.Timestamp("2024-01-02", tz="UTC") + pd.Timedelta(minutes=699)
        wait_until(lambda: (store.load_runner_state(session.id) or {}).get("last_bar") == held, timeout=30)
        twin = fidelity(session.id, store)
        assert twin.upto == held and store.get_session(session.id)["state"] == "running"
        assert twin.summary["matched"] > 3 and twin.identical, twin.summary
    finally:
        go.set()
        runner.join(30)
        store.close()
    assert not runner.is_alive()


def test_a_session_without_a_start_is_compared_from_its_first_bar(store):
    from workbench.data import sample_bars
    from workbench.engine.feeds import ReplayFeed

    config = paper_config(data={"source": "sample"}, risk=STOPS)  # no start or end: the feed decides
    bars = {"BTC/USDT": sample_bars("BTC/USDT", days=2).loc["2024-01-01T06:00":]}
    session = Session(config, store, feed=ReplayFeed(bars), checkpoint_interval=1000)
    assert asyncio.run(session.run()).value == "completed"
    twin = fidelity(session.id, store)
    assert twin.twin.equity.index[0] == pd.Timestamp("2024-01-01T06:00", tz="UTC")
    assert twin.identical and twin.summary["matched"] > 5

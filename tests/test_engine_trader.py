"""The store-free Trader step and its brokers: replay() agrees with the backtest, the step's flattening and
entry switches, fills and rejections through the one callback, and both brokers fit the protocol."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from workbench.backtest import run_backtest
from workbench.config import make_config
from workbench.data import sample_bars
from workbench.domain import TRADE_COLUMNS, Order, OrderStatus, Side
from workbench.engine.brokers import Broker, PaperBroker
from workbench.engine.brokers.exchange import ExchangeBroker
from workbench.engine.ccxt_broker import CcxtBroker
from workbench.engine.trader import Trader, replay
from workbench.execution import Bar

BTC, ETH = "BTC/USDT", "ETH/USDT"
T0 = datetime(2024, 1, 8, 10, tzinfo=timezone.utc)


def config(**kw):
    base = dict(kind="paper", strategy="sma_cross", params={"fast": 5, "slow": 20}, symbols=[BTC, ETH],
                initial_balance=10_000, sizing={"mode": "fixed_amount", "value": 2_000}, commission={"taker": 0.001},
                risk={"stop_loss": 0.01, "trailing_stop": 0.008})
    return make_config(**{**base, **kw})


def bar(minute: int, o: float = 100.0, h: float = 101.0, lo: float = 99.0, c: float = 100.5, v: float = 1e6) -> Bar:
    return Bar(T0 + timedelta(minutes=minute), o, h, lo, c, v)


def test_replay_makes_the_backtests_trades_and_names_missing_frames():
    cfg = config()
    frames = {s: sample_bars(s, days=2) for s in cfg.symbols}
    got = replay(cfg, frames, include_open=True)  # booking (exit) order: sorted like the backtest's here
    got = got.sort_values(["entry_time", "symbol"], kind="stable").reset_index(drop=True)
    want = run_backtest(cfg, frames).trades.sort_values(["entry_time", "symbol"], kind="stable").reset_index(drop=True)
    assert list(got.columns) == list(TRADE_COLUMNS) and len(got) == len(want) > 10
    assert (got.entry_time.to_numpy() == want.entry_time.to_numpy()).all()
    assert got.symbol.tolist() == want.symbol.tolist()
    assert got.exit_reason.fillna("").tolist() == want.exit_reason.fillna("").tolist()
    assert np.allclose(got.exit_price, want.exit_price, rtol=1e-9) and np.allclose(got.pnl, want.pnl, rtol=1e-9)
    closed = replay(cfg, frames)
    assert (closed.status == "closed").all() and len(closed) == (want.status == "closed").sum()
    with pytest.raises(ValueError, match="no bars for ETH/USDT; frames has BTC/USDT"):
        replay(cfg, {BTC: frames[BTC]})


def _trader(**kw) -> tuple[Trader, list, list]:
    t = Trader(config(**kw), PaperBroker(config(**kw)))
    t.signals = lambda bars, t_ns: None  # signals set by hand
    fills: list = []
    ended: list = []
    t.on_fill = lambda f, o: fills.append((f.symbol, f.side, f.reason))
    t.on_order = lambda o, why: ended.append((o.client_id, o.status, why))
    return t, fills, ended


def test_step_enters_in_symbol_order_then_flattens_when_stopping_and_honours_close_all_and_pause():
    t, fills, _ = _trader(risk={})  # no stops: only the switches exit
    t.pending.update({BTC: (True, False), ETH: (True, False)})
    t.step({BTC: bar(0), ETH: bar(0)}, entries=False)  # paused: no entries
    assert fills == [] and t.open_symbols() == []
    t.step({BTC: bar(1), ETH: bar(1)})
    assert fills == [(BTC, Side.BUY, "entry"), (ETH, Side.BUY, "entry")]
    t.pending.update({BTC: (False, False), ETH: (False, False)})
    t.close_all = {ETH}
    t.step({BTC: bar(2), ETH: bar(2)})
    assert fills[-1] == (ETH, Side.SELL, "close_all") and t.open_symbols() == [BTC] and not t.close_all
    t.step({BTC: bar(3)}, stopping=True)
    assert fills[-1] == (BTC, Side.SELL, "end") and t.open_symbols() == [] and t.bars_seen == 4


def test_a_halted_breaker_holds_the_exit_signal_and_the_stop_still_fires_on_that_bar():
    t, fills, _ = _trader(risk={"stop_loss": 0.01})  # stop at 99.0
    t.pending[BTC] = (True, False)
    t.step({BTC: bar(0)})
    t.risk.trip("test", state="halted")
    t.pending[BTC] = (False, True)
    t.step({BTC: bar(1, o=100.0, h=100.2, lo=99.5)})  # no stop level reached: the signal is held
    assert fills == [(BTC, Side.BUY, "entry")] and t.open_symbols() == [BTC]
    assert not [e for e in t.risk.drain_events() if e["kind"] == "order_rejected"]  # held, not sent and refused
    t.step({BTC: bar(2, o=99.5, h=99.6, lo=98.0)})  # the stop loss runs on a bar with a held signal
    assert fills[-1] == (BTC, Side.SELL, "stop_loss") and t.open_symbols() == []


def test_paper_fills_and_rejections_come_through_the_callbacks():
    t, fills, ended = _trader()
    t.broker.submit(Order("x", BTC, Side.BUY, 1.0, created_at=T0, reason="entry"), bar(0), cash=0.0)  # unaffordable
    assert fills == [] and ended == [("x", OrderStatus.REJECTED, "buy BTC/USDT not filled by the broker (entry)")]
    t, fills, ended = _trader()
    t.broker.submit(Order("op1", BTC, Side.BUY, 1.0, created_at=T0, reason="operator"))  # rests: fills at an open
    t.broker.submit(Order("op2", ETH, Side.SELL, 1.0, created_at=T0, reason="operator"))  # nothing to sell
    t.step({BTC: bar(0), ETH: bar(0)})
    assert fills == [(BTC, Side.BUY, "operator")] and t.portfolio.quantity(BTC) == 1.0
    why = "sell op2 of ETH/USDT canceled: no position left to sell (long-only)"
    assert ended == [("op2", OrderStatus.CANCELED, why)]


def test_both_brokers_fit_the_protocol(store):
    cfg = config()
    assert isinstance(PaperBroker(cfg), Broker)
    assert isinstance(ExchangeBroker(CcxtBroker(None), cfg, store), Broker)
    with pytest.raises(ValueError, match="resting_poll must be a positive number of seconds"):
        ExchangeBroker(CcxtBroker(None), cfg, store, resting_poll=0)

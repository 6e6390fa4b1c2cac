"""Order-book depth (execution rule 14): walking a book, queue positions, recorded books and the calibrated
impact of backtests, `workbench data record` against the loopback exchange, and the paper broker walking
the exchange's current book over real ccxt."""
from __future__ import annotations

import asyncio
import math

import numpy as np
import pandas as pd
import pytest

from tests.exchange.fixtures import async_client
from tests.exchange.server import LoopbackExchange
from workbench.backtest import run_backtest
from workbench.config import make_config
from workbench.data import sample_bars
from workbench.data.books import BookStore, book_rows, calibrated_impact, depth_config, record
from workbench.domain import Order, OrderStatus, OrderType, Side
from workbench.engine.brokers.book import BookPaperBroker
from workbench.execution import Bar
from workbench.execution.depth import QueuePosition, affordable, impact_samples, levels, walk_book

ASKS = levels([[100.0, 1.0], [101.0, 2.0], [102.0, 5.0]], "asks")
T0 = pd.Timestamp("2024-01-10 00:00", tz="UTC")


def test_a_market_order_larger_than_the_top_level_walks_levels() -> None:
    f = walk_book(ASKS, 2.5)  # 1 @ 100, then 1.5 @ 101
    assert (f.quantity, f.levels, f.exhausted) == (2.5, 2, False)
    assert f.price == pytest.approx((1 * 100 + 1.5 * 101) / 2.5)  # 100.6
    small = walk_book(ASKS, 0.5)
    assert (small.price, small.levels) == (100.0, 1)


def test_an_exhausted_book_fills_what_it_shows_and_the_rest_expires() -> None:
    f = walk_book(ASKS, 10.0)
    assert (f.quantity, f.levels, f.exhausted) == (8.0, 3, True)
    assert f.price == pytest.approx((100 + 2 * 101 + 5 * 102) / 8)


def test_bad_books_and_orders_are_named() -> None:
    with pytest.raises(ValueError, match="asks: prices must be strictly rising"):
        levels([[101.0, 1.0], [100.0, 1.0]], "asks")
    with pytest.raises(ValueError, match=r"bids: level 1 is \[99.0, -1.0\]"):
        levels([[100.0, 1.0], [99.0, -1.0]], "bids")
    with pytest.raises(ValueError, match="quantity > 0"):
        walk_book(ASKS, 0.0)


def test_cash_buys_through_the_book() -> None:
    # 1 @ 100 and 1.5 @ 101 cost 251.5, with the 1 % fee 254.015, plus the fixed fee 2
    assert affordable(ASKS, 10.0, 251.5 * 1.01 + 2.0, 0.01, 2.0) == pytest.approx(2.5)
    assert affordable(ASKS, 1.5, 1e9, 0.0, 0.0) == 1.5
    assert affordable(ASKS, 1.0, 1.0, 0.0, 2.0) == 0.0


def test_a_resting_order_fills_after_the_queue_ahead() -> None:
    bids = levels([[99.0, 5.0], [98.0, 1.0]], "bids")
    q = QueuePosition.join("buy", 99.0, 2.0, bids)
    assert q.ahead == 5.0
    assert q.on_trade(99.0, 3.0) == 0.0 and q.ahead == 2.0  # eats the queue ahead
    assert q.on_trade(100.0, 9.0) == 0.0  # above the limit: not ours
    assert q.on_trade(99.0, 3.0) == 1.0  # 2 more ahead, then 1 of ours
    assert q.on_trade(98.5, 0.1) == 1.0  # traded through the limit: the level is gone, all of it fills
    assert q.remaining == 0.0
    assert QueuePosition.join("sell", 101.0, 1.0, levels([[102.0, 3.0]], "asks")).ahead == 0.0  # a new level


def book(mid: float, n: int = 20, step: float = 0.1, amount: float = 1.0) -> dict:
    """A symmetric ccxt book: levels ``step`` apart from half a step off ``mid``, ``amount`` each."""
    return {"bids": [[mid - step * (k + 0.5), amount] for k in range(n)],
            "asks": [[mid + step * (k + 0.5), amount] for k in range(n)]}


def test_impact_calibrated_from_recorded_books_by_hand(tmp_path) -> None:
    store = BookStore(tmp_path)
    bars = sample_bars("BTC/USDT", "1m", days=1).iloc[:10].copy()
    bars["volume"] = 100.0
    store.bars.write("binance", "BTC/USDT", "1m", bars)
    for k in (2, 5):  # two snapshots inside bars 2 and 5
        store.append("binance", "BTC/USDT", book_rows(book(100.0), bars.index[k] + pd.Timedelta(seconds=20)))
    assert len(list(store.snapshots("binance", "BTC/USDT"))) == 2
    # orders of 0.1, 0.3, 1, 3 and 10 units (shares of 100): VWAP 100.05, 100.05, 100.05, 100.15, 100.5,
    # slippage vs the mid 0.0005, 0.0005, 0.0005, 0.0015, 0.005 for buys and sells alike
    x = np.array([0.001, 0.003, 0.01, 0.03, 0.1])
    y = np.array([0.0005, 0.0005, 0.0005, 0.0015, 0.005])
    xs, ys = impact_samples(*next(iter(store.snapshots("binance", "BTC/USDT")))[1:], 100.0)
    np.testing.assert_allclose(np.sort(ys), np.sort(np.repeat(y, 2)), atol=1e-12)
    cfg = make_config(depth={}, slippage={"bps": 5})
    expected = float(x @ (y - 5e-4) / (x @ x))  # least squares through the origin of slippage beyond 5 bps
    assert calibrated_impact(cfg, store) == pytest.approx(expected)
    deep = depth_config(cfg, store)
    assert (deep.slippage.model, deep.slippage.bps) == ("volume", 5.0)
    assert deep.slippage.impact == pytest.approx(expected)
    assert depth_config(cfg.replace(symbols=["ETH/USDT"]), store) .slippage == cfg.slippage  # no books: as set
    assert depth_config(make_config(slippage={"bps": 5}), store).slippage.model == "fixed"  # no depth model


def test_backtests_and_replayed_paper_take_the_calibrated_impact(tmp_path, monkeypatch, store) -> None:
    from workbench.engine import open_session

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    bars = sample_bars("BTC/USDT", "1m", days=1).iloc[:300]
    books = BookStore()
    books.bars.write("binance", "BTC/USDT", "1m", bars)
    p0 = float(bars["open"].iloc[0])  # levels 40 bp apart: 20 bp from the mid to the best, beyond the 5 bp
    books.append("binance", "BTC/USDT", book_rows(book(p0, step=p0 * 0.004),
                                                  bars.index[0] + pd.Timedelta(seconds=1)))
    cfg = make_config(strategy="sma_cross", params={"fast": 3, "slow": 8}, sizing={"mode": "fixed_quantity",
                      "value": 2.0}, volume={"max_share": 1.0})
    impact = calibrated_impact(cfg.replace(depth={}))
    assert impact is not None and impact > 0
    deep = run_backtest(cfg.replace(depth={}), bars=bars).trades
    same = run_backtest(cfg.replace(slippage={"model": "volume", "impact": impact}), bars=bars).trades
    plain = run_backtest(cfg, bars=bars).trades
    pd.testing.assert_series_equal(deep["entry_price"], same["entry_price"])
    assert (deep["entry_price"] > plain["entry_price"]).all()
    paper = open_session(cfg.replace(kind="paper", depth={}), store)  # a replayed paper session: the same impact
    assert paper.config.slippage.impact == impact and paper.broker.config.slippage.impact == impact
    assert store.get_session(paper.id)["config"].slippage.impact == impact


def test_record_books_and_bars_from_the_loopback_exchange(tmp_path) -> None:
    t = [T0.timestamp() + 5.0]  # a wall clock inside the loopback's sample bars
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        t[0] += s

    with LoopbackExchange(symbols=("BTC/USDT", "ETH/USDT"), days=30) as lx:
        out = record(lx.ccxt_client(), ["BTC/USDT", "ETH/USDT"], 2, every=30.0, depth=20, store=BookStore(tmp_path),
                     clock=lambda: t[0], sleep=sleep, flush_seconds=60.0)
    assert out.snapshots == {"BTC/USDT": 4, "ETH/USDT": 4} and slept == [30.0] * 3
    store = BookStore(tmp_path)
    snaps = list(store.snapshots("binance", "BTC/USDT"))
    assert [s[0] for s in snaps] == [T0 + pd.Timedelta(seconds=5 + 30 * k) for k in range(4)]
    _, bids, asks = snaps[0]
    assert len(bids) == len(asks) == 20 and asks[0, 0] > bids[0, 0]
    cached = store.bars.read("binance", "BTC/USDT", "1m")
    assert out.bars["BTC/USDT"] == len(cached) == 2 and list(cached.index) == [T0, T0 + pd.Timedelta(minutes=1)]
    deep = make_config(depth={}, slippage={"bps": 0}, symbols=["BTC/USDT", "ETH/USDT"])
    assert calibrated_impact(deep, store) > 0  # the loopback's levels are 1 bp apart: beyond 0 bp


def test_cli_record_writes_into_the_data_dir(tmp_path, monkeypatch, capsys) -> None:
    from workbench.cli import main
    from workbench.data import ccxt_source

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    with LoopbackExchange(symbols=("BTC/USDT",), days=30) as lx:
        real = ccxt_source.make_exchange
        monkeypatch.setattr(ccxt_source, "make_exchange", lambda e: real(lx.ccxt_client() if e == "binance" else e))
        assert main(["data", "record", "--symbols", "BTC/USDT", "--minutes", "0.01", "--every", "5"]) == 0
        assert main(["data", "record", "--symbols", "NOPE/USDT", "--minutes", "1"]) == 2
    assert "does not list NOPE/USDT" in capsys.readouterr().err
    assert len(list(BookStore().snapshots("binance", "BTC/USDT"))) >= 1


def bar(price: float) -> Bar:
    return Bar(T0.to_pydatetime(), price, price * 1.01, price * 0.99, price, 50.0)


def test_paper_on_live_data_walks_the_exchange_book() -> None:
    """The loopback's book: levels 1 bp apart from the price, 1 unit each; a buy of 2.5 takes 1 @ p(1+1e-4),
    1 @ p(1+2e-4) and 0.5 @ p(1+3e-4)."""
    cfg = make_config(kind="paper", data={"source": "ccxt", "live": True}, depth={"max_age_s": 60},
                      commission={"taker": 0.001})

    async def run() -> None:
        with LoopbackExchange(symbols=("BTC/USDT",), days=30, clock="2024-01-10") as lx:
            client = async_client(lx)
            broker = BookPaperBroker(cfg, client, poll=0.05)
            try:
                await broker.start()
                for _ in range(200):
                    if broker.book("BTC/USDT") is not None:
                        break
                    await asyncio.sleep(0.02)
                bids, asks = broker.book("BTC/USDT")  # type: ignore[misc]
                p = asks[0, 0] / (1 + 1e-4)
                buy = Order("e1", "BTC/USDT", Side.BUY, 2.5, reason="entry")
                fill = broker.execute(buy, bar(p), cash=1e9)
                assert fill is not None and fill.quantity == 2.5 and buy.status is OrderStatus.FILLED
                assert fill.price == pytest.approx(p * (1 + (1e-4 + 2e-4 + 0.5 * 3e-4) / 2.5), rel=1e-9)
                assert fill.commission == pytest.approx(2.5 * fill.price * 0.001)
                big = Order("x1", "BTC/USDT", Side.SELL, 25.0, reason="signal")  # 20 levels shown: 20 fill
                fill = broker.execute(big, bar(p), cash=1e9)
                assert fill is not None and fill.quantity == 20.0 and big.status is OrderStatus.CANCELED
                assert fill.price == pytest.approx(p * (1 - 1e-4 * 10.5), rel=1e-9)
                stop = Order("s1", "BTC/USDT", Side.SELL, 1.0, reason="stop_loss", stop_price=p * 0.98)
                fill = broker.execute(stop, bar(p), cash=1e9)  # a stop exit keeps the bar rule: its level
                assert fill is not None and fill.price < p * 0.98
                limit = Order("l1", "BTC/USDT", Side.BUY, 1.0, type=OrderType.LIMIT, limit_price=float(bids[0, 0]))
                broker.rest(limit)
                assert broker.queues["l1"].ahead == 1.0  # the loopback shows 1 unit at each level
            finally:
                await broker.finish()
                await client.close()

    asyncio.run(run())


def test_a_touched_limit_waits_for_its_queue() -> None:
    cfg = make_config(kind="paper", depth={"max_age_s": 60})
    broker = BookPaperBroker(cfg, exchange=None, clock=lambda: 0.0)
    broker.update_book("BTC/USDT", {"bids": [[99.0, 80.0]], "asks": [[101.0, 1.0]]})
    broker.rest(Order("l1", "BTC/USDT", Side.BUY, 1.0, type=OrderType.LIMIT, limit_price=99.0))
    touch = Bar(T0.to_pydatetime(), 100.0, 101.0, 99.0, 100.0, 50.0)  # low == limit: 50 traded at 99, 80 ahead
    assert broker.fill_resting("BTC/USDT", touch) == []
    touch2 = Bar((T0 + pd.Timedelta(minutes=1)).to_pydatetime(), 100.0, 101.0, 99.0, 100.0, 50.0)
    state = broker.snapshot()  # a resumed session keeps its place in the queue (30 ahead now)
    assert state[0]["queue_ahead"] == 30.0
    broker = BookPaperBroker(cfg, exchange=None, clock=lambda: 0.0)
    broker.restore(state)
    fills = broker.fill_resting("BTC/USDT", touch2)  # 100 traded at 99 in all > 80 ahead
    assert [f.quantity for f in fills] == [1.0] and math.isclose(fills[0].price, 99.0)
    assert broker.queues == {}


def test_a_paper_session_on_live_data_fills_entries_through_the_book(store) -> None:
    """open_session gives a paper session on live data with depth.model 'book' the BookPaperBroker: its entry of
    2.5 BTC walks the loopback's book (1 unit a level, 1 bp apart: VWAP p(1 + 1.8e-4)), not the bar's 5 bp."""
    from tests.kit import until
    from tests.live_kit import ALWAYS_IN
    from workbench.engine import open_session

    config = make_config(kind="paper", strategy="momentum", params=ALWAYS_IN, symbols=["BTC/USDT"],
                         initial_balance=1_000_000.0, sizing={"mode": "fixed_quantity", "value": 2.5},
                         data={"source": "ccxt", "live": True}, live={"stale_bars": 50}, depth={"max_age_s": 60})

    async def go(lx: LoopbackExchange) -> tuple[float, list[float]]:
        client = async_client(lx)
        try:
            s = open_session(config, store, exchange=client, poll_interval=0.05)
            assert isinstance(s.broker, BookPaperBroker)
            s.broker.poll = s._feed.poll_seconds = 0.01  # type: ignore[union-attr]
            s.start()
            opens = []
            for n in range(1, 12):  # one bar at a time until the strategy has entered
                opens.append(lx.book.price("BTCUSDT"))
                await until(lambda n=n: s.bars_seen >= n)
                if s.portfolio.quantity("BTC/USDT") > 0:
                    break
                lx.advance(1)
            s.stop()
            lx.advance(1)
            await asyncio.wait_for(s.wait(), 5)
            return float(store.fills(s.id)["price"].iloc[0]), opens[-2:]
        finally:
            await client.close()

    with LoopbackExchange(symbols=("BTC/USDT",), days=30, clock="2024-01-10") as lx:
        price, recent = asyncio.run(go(lx))
    # the book the broker saw was this bar's or (fetched just before the bar moved) the previous one's
    assert any(math.isclose(price, p * (1 + 1.8e-4), rel_tol=1e-9) for p in recent), (price, recent)

"""PaperBroker: market/limit fills against bars, fees, partial fills under the volume rule, cash,
cancels, immediate execution of stop exits."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from workbench.config import make_config
from workbench.domain import Order, OrderStatus, OrderType, Side
from workbench.engine.brokers import PaperBroker
from workbench.execution import Bar

T0 = datetime(2024, 1, 8, 10, tzinfo=timezone.utc)
BTC = "BTC/USDT"
BEFORE = T0 - timedelta(minutes=1)


def broker(**volume) -> PaperBroker:
    return PaperBroker(make_config(
        kind="paper", commission={"taker": 0.001, "maker": 0.0002}, slippage={"bps": 10}, volume=volume,
    ))


def bar(minute=0, o=100.0, h=105.0, lo=95.0, c=101.0, v=1000.0) -> Bar:
    return Bar(T0 + timedelta(minutes=minute), o, h, lo, c, v)


def market(qty, side=Side.BUY, cid="m1", created=BEFORE) -> Order:
    return Order(cid, BTC, side, qty, created_at=created, reason="close_all" if side is Side.SELL else "operator")


def limit(qty, price, side=Side.BUY, cid="l1") -> Order:
    return Order(cid, BTC, side, qty, OrderType.LIMIT, limit_price=price, created_at=BEFORE)


def test_market_order_fills_at_the_next_open_with_slippage_and_taker_fee():
    b = broker()
    o = b.submit(market(2))
    [f] = b.fill_resting(BTC, bar())
    assert f.price == pytest.approx(100.1) and f.quantity == 2
    assert f.commission == pytest.approx(2 * 100.1 * 0.001) and f.slippage == pytest.approx(0.2)
    assert f.time == T0 and f.fill_id == f"m1@{int(T0.timestamp())}" and f.reason == "operator"
    assert o.status is OrderStatus.FILLED and o.filled_quantity == 2 and b.open_orders() == []


def test_no_fill_at_prices_from_before_the_order_and_no_second_pass_over_a_bar():
    b = broker()
    b.submit(market(1, created=T0 + timedelta(seconds=30)))
    assert b.fill_resting(BTC, bar(0)) == []
    assert b.fill_resting(BTC, bar(0)) == []  # the same bar again is ignored
    [f] = b.fill_resting(BTC, bar(1, o=102.0))
    assert f.price == pytest.approx(102.102)


def test_limit_buy_fills_when_the_bar_trades_through_at_min_open_limit_with_maker_fee():
    b = broker()
    o = b.submit(limit(1, 95.0))
    assert b.fill_resting(BTC, bar(0, o=100, lo=96)) == []
    [f] = b.fill_resting(BTC, bar(1, o=97, lo=94))
    assert f.price == 95.0 and f.commission == pytest.approx(95 * 0.0002) and f.slippage == 0.0
    assert o.status is OrderStatus.FILLED
    b.submit(limit(1, 95.0, cid="l2"))
    [f] = b.fill_resting(BTC, bar(2, o=93, h=96, lo=92))  # opened below the limit: at the open
    assert f.price == 93.0


def test_limit_sell_fills_at_max_open_limit():
    b = broker()
    b.submit(limit(1, 110.0, Side.SELL))
    assert b.fill_resting(BTC, bar(0, o=105, h=109)) == []
    [f] = b.fill_resting(BTC, bar(1, o=108, h=111))
    assert f.price == 110.0
    b.submit(limit(1, 110.0, Side.SELL, cid="l2"))
    [f] = b.fill_resting(BTC, bar(2, o=112, h=113, lo=111))
    assert f.price == 112.0


def test_partial_fills_rest_to_later_bars_under_max_share_cap():
    b = broker(max_share=0.1, on_excess="cap")
    o = b.submit(market(12))
    [f1] = b.fill_resting(BTC, bar(0, v=50))
    assert f1.quantity == pytest.approx(5) and o.status is OrderStatus.PARTIALLY_FILLED
    assert o.remaining == pytest.approx(7)
    [f2] = b.fill_resting(BTC, bar(1, o=101, v=50))
    [f3] = b.fill_resting(BTC, bar(2, o=102, v=50))
    assert f2.quantity == pytest.approx(5) and f3.quantity == pytest.approx(2) and f3.price == pytest.approx(102.102)
    assert o.status is OrderStatus.FILLED and len({f1.fill_id, f2.fill_id, f3.fill_id}) == 3
    assert b.open_orders() == []


def test_orders_share_one_bars_volume():
    b = broker(max_share=0.1)
    a, c = b.submit(market(4, cid="a")), b.submit(market(4, cid="c"))
    fills = b.fill_resting(BTC, bar(0, v=50))
    assert [(f.client_id, f.quantity) for f in fills] == [("a", 4), ("c", pytest.approx(1))]
    assert a.status is OrderStatus.FILLED and c.status is OrderStatus.PARTIALLY_FILLED
    # an immediate execution takes from the same bar's volume
    b2 = broker(max_share=0.1)
    b2.execute(Order("x", BTC, Side.BUY, 3), bar(0, v=50))
    b2.submit(market(4))
    b2.execute(Order("y", BTC, Side.BUY, 1), bar(0, v=50))
    [f] = b2.fill_resting(BTC, bar(0, v=50))
    assert f.quantity == pytest.approx(1)


def test_skip_waits_for_a_bar_that_takes_the_whole_order_and_min_volume_blocks_fills():
    b = broker(max_share=0.1, on_excess="skip", min_bar_volume=100)
    o = b.submit(market(12))
    assert b.fill_resting(BTC, bar(0, v=99)) == []  # below min_bar_volume
    assert b.fill_resting(BTC, bar(1, v=110)) == []  # room 11 < 12
    [f] = b.fill_resting(BTC, bar(2, v=120))
    assert f.quantity == 12 and o.status is OrderStatus.FILLED


def test_buys_fill_only_what_cash_affords_and_sells_go_first():
    b = broker()
    o = b.submit(market(10))
    [f] = b.fill_resting(BTC, bar(0), cash=500.0)
    assert f.quantity == pytest.approx(500 / (100.1 * 1.001))
    assert f.quantity * f.price + f.commission == pytest.approx(500.0)
    assert o.status is OrderStatus.PARTIALLY_FILLED and b.open_orders() == [o]
    b.cancel_all()
    b.submit(market(10, cid="buy"))
    b.submit(market(5, Side.SELL, cid="sell"))
    sell_fill, buy_fill = b.fill_resting(BTC, bar(1), cash=0.0)
    assert sell_fill.client_id == "sell" and sell_fill.price == pytest.approx(99.9)
    cash = 5 * 99.9 * (1 - 0.001)
    assert buy_fill.quantity == pytest.approx(cash / (100.1 * 1.001))


def test_cancel_and_order_book():
    b = broker()
    b.submit(market(1, cid="a"))
    b.submit(limit(1, 90.0, cid="b"))
    assert [o.client_id for o in b.open_orders(BTC)] == ["a", "b"] and b.open_orders("ETH/USDT") == []
    assert b.cancel("a").status is OrderStatus.CANCELED and b.cancel("a") is None
    assert [o.client_id for o in b.cancel_all()] == ["b"] and b.open_orders() == []
    assert b.fill_resting(BTC, bar(0)) == []
    with pytest.raises(ValueError, match="limit_price"):
        b.submit(Order("c", BTC, Side.BUY, 1, OrderType.LIMIT))
    b.submit(market(1, cid="d"))
    with pytest.raises(ValueError, match="already open"):
        b.submit(market(1, cid="d"))
    with pytest.raises(ValueError):
        b.submit(market(0, cid="e"))


def test_execute_fills_now_at_the_open_or_the_stop_level():
    b = broker()
    entry = Order("e", BTC, Side.BUY, 2, reason="entry")
    f = b.execute(entry, bar())
    assert f.price == pytest.approx(100.1) and entry.status is OrderStatus.FILLED and f.reason == "entry"
    stop = Order("s", BTC, Side.SELL, 2, reason="stop_loss", stop_price=97.0)
    f = b.execute(stop, bar(1, o=99, lo=96))
    assert f.price == pytest.approx(97 * 0.999) and f.slippage == pytest.approx(2 * 0.097)
    assert f.commission == pytest.approx(2 * 97 * 0.999 * 0.001)
    with pytest.raises(ValueError):
        b.execute(stop, bar(2))  # already done


def test_execute_cash_limits_and_rejections():
    b = broker()
    o = Order("e", BTC, Side.BUY, 10)
    f = b.execute(o, bar(), cash=500.0)
    assert f.quantity == pytest.approx(500 / (100.1 * 1.001)) and o.status is OrderStatus.CANCELED
    broke = Order("z", BTC, Side.BUY, 1)
    assert b.execute(broke, bar(), cash=0.0) is None and broke.status is OrderStatus.REJECTED
    pricey = PaperBroker(make_config(kind="paper", commission={"fixed": 10.0}))
    dust = Order("d", BTC, Side.SELL, 1)
    assert pricey.execute(dust, bar(o=5.0)) is None and dust.status is OrderStatus.REJECTED


def test_resting_sells_fill_at_most_the_position_and_the_book_survives_a_snapshot():
    b = broker()
    b.submit(market(3, Side.SELL, cid="s1"))
    b.submit(limit(2, 102.0, Side.SELL, cid="s2"))  # traded through by bar(): only the position stops it
    [f] = b.fill_resting(BTC, bar(), held=2.5)  # s1 takes 2.5 of the 2.5 held; s2 has nothing left
    assert (f.client_id, f.quantity) == ("s1", 2.5)
    [o1, o2] = b.open_orders()
    assert (o1.status, o1.remaining, o2.remaining) == (OrderStatus.PARTIALLY_FILLED, 0.5, 2)
    restored = PaperBroker(b.config)
    restored.restore(b.snapshot())
    assert [vars(o) for o in restored.open_orders()] == [vars(o) for o in b.open_orders()]
    assert "s2" in restored and restored.has_open_orders and "s9" not in restored
    [g] = restored.fill_resting(BTC, bar(1, o=100.0, h=101.0), held=10.0)  # s1 rests on; s2 not reached
    assert (g.client_id, g.quantity) == ("s1", 0.5) and [o.client_id for o in restored.open_orders()] == ["s2"]

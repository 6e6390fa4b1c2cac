"""Resting (operator) orders in a paper session: placed by method or store command, risk-checked,
filled by the paper broker on later bars (limit: when a bar trades through; market: next open),
booked and stored; canceled one by one, by cancel all, stop and the run's end; and a resting limit
order placed before a kill -9 fills exactly once after the resume."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.kit import lease_expired, wait_until
from workbench.config import make_config
from workbench.data import sample_bars
from workbench.domain import Side
from workbench.engine.feeds import ReplayFeed
from workbench.engine.session import Session
from workbench.execution import fill_price
from workbench.store import Store

SYM = "BTC/USDT"
NEVER = {"window": 5, "entry_threshold": 10.0, "exit_threshold": -1.0}  # never enters or exits: only our orders trade


@pytest.fixture
def store(tmp_path):
    st = Store(f"sqlite:///{tmp_path / 'wb.db'}")
    yield st
    st.close()


def _config(**kw):
    return make_config(kind="paper", strategy="momentum", params=NEVER, symbols=[SYM],
                       commission={"taker": 0.001, "maker": 0.0002}, **kw)


def _feed(bars: pd.DataFrame, actions: dict):
    """Replay ``bars``; before bar i is processed, run ``actions[i]()`` (between bars, as a control)."""
    async def gen():
        i = 0
        async for d in ReplayFeed({SYM: bars}, None):
            if i in actions:
                actions[i]()
            yield d
            i += 1
    return gen()


def test_limit_then_market_orders_fill_on_later_bars_and_are_stored(store):
    bars = sample_bars(SYM, days=1)
    i0 = 100
    limit = float(bars.low.iloc[i0:i0 + 300].min())
    j = i0 + int(bars.low.iloc[i0:i0 + 300].to_numpy().argmin())  # first bar trading through the limit
    assert (bars.low.iloc[i0:j] > limit).all()
    session: Session
    out = {}

    def buy():
        out["buy"] = session.place_order(SYM, "buy", 0.05, type="limit", limit_price=limit)

    def sell():
        out["sell"] = session.place_order(SYM, "SELL", 0.05)

    session = Session(_config(), store, feed=_feed(bars, {i0: buy, j + 5: sell}))
    assert asyncio.run(session.run()).value == "completed"
    assert out["buy"].startswith("order op1 resting: buy 0.05 BTC/USDT limit")
    fills = store.fills(session.id).set_index("client_id")
    assert list(fills.index) == ["op1", "op2"]
    b, s = fills.loc["op1"], fills.loc["op2"]
    assert b.time == bars.index[j] and b.price == min(bars.open.iloc[j], limit) and b.quantity == 0.05
    assert b.commission == pytest.approx(0.05 * b.price * 0.0002, rel=1e-12)  # maker fee, no slippage
    k = j + 5  # the market sell was placed before bar k: it fills at k's open, with slippage
    assert s.time == bars.index[k] and s.price == fill_price(Side.SELL, bars.open.iloc[k], 0.05, bars.volume.iloc[k],
                                                             session.config.slippage) < bars.open.iloc[k]
    assert s.commission == pytest.approx(0.05 * s.price * 0.001, rel=1e-12)  # taker fee
    orders = store.orders(session.id).set_index("client_id")
    assert orders.loc[["op1", "op2"], "status"].tolist() == ["filled", "filled"]
    trades = session.portfolio.trade_log()
    assert len(trades) == 1 and trades[0]["exit_reason"] == "operator" and trades[0]["entry_time"] == bars.index[j]
    assert session.portfolio.position(SYM) is None
    assert session.portfolio.cash == pytest.approx(
        10_000 - 0.05 * b.price - b.commission + 0.05 * s.price - s.commission, rel=1e-12)


def test_cancel_one_cancel_by_stop_bad_input_and_idempotent_commands(store):
    bars = sample_bars(SYM, days=1)
    session: Session
    seen = {}

    def place():
        session.place_order(SYM, "buy", 0.01, type="limit", limit_price=1.0)  # far below: rests
        cid = store.send_command(session.id, "place_order", {"symbol": SYM, "side": "buy", "quantity": 0.02,
                                                             "type": "limit", "limit_price": 2.0})
        cmd = store.pending_commands(session.id)[0]
        session.apply_command(cmd)
        # a runner killed after placing it but before marking the command applied applies it again on resume:
        seen["again"] = session._do_place_order(actor="user", client_id=f"cmd{cmd['id']}", **cmd["args"])
        seen["cid"] = cid  # its row is written off the loop: read once the run is over
        seen["open"] = sorted(o.client_id for o in session.broker.open_orders())
        for bad in (dict(symbol="DOGE/USDT", side="buy", quantity=1), dict(symbol=SYM, side="hold", quantity=1),
                    dict(symbol=SYM, side="buy", quantity=-1), dict(symbol=SYM, side="buy", quantity=1, type="limit"),
                    dict(symbol=SYM, side="buy", quantity=1, limit_price=5.0),
                    dict(symbol=SYM, side="sell", quantity=1)):  # nothing to sell
            with pytest.raises(ValueError) as e:
                session.place_order(**bad)
            seen.setdefault("errors", []).append(str(e.value))

    def cancel():
        seen["cancel"] = session.cancel_order("op1")
        with pytest.raises(ValueError, match="no resting order 'nope'; open: cmd"):
            session.cancel_order("nope")

    def stop():
        session.stop(reason="test")

    session = Session(_config(), store, feed=_feed(bars, {10: place, 20: cancel, 30: stop}))
    assert asyncio.run(session.run()).value == "stopped"
    seen["cmd"] = store.get_command(seen["cid"])
    assert seen["open"] == [f"cmd{seen['cmd']['id']}", "op1"] and seen["cmd"]["status"] == "applied"
    assert seen["again"] == f"order cmd{seen['cmd']['id']} already placed"
    errors = seen["errors"]
    assert "unknown symbol 'DOGE/USDT'" in errors[0] and "side must be 'buy' or 'sell'" in errors[1]
    assert "quantity must be a positive number" in errors[2] and "needs a positive limit_price" in errors[3]
    assert "market order takes no limit_price" in errors[4] and "no_position" in errors[5]
    assert seen["cancel"].startswith("order op1 canceled")
    orders = store.orders(session.id).set_index("client_id")
    assert len(orders) == 2 and (orders.status == "canceled").all()  # one by cancel_order, one by stop
    assert store.fills(session.id).empty and not session.broker.has_open_orders


def test_sells_are_cut_to_the_position_and_orders_left_at_the_end_are_canceled(store):
    bars = sample_bars(SYM, days=1)
    session: Session
    high = float(bars.high.max()) * 2

    def buy():
        session.place_order(SYM, "buy", 0.03)

    def sells():
        session.place_order(SYM, "sell", 0.03, type="limit", limit_price=high)  # never reached
        session.place_order(SYM, "sell", 0.03)  # next open: sells the whole position first

    def late():
        session.place_order(SYM, "buy", 0.01, type="limit", limit_price=1.0)

    session = Session(_config(), store, feed=_feed(bars, {5: buy, 8: sells, 12: late}))
    assert asyncio.run(session.run()).value == "completed"
    orders = store.orders(session.id).set_index("client_id")
    assert orders.status.to_dict() == {"op1": "filled", "op2": "canceled", "op3": "filled", "op4": "canceled"}
    ev = store.events(session.id)
    assert ev.message.str.contains("no position left to sell").any()
    assert ev.message.str.contains("1 resting orders canceled: the run ended").any()
    assert session.portfolio.position(SYM) is None and len(store.fills(session.id)) == 2


RUNNER = """
import asyncio, sys
from workbench.data import sample_bars
from workbench.engine.feeds import ReplayFeed
from workbench.engine.session import Session
from workbench.store import Store
url, sid, days = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = Store(url)
feed = ReplayFeed({"BTC/USDT": sample_bars("BTC/USDT", days=days)}, 120_000.0)  # <= 2,000 bars/s
asyncio.run(Session.resume(sid, store, feed, checkpoint_interval=97, poll_interval=0.02, lease_seconds=0.5).run())
"""


@pytest.mark.slow
def test_a_resting_limit_order_placed_before_kill_9_fills_once_after_resume(tmp_path):
    days = 30
    url = f"sqlite:///{tmp_path / 'wb.db'}"
    store = Store(url)
    bars = sample_bars(SYM, days=days)
    late = len(bars) * 3 // 4  # the limit is first traded through late in the data, long after the kill
    limit = float(bars.low.iloc[:late].min()) * 0.999
    touch = int((bars.low.to_numpy() <= limit).argmax())
    assert touch >= late and bars.low.iloc[touch] <= limit
    sid = store.create_session(_config())
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    proc = subprocess.Popen([sys.executable, str(script), url, sid, str(days)], cwd=str(tmp_path))
    try:
        deadline = time.monotonic() + 60
        while store.get_session(sid)["state"] != "running" and time.monotonic() < deadline:
            time.sleep(0.01)
        cmd = store.send_command(sid, "place_order", {"symbol": SYM, "side": "buy", "quantity": 0.1,
                                                      "type": "limit", "limit_price": limit})
        while store.get_command(cmd)["status"] == "pending" and time.monotonic() < deadline:
            time.sleep(0.005)
        placed_at = store.load_runner_state(sid)["bars_seen"]
        time.sleep(0.05)
    finally:
        proc.kill()  # SIGKILL
        proc.wait()
    assert store.get_command(cmd)["status"] == "applied" and store.get_session(sid)["state"] == "running"
    state = store.load_runner_state(sid)
    assert state["bars_seen"] < touch and [o["client_id"] for o in state["orders"]] == [f"cmd{cmd}"]
    assert placed_at < touch and store.fills(sid).empty

    wait_until(lambda: lease_expired(store, sid), timeout=10, message="the killed runner's lease expired")
    resumed = Session.resume(sid, store, ReplayFeed({SYM: bars}, None))
    assert asyncio.run(resumed.run()).value == "completed"
    fills = store.fills(sid)
    assert len(fills) == 1 and fills.client_id.iloc[0] == f"cmd{cmd}"
    assert fills.time.iloc[0] == bars.index[touch] and fills.price.iloc[0] == min(bars.open.iloc[touch], limit)
    assert store.orders(sid).set_index("client_id").loc[f"cmd{cmd}", "status"] == "filled"
    assert resumed.portfolio.quantity(SYM) == pytest.approx(0.1)
    store.close()

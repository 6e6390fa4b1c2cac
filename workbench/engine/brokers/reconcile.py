"""Reconciliation of an exchange broker with the store at start and resume (every difference is an event).

* Stored fills the checkpoint does not cover (the store holds them in booking order; the checkpoint's
  portfolio booked the first ``fill_count``) are re-applied to the portfolio.
* Store orders still open are looked up on the exchange by client id. One the exchange does not have
  may still land (the last runner may have sent it just before it died), so it stays in flight (its
  symbol busy) until every request sent before now is past the exchange's recvWindow
  (:meth:`~workbench.engine.ccxt_broker.CcxtBroker.landing_deadline`), is looked up once more, and only
  then, still absent, marked canceled ("never reached the exchange"); found, it is taken over like
  the others. Limit orders (left resting by a runner that died or was handed back) are adopted
  (:meth:`~workbench.engine.brokers.resting.RestingOrders.adopt`: fills made meanwhile applied once,
  canceled ones recorded, open ones rest on under the watcher); market orders still open are settled.
* Open orders of this session unknown to the store, and balances below the session's positions, are
  reported.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from workbench.domain import Fill, Order, OrderStatus, OrderType, Side

if TYPE_CHECKING:
    from workbench.engine.brokers.exchange import ExchangeBroker

OPEN = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


def _event(b: ExchangeBroker, kind: str, msg: str, data: dict, notes: list[str]) -> None:
    notes.append(msg)
    b.store.add_event(b.session_id, kind, msg, data, actor="reconcile")


async def reconcile(b: ExchangeBroker) -> None:
    """Compare the exchange with the store and apply the differences (see the module docstring)."""
    await b.client.load_markets()
    store, sid, pf = b.store, b.session_id, b.pf
    notes: list[str] = []
    orders = store.orders(sid)
    rows = {r.client_id: r for r in orders.itertuples(index=False)}

    def order_of(r: Any) -> Order:
        lp = r.limit_price
        return Order(r.client_id, r.symbol, Side(r.side), float(r.quantity), OrderType(r.type),
                     None if lp != lp else lp, OrderStatus(r.status), float(r.filled_quantity),
                     r.created_at.to_pydatetime(), r.reason, r.exchange_id)

    for k, r in enumerate(store.fills(sid).itertuples(index=False)):
        b.applied.add(r.fill_id)
        if k < pf.fill_count:
            continue  # booked before the checkpoint
        row = rows.get(r.client_id)
        f = Fill(r.client_id, r.symbol, Side(r.side), float(r.quantity), float(r.price), float(r.commission),
                 float(r.slippage), r.time.to_pydatetime() if hasattr(r.time, "to_pydatetime") else r.time,
                 r.fill_id, row.reason if row is not None else "")
        b.on_fill(f, order_of(row) if row is not None else Order(r.client_id, r.symbol, Side(r.side), f.quantity))
        notes.append(f"fill {f.fill_id} re-applied from the store")
    since = b.client.request_ms()  # every request of the last runner was stamped before this
    for r in rows.values():
        if OrderStatus(r.status) not in OPEN:
            continue
        order = order_of(r)
        res = await b.client.lookup(order)
        if res is None:
            b.inflight[order.client_id] = order  # its symbol is busy until we know
            b.spawn(_look_after_landing(b, order, since))
            msg = (f"order {order.client_id} is not on the exchange yet; it may still land within recvWindow: "
                   "looking again once it cannot")
        else:
            msg = await _take_over(b, order, res)
        _event(b, "reconcile", msg, {"client_id": order.client_id}, notes)
    known = {b.client.client_order_id(Order(c, "", Side.BUY, 0.0)) for c in rows}
    for o in await b.client.open_orders(b.config.symbols):
        if o.get("clientOrderId") not in known:
            _event(b, "reconcile", f"open order {o.get('clientOrderId')} ({o.get('side')} {o.get('amount')} "
                   f"{o.get('symbol')}) is not in the store", {"exchange_id": o.get("id")}, notes)
    held = await b.client.positions(b.config.symbols)
    for s in b.config.symbols:
        mine = pf.quantity(s)
        there = held.get(s, 0.0)  # signed: a perpetual's short is negative on both sides
        if abs(mine) > abs(there) * (1 + 1e-9) + 1e-12 or mine * there < 0.0:
            _event(b, "balance_mismatch", f"the session holds {mine:g} {s} but the exchange balance is "
                   f"{there:g}", {"symbol": s, "session": mine, "exchange": there}, notes)
    venue = b.venue
    store.add_event(sid, "reconciled", f"reconciled with {venue}: {len(notes)} differences" if notes
                    else f"reconciled with {venue}: no differences", {"notes": notes[:50]}, actor="reconcile")


async def _take_over(b: ExchangeBroker, order: Order, res: dict[str, Any]) -> str:
    """Follow a store order the exchange has (``res``): adopt a limit order, settle a market order; the
    reconcile message."""
    sid = b.session_id
    if order.type is OrderType.LIMIT:  # left resting by the last runner (e.g. handed back)
        n = await b.adopt(order, res)
        b.store.upsert_order(sid, order)
        msg = f"order {order.client_id} is {order.status.value} on the exchange; {n} fills applied"
        return msg + "; resting" if order.client_id in b.resting else msg  # the watcher follows it
    from workbench.engine.ccxt_broker import order_status

    order.exchange_id = str(res.get("id"))
    n = b.apply_fills(order, await b.client.fills(order, res))
    order.status, order.filled_quantity = order_status(res), float(res.get("filled") or 0.0)
    b.store.upsert_order(sid, order)
    if order.status in OPEN:
        b.inflight[order.client_id] = order
        b.spawn(b.settle_and_release(order, res))
    return f"order {order.client_id} is {order.status.value} on the exchange; {n} fills applied"


async def _look_after_landing(b: ExchangeBroker, order: Order, since: int) -> None:
    """Once a request stamped before ``since`` can no longer land, look ``order`` up again: absent, it
    never reached the exchange (marked canceled); found, it is taken over."""
    await asyncio.sleep(max(0.0, b.client.landing_deadline(since) - b.client.exchange.milliseconds()) / 1000.0)
    res = await b.client.lookup(order)  # a failure leaves it in flight (busy) and is an error event
    if res is None:
        order.status = OrderStatus.CANCELED
        b.store.upsert_order(b.session_id, order)
        msg = f"order {order.client_id} never reached the exchange; marked canceled"
    else:
        msg = await _take_over(b, order, res) + " (it landed late)"
    if order.status not in OPEN or order.client_id in b.resting:  # else settle_and_release releases it
        b.inflight.pop(order.client_id, None)
    b.store.add_event(b.session_id, "reconcile", msg, {"client_id": order.client_id}, actor="reconcile")

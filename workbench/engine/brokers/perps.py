"""Perpetual swaps in an exchange broker (a mixin of :class:`~workbench.engine.brokers.exchange.ExchangeBroker`):
leverage at start, and funding booked as the exchange pays or charges it.

* Leverage: :meth:`Perpetuals._set_leverage` sets each perpetual's leverage on the exchange to the session's
  ``margin.leverage`` (rounded up to a whole number: the exchange then asks no more margin than the session
  does); a refusal (above the market's maximum) fails the start. The pre-flight checks it first.
* Funding: the exchange's own payments (ccxt ``fetch_funding_history``), not a model: each one on an open
  position is booked once to the portfolio (``Portfolio.apply_carry``: cash, and the trade's ``funding``)
  with a ``funding`` event. The last payment booked on a position is kept in ``Position.extra["funding_at"]``,
  which the checkpoint holds with the cash it moved, so a resumed runner books exactly what the checkpoint
  lacks. A payment on a position that was closed before the runner saw it is not booked (the position is
  gone); reconciliation then reports the wallet's difference.
* Liquidation: a position the exchange's liquidation engine closed (Binance's orders ``autoclose-*``) is
  booked as the trade's ``liquidation`` exit (:meth:`Perpetuals.book_liquidations`, before each reconciliation
  round and after each bar), from the exchange's own trades (their price and clearance fee), once each (an
  order ``liquidation:<symbol>:<id>`` stored before its fills), with a ``liquidation`` event; reconciliation
  then agrees instead of reporting the difference.
* Carry: on a perpetual the exchange's funding is the whole carry. A modelled ``margin.funding_rate`` or
  ``margin.borrow_rate`` (interest is what margin shorts pay for borrowed coins; a perpetual borrows none) is
  not charged in a live session: the start says so once (a ``carry_model_ignored`` event), and the same
  config still models both in backtests and paper.
"""
from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from workbench import execution as ex
from workbench.config import SessionConfig, is_perp, quote_of
from workbench.domain import Fill, Order, OrderStatus, Side
from workbench.engine.ccxt_broker import CcxtBroker
from workbench.store import Store

if TYPE_CHECKING:
    from workbench.execution.ledger import Portfolio

LIQUIDATED = "autoclose-"  # Binance's client order id prefix of its liquidation engine's orders
FUNDING_AT = "funding_at"  # Position.extra: exchange ms of the last funding payment booked on it (checkpointed)


class Perpetuals:
    """Leverage and funding of a session's perpetuals; see the module docstring."""

    client: CcxtBroker
    config: SessionConfig
    store: Store
    session_id: str
    venue: str
    reconcile_every: float
    applied: set[str]
    _funding_due: asyncio.Event

    if TYPE_CHECKING:
        @property
        def pf(self) -> Portfolio: ...

        def apply_fills(self, order: Order, fills: list[Fill]) -> int: ...

        async def _store_order(self, order: Order, sent: datetime | None = None,
                               acked: datetime | None = None) -> None: ...

        def _event(self, kind: str, message: str, data: dict[str, Any] | None = None,
                   actor: str = "exchange") -> None: ...

    @property
    def books_funding(self) -> bool:
        """The carry is the exchange's own funding payments, booked here; the Trader models neither funding nor
        borrow interest (a live perpetual)."""
        return bool(self.client.perps)

    def _entry(self, order: Order) -> bool:
        """Does ``order`` open or add to a position? (a spot buy; on a perpetual, what is not reduce-only)"""
        if is_perp(order.symbol):
            return not self.client.reduce_only(order, self.pf.quantity(order.symbol))
        return order.side is Side.BUY

    async def _set_leverage(self) -> None:
        """Each perpetual's leverage on the exchange: the session's ``margin.leverage`` (a ``leverage_set``
        event; an exchange refusal fails the start)."""
        leverage: float | None = getattr(getattr(self.config, "margin", None), "leverage", None)
        for s in self.client.perps if leverage else []:
            n = await self.client.set_leverage(s, float(leverage or 1.0))
            self._event("leverage_set", f"{s}: leverage {n}x on {self.venue}", {"symbol": s, "leverage": n}, "broker")

    def _announce_carry(self) -> None:
        """Say once at start which modelled carrying costs of the config a live perpetual does not charge."""
        mg = getattr(self.config, "margin", None)
        ignored = [f"{k} {getattr(mg, k):g}" for k in ("borrow_rate", "funding_rate") if getattr(mg, k, 0.0)]
        if self.books_funding and ignored:
            self._event("carry_model_ignored", f"{', '.join(ignored)} not charged: on {self.venue}'s perpetuals the "
                        "exchange's own funding payments are the carry (borrow interest is for margin shorts); "
                        "backtests and paper still model them", {"ignored": ignored}, "broker")

    async def _watch_funding(self) -> None:
        """Book funding after each bar (:meth:`on_bar` wakes it) and every ``reconcile_every`` seconds.
        ``asyncio.timeout``, not ``wait_for``: Python 3.11's ``wait_for`` swallows a cancel that lands as the
        bar's wake-up does, which left the run's end waiting ``fill_timeout`` for this task."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.reconcile_every):
                    await self._funding_due.wait()
            self._funding_due.clear()
            try:
                await self.book_funding()
                await self.book_liquidations()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the client already retried; the next round asks again
                self._event("error", f"funding not read from {self.venue}: {type(e).__name__}: {e}")

    async def book_funding(self) -> int:
        """Book the funding the exchange paid (< 0) or charged on each open perpetual position since the last
        payment booked on it (``Position.extra["funding_at"]``, checkpointed with the portfolio, so a payment
        is booked once across crashes): cash and the position's trade row (``Portfolio.apply_carry``), and a
        ``funding`` event each (one per payment: a runner re-booking what its predecessor booked after its
        last checkpoint writes none). Returns how many were booked."""
        pf, n = self.pf, 0
        recorded: set[str] | None = None  # payment ids with an event (a runner that died before its checkpoint)
        for s in self.client.perps:
            pos = pf.positions.get(s)
            if pos is None or pos.quantity == 0.0:
                continue
            opened = pos.opened_at
            since = pos.extra.get(FUNDING_AT) or (int(opened.timestamp() * 1000) if opened is not None else None)
            for r in await self.client.funding_payments(s, since):
                if since is not None and r["time"] <= since:
                    continue
                if pf.positions.get(s) is not pos:  # closed while we asked
                    break
                pf.apply_carry(s, r["amount"], 0.0)
                pos.extra[FUNDING_AT] = since = r["time"]
                n += 1
                if recorded is None:
                    ev = self.store.events(self.session_id, kinds=["funding"])
                    recorded = {str((d or {}).get("id")) for d in ev["data"]} if len(ev) else set()
                if r["id"] in recorded:
                    continue  # booked again after a crash: its event is there already
                at = datetime.fromtimestamp(r["time"] / 1000, tz=timezone.utc).isoformat()
                self._event("funding", f"{s}: funding {'received' if r['amount'] >= 0 else 'paid'} "
                            f"{abs(r['amount']):.6g} {quote_of(s)} at {at}",
                            {"symbol": s, "amount": r["amount"], "time": r["time"], "id": r["id"]}, "broker")
        return n

    async def book_liquidations(self) -> int:
        """Book each perpetual position the exchange liquidated (it holds less than the session, or none) as
        the trade's ``liquidation`` exit: the fills of its liquidation orders not booked yet. Returns them."""
        pf, n = self.pf, 0
        held = [s for s in self.client.perps if pf.quantity(s) != 0.0]
        there = await self.client.positions(held) if held else {}
        for s in held:
            mine, pos = pf.quantity(s), pf.positions[s]
            if there.get(s, 0.0) * mine > 0.0 and abs(there[s]) >= abs(mine) * (1 - 1e-9):
                continue  # the exchange holds what the session does
            since = int(pos.opened_at.timestamp() * 1000) if pos.opened_at is not None else None
            trades = await self.client.call("fetch_my_trades", s, since)
            venue_id = self.client.exchange.id
            for oid in dict.fromkeys(str(t["order"]) for t in trades if f"{venue_id}:{t['id']}" not in self.applied):
                row = await self.client.call("fetch_order", oid, s)
                if not str(row.get("clientOrderId") or "").startswith(LIQUIDATED):
                    continue  # a trade of the session's own (booked by its order) or made by hand
                order = Order(f"liquidation:{s}:{oid}", s, Side(row["side"]), float(row.get("filled") or 0.0),
                              status=OrderStatus.FILLED, filled_quantity=float(row.get("filled") or 0.0),
                              created_at=datetime.now(timezone.utc), reason=ex.LIQUIDATION, exchange_id=oid)
                await self._store_order(order)  # before its fills: a resumed runner books what it lacks
                k = self.apply_fills(order, await self.client.fills(order, row))
                n += k
                if k:
                    self._event("liquidation", f"{s}: {order.quantity:g} liquidated by {self.venue} at "
                                f"{float(row.get('average') or 0.0):g} (its order {row.get('clientOrderId')}); "
                                "booked as the trade's liquidation exit",
                                {"symbol": s, "exchange_id": oid, "quantity": order.quantity}, "broker")
        return n

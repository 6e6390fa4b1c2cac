"""The exchange broker's running checks (a mixin of :class:`~workbench.engine.brokers.exchange.ExchangeBroker`):
the exchange's clock and continuous two-way reconciliation.

* Time: the clock offset is measured at start (:meth:`AccountWatch.sync_clock`, a ``clock_synced``
  event) and every ``time_sync_every`` seconds, so signed requests keep carrying the exchange's time.
  A -1021 refusal resyncs at once (:meth:`~workbench.engine.ccxt_broker.CcxtBroker.clock_skewed`);
  until that succeeds ``client.clock_ok`` is False and the broker refuses entries (exits wait for the
  resync and then go through).
* Reconciliation every ``reconcile_every`` seconds (:meth:`AccountWatch.reconcile_once`): open orders
  of this session on the exchange the session does not know, and per asset the drift of the exchange's
  total balance from the session's holdings (base: positions; quote: cash) since the first clean
  round (the account may hold more than the session's allocation). Each difference, in either
  direction ("the exchange holds more" after a manual buy on the account, "the session holds more"
  after a manual sell) is an event once; one worth more than ``mismatch_trip`` x the initial balance
  trips the circuit breaker through ``trip_breaker`` (the session's own control). A round is
  skipped while an order is in flight or a resting order fills during it (the two sides differ for a
  moment then).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from workbench.config import SessionConfig, is_perp, quote_of
from workbench.domain import Order
from workbench.engine.ccxt_broker import CcxtBroker

if TYPE_CHECKING:
    from workbench.execution.ledger import Portfolio

BreakerHook = Callable[[str, dict[str, Any]], None]


class AccountWatch:
    """Clock keeping and continuous reconciliation; see the module docstring."""

    client: CcxtBroker
    config: SessionConfig
    venue: str
    inflight: dict[str, Order]
    resting: dict[str, Order]
    time_sync_every: float
    reconcile_every: float
    mismatch_trip: float | None  # a difference worth more than this x initial balance trips the breaker
    fees_paid: dict[str, tuple[float, float]]  # third fee asset -> (amount, quote booked) this run
    trip_breaker: BreakerHook | None  # set by the session: requests its circuit breaker's trip
    _baseline: dict[str, float] | None  # asset -> exchange total minus the session's holding, at the first round
    _reported: dict[str, float]  # asset -> the drift last reported (each difference is one event)

    if TYPE_CHECKING:
        @property
        def pf(self) -> Portfolio: ...

        async def sync_resting_orders(self) -> int: ...

        async def book_funding(self) -> int: ...

        async def book_liquidations(self) -> int: ...

        def _event(self, kind: str, message: str, data: dict[str, Any] | None = None,
                   actor: str = "exchange") -> None: ...

    def _init_watch(self, time_sync_every: float, reconcile_every: float, mismatch_trip: float | None) -> None:
        for name, v in (("time_sync_every", time_sync_every), ("reconcile_every", reconcile_every)):
            if not v > 0:
                raise ValueError(f"{name} must be a positive number of seconds (got {v!r})")
        if mismatch_trip is not None and not mismatch_trip > 0:
            raise ValueError(f"mismatch_trip must be a positive fraction of the initial balance or None "
                             f"(got {mismatch_trip!r})")
        self.time_sync_every, self.reconcile_every = float(time_sync_every), float(reconcile_every)
        self.mismatch_trip = mismatch_trip
        self.trip_breaker = None
        self._baseline, self._reported = None, {}

    # ---- time ----------------------------------------------------------------------------------
    async def sync_clock(self) -> None:
        """Measure the exchange's clock now (a ``clock_synced`` event; a failure is an ``error`` event)."""
        try:
            offset = await self.client.sync_time()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._event("error", f"clock not synced with {self.venue}: {type(e).__name__}: {e}")
            return
        if offset is not None:
            self._event("clock_synced", f"clock synced with {self.venue}: the exchange is {offset:+.0f} ms from this "
                        f"host (+/- {self.client.clock_error_ms:.0f} ms)", {"offset_ms": round(offset)})

    async def _keep_time(self) -> None:
        while True:
            await asyncio.sleep(self.time_sync_every)
            await self.sync_clock()

    # ---- reconciliation ------------------------------------------------------------------------
    async def _watch_account(self) -> None:
        """A round at once (it takes the baseline right after the start's reconciliation), then one every
        ``reconcile_every`` seconds."""
        while True:
            try:
                await self.reconcile_once()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the client already retried; the next round tries again
                self._event("error", f"reconciliation round failed: {type(e).__name__}: {e}")
            await asyncio.sleep(self.reconcile_every)

    def _holdings(self) -> dict[str, float]:
        """What the session holds per asset: each symbol's position in its base, the cash in the quote. A
        perpetual's signed position is under its symbol, and the quote is the wallet's view: the cash plus
        the positions at their entry prices (the exchange's wallet leaves out unrealized P&L)."""
        pf = self.pf
        quote = quote_of(self.config.symbols[0])
        out = {quote: pf.cash}
        for s in self.config.symbols:
            if is_perp(s):  # CcxtBroker.balances reports it so
                out[s] = pf.quantity(s)
                out[quote] += pf.quantity(s) * (pf.positions[s].avg_price if s in pf.positions else 0.0)
                continue
            base = s.split("/")[0]
            out[base] = out.get(base, 0.0) + pf.quantity(s)
        for asset, (amount, booked) in self.fees_paid.items():  # fees paid in BNB were booked out of the cash
            out[quote] += booked
            out[asset] = out.get(asset, 0.0) - amount
        return out

    def _price(self, asset: str) -> float:
        """The asset's last mark in the quote currency (1 for the quote; a perpetual's position: its mark)."""
        if asset in self.config.symbols:
            return float(self.pf.marks.get(asset) or 0.0)
        for s in self.config.symbols:
            if s.split("/")[0] == asset:
                return float(self.pf.marks.get(s) or 0.0)
        return 1.0

    async def reconcile_once(self) -> list[dict[str, Any]] | None:
        """One round (see the module docstring); returns the differences reported now, or None if the
        round was skipped (an order in flight, or a fill during it)."""
        if self.inflight:
            return None
        await self.sync_resting_orders()
        await self.book_funding()  # perpetuals: the exchange's funding and liquidations booked first (perps.py)
        await self.book_liquidations()
        before = self._holdings()
        rows = await self.client.open_orders(self.config.symbols)
        totals = await self.client.balances()
        if self.inflight or await self.sync_resting_orders() or self._holdings() != before:
            return None  # an order moved the account meanwhile: the next round looks again
        found: list[dict[str, Any]] = []
        known = {self.client.client_order_id(o) for o in [*self.inflight.values(), *self.resting.values()]}
        for o in rows:
            cid = str(o.get("clientOrderId"))
            if cid not in known and self._reported.get(cid) is None:
                self._reported[cid] = 1.0
                found.append(self._differs("order_mismatch", f"open order {cid} ({o.get('side')} {o.get('amount')} "
                                           f"{o.get('symbol')}) is on {self.venue} but not in the session",
                                           {"exchange_id": o.get("id"), "client_order_id": cid,
                                            "direction": "exchange_more"},
                                           float(o.get("amount") or 0.0) * float(o.get("price") or 0.0)))
        if self._baseline is None:  # the first clean round: what the account holds beyond the session
            self._baseline = {a: totals.get(a, 0.0) - q for a, q in before.items()}
            return found
        for asset, mine in before.items():
            if asset not in self._baseline:  # first seen since the baseline (a fee asset): what it held then
                self._baseline[asset] = totals.get(asset, 0.0) - mine
            drift = totals.get(asset, 0.0) - mine - self._baseline.get(asset, 0.0)
            tol = 1e-7 * max(abs(mine), abs(totals.get(asset, 0.0)), 1.0)
            last = self._reported.get(asset, 0.0)
            if abs(drift - last) <= tol:
                continue  # nothing new (reported already, or no difference)
            self._reported[asset] = drift if abs(drift) > tol else 0.0
            if abs(drift) <= tol:
                self._event("balance_mismatch_cleared", f"{asset}: the exchange and the session agree again",
                            {"asset": asset}, "reconcile")
                continue
            direction = "exchange_more" if drift > 0 else "session_more"
            who = "the exchange holds" if drift > 0 else "the session thinks it holds"
            have = totals.get(asset, 0.0)
            found.append(self._differs("balance_mismatch", f"{asset}: {who} {abs(drift):g} more than the other side "
                                       f"(exchange {have:g}, session {mine:g} + {self._baseline[asset]:g} "
                                       "outside the session)",
                                       {"asset": asset, "exchange": have, "session": mine,
                                        "difference": drift, "direction": direction},
                                       abs(drift) * self._price(asset)))
        return found

    def _differs(self, kind: str, message: str, data: dict[str, Any], value: float) -> dict[str, Any]:
        """Record one difference (an event); above the threshold, request the breaker's trip."""
        data = {**data, "value": value}
        self._event(kind, message, data, "reconcile")
        limit = None if self.mismatch_trip is None else self.mismatch_trip * self.config.initial_balance
        if limit is not None and value > limit and self.trip_breaker is not None:
            self.trip_breaker(f"reconcile: {message}", {**data, "limit": limit})
        return data

"""Protective orders of a live session (a mixin of :class:`~workbench.engine.brokers.exchange.ExchangeBroker`):
a position's stop loss / take profit live on the exchange, or are watched intrabar by this runner.

* Levels: :func:`workbench.execution.rules.stop_levels` over the position (entry, peak) and the risk
  engine's effective limits (``risk.limits``: overrides and tighten-stops included), the same levels the
  closed-bar check uses (semantics rule 5).
* Where (``config.live.protective``): ``exchange`` places the stop as a ``STOP_LOSS_LIMIT`` sell (ccxt
  ``stopLossPrice``; limit ``STOP_LIMIT_BAND`` below the stop), or the take profit as a
  ``TAKE_PROFIT_LIMIT`` if no stop is set; with both set the exchange holds the stop and the take profit
  is watched (a spot sell cannot rest twice). ``monitor`` watches every level on the ticker (ccxt.pro
  ``watch_ticker`` where the client has it, else ``fetch_ticker`` every ``monitor_poll`` s) and sends a
  market sell once the last price crosses one, not waiting for the bar to close (a short: its mirrored
  levels, ``stop_levels(side=-1)``, bought back reduce-only). ``auto`` (default):
  exchange where the market lists the stop order types, else monitor. ``off``: closed bars only.
* Perpetuals (Binance USDⓈ-M): the stop rests as a reduce-only ``STOP_MARKET`` and the take profit as a
  reduce-only ``TAKE_PROFIT_MARKET`` (ccxt ``stopLossPrice`` / ``takeProfitPrice`` with ``reduceOnly``; ccxt
  sends them to Binance's algo-order API, :attr:`CcxtBroker.conditional`), both at once (reduce-only orders
  lock nothing: resting without a limit price, they keep no cash from entries); a long's sell, a short's
  buy. They trigger market orders whose fills are theirs (``actualOrderId``).
* Protective orders are limit orders of the broker's resting book (``protect:<symbol>:<n>``, reason
  ``stop_loss`` / ``trailing_stop`` / ``take_profit``): the watcher books their fills once (the booked exit
  reason), a strategy/stop/close exit cancels them before it sells (and sells nothing if the stop already
  sold), a hand-back leaves them resting, the run's end cancels them, and a resumed runner adopts them
  (one that filled while no runner ran is booked as the exit, once).
* Every ``protect_poll`` s the protector compares what rests with what the levels say: it places after an
  entry fill, amends (cancel, then place at the new level) when tighten-stops or a trailing peak move the
  stop or the position's size changes, and cancels when the position is gone. An exchange refusal (e.g.
  the price is already beyond the stop) falls back to the monitor for that symbol (event
  ``protective_refused``).
"""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import ccxt

from workbench.config import SessionConfig, is_perp
from workbench.domain import Order, OrderStatus, OrderType, Side
from workbench.engine.ccxt_broker import CcxtBroker
from workbench.execution.rules import TAKE_PROFIT, stop_levels
from workbench.retry import RetryPolicy, is_transient
from workbench.store import Store

if TYPE_CHECKING:
    from workbench.engine.risk import RiskEngine
    from workbench.execution.ledger import Portfolio

PREFIX = "protect:"
STOP_TYPES = ("STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")  # Binance spot's, as exchangeInfo lists them
PERP_STOP_TYPES = ("STOP_MARKET", "TAKE_PROFIT_MARKET")  # Binance USDⓈ-M's (conditional: the algo-order API)
STOP_LIMIT_BAND = 0.005  # a triggered protective sell may fill down to this fraction below its trigger


@dataclass(frozen=True, slots=True)
class Level:
    """One protective level: ``side`` (sell a long, buy back a short) ``quantity`` when the price crosses
    ``price`` (``above``: from below; a long's take profit, a short's stop)."""

    reason: str
    price: float
    above: bool
    quantity: float
    side: Side = Side.SELL


class Protection:
    """The protective-order half of the exchange broker. See the module docstring."""

    client: CcxtBroker
    config: SessionConfig
    store: Store
    session_id: str
    venue: str
    order_policy: RetryPolicy
    fill_timeout: float
    inflight: dict[str, Order]
    resting: dict[str, Order]
    risk: RiskEngine | None = None  # set by the live session: the effective stop/take-profit limits
    protect_poll: float = 0.25  # seconds between the protector's rounds (local checks; the exchange on changes)
    monitor_poll: float | None = None  # seconds between ticker polls of the monitor (None: live.poll_seconds or 1)
    _protector: asyncio.Task[None] | None = None

    if TYPE_CHECKING:
        @property
        def pf(self) -> Portfolio: ...

        def busy(self, symbol: str) -> bool: ...

        def _queue_order(self, order: Order) -> None: ...

        async def _store_order(self, order: Order) -> None: ...

        async def cancel_resting(self, order: Order, why: str) -> None: ...

        def _event(self, kind: str, message: str, data: dict[str, Any] | None = None,
                   actor: str = "exchange") -> None: ...

    # ---- lifecycle -----------------------------------------------------------------------------
    def start_protection(self) -> None:
        """Start the protector (after the start's reconciliation: adopted protective orders are known)."""
        self._seq: dict[str, int] = {}
        self._watched: dict[str, list[Level]] = {}  # symbol -> levels the monitor fires
        self._no_stop_orders: set[str] = set()  # symbols whose exchange stop was refused: monitored instead
        if self.config.live.protective != "off":
            self._protector = asyncio.get_running_loop().create_task(self._protect(),
                                                                    name=f"protect-{self.session_id}")

    async def stop_protection(self) -> None:
        """Stop the protector after its current round (before the run's end cancels or hands back what
        rests: an order it is sending is recorded, not abandoned mid-request)."""
        task, self._protector = self._protector, None
        if task is not None and not task.done():
            _, pending = await asyncio.wait([task], timeout=self.fill_timeout)
            for t in pending:
                t.cancel()
                await asyncio.wait([t])

    async def _protect(self) -> None:
        poll = self.monitor_poll or self.config.live.poll_seconds or 1.0
        next_tick = 0.0
        while self._protector is not None:
            try:
                await self.sync_protection()
                if self._watched and time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + poll
                    await self.check_monitored()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the client already retried; the next round tries again
                self._event("error", f"protective orders not synced: {type(e).__name__}: {e}")
            await asyncio.sleep(self.protect_poll)

    # ---- what should rest ------------------------------------------------------------------------
    def levels(self, symbol: str) -> list[Level]:
        """The protective levels of the open position in ``symbol`` (stop first), [] if flat or none set. A
        short's are mirrored (``stop_levels(side=-1)``: the stop above, the take profit below; bought back)."""
        pos = self.pf.positions.get(symbol)
        if pos is None or pos.quantity == 0.0 or self.risk is None:
            return []
        lim = self.risk.limits
        long = pos.quantity > 0.0
        reason, stop, tp = stop_levels(pos.avg_price, pos.peak_price, lim["stop_loss"], lim["take_profit"],
                                       lim["trailing_stop"], side=1 if long else -1)
        close, q = (Side.SELL if long else Side.BUY), abs(pos.quantity)
        out = [Level(reason, stop, not long, q, close)] if reason else []
        if math.isfinite(tp):
            out.append(Level(TAKE_PROFIT, tp, long, q, close))
        return out

    def on_exchange(self, symbol: str) -> bool:
        """May ``symbol``'s protective order rest on the exchange (mode and the market's order types)?"""
        mode = self.config.live.protective
        if mode == "monitor" or symbol in self._no_stop_orders:
            return False
        market = (self.client.exchange.markets or {}).get(symbol) or {}
        types = (market.get("info") or {}).get("orderTypes")
        need = PERP_STOP_TYPES if is_perp(symbol) else STOP_TYPES
        ok = (all(t in types for t in need) if types is not None
              else bool((self.client.exchange.has or {}).get("createStopLossOrder")))
        if not ok and mode == "exchange":  # asked for, not available: say so once, then watch it
            self._no_stop_orders.add(symbol)
            self._event("protective_refused", f"{symbol} on {self.venue} has no stop order types; its stop loss / "
                        "take profit are watched on the ticker instead", {"symbol": symbol}, "broker")
        return ok

    @staticmethod
    def is_protective(order: Order) -> bool:
        return order.client_id.startswith(PREFIX)

    def protective(self, symbol: str) -> list[Order]:
        """This session's protective orders of ``symbol`` resting on the exchange."""
        return [o for o in self.resting.values() if o.symbol == symbol and self.is_protective(o)]

    def _unoffered(self, symbol: str) -> float:
        """What of the position no other resting close (an operator's limit: a sell of a long, a buy of a
        short) offers already."""
        held = self.pf.quantity(symbol)
        close = Side.SELL if held > 0.0 else Side.BUY
        offered = sum(o.remaining for o in self.resting.values()
                      if o.symbol == symbol and o.side is close and not self.is_protective(o))
        return max(abs(held) - offered, 0.0)

    async def release_protection(self, symbol: str) -> None:
        """An operator sell needs the coins the protective order locks: cancel it (the protector places it
        again for what is left once the sell settled). One being placed is waited for first."""
        while any(self.is_protective(o) and o.symbol == symbol for o in self.inflight.values()):
            await asyncio.sleep(0.02)
        for o in self.protective(symbol):
            await self.cancel_resting(o, "protective order canceled: an operator sell needs its coins; it is "
                                      "placed again for what is left")

    # ---- one round -------------------------------------------------------------------------------
    async def sync_protection(self) -> None:
        """Bring each symbol's protective order and watched levels in line with its position's levels."""
        for s in self.config.symbols:
            if self.busy(s):
                continue  # an entry settling or an exit going out: look again next round
            want = self.levels(s)
            current = self.protective(s)
            free = self._unoffered(s)
            n = len(want) if is_perp(s) else 1  # a perpetual's are reduce-only: all rest (they lock nothing)
            rest = [replace(lv, quantity=free) for lv in want[:n]] if want and self.on_exchange(s) else []
            self._watched[s] = want[len(rest):]
            if not self._watched[s]:
                del self._watched[s]
            keep = [o for o in current if any([await self._same(o, lv) for lv in rest])]
            for o in current:
                if o in keep:
                    continue
                why = ("no level applies (flat, or no stop set)" if not want else "moved to the new level" if rest
                       else "watched on the ticker instead")
                await self.cancel_resting(o, f"protective order canceled: {why}")
            for lv in rest:
                if any([await self._same(o, lv) for o in keep]) or not self._unoffered(s) > 0.0:
                    continue  # rests already, or no longer held after the cancels (a fill meanwhile)
                await self._place(s, replace(lv, quantity=self._unoffered(s)))

    async def _same(self, order: Order, level: Level) -> bool:
        """Does the resting ``order`` protect ``level`` already (kind, stop price and quantity on the exchange's
        grid)? An adopted order's stop is read from the exchange once."""
        if order.stop_price is None:
            res = await self.client.fetch(order, {"id": order.exchange_id})
            order.stop_price = float(res.get("triggerPrice") or res.get("stopPrice") or math.nan)
        ex, s = self.client.exchange, order.symbol
        return ((order.reason == TAKE_PROFIT) == (level.reason == TAKE_PROFIT) and order.side is level.side
                and ex.price_to_precision(s, order.stop_price) == ex.price_to_precision(s, level.price)
                and self.client.amount(s, order.remaining) == self.client.amount(s, level.quantity))

    def _next_id(self, symbol: str) -> str:
        if symbol not in self._seq:  # continue after the ids earlier runners used
            ids = self.store.orders(self.session_id).client_id
            mine = [c.rsplit(":", 1)[1] for c in ids if c.startswith(f"{PREFIX}{symbol}:")]
            self._seq[symbol] = max((int(n) for n in mine if n.isdigit()), default=0)
        self._seq[symbol] += 1
        return f"{PREFIX}{symbol}:{self._seq[symbol]}"

    async def _place(self, symbol: str, level: Level) -> None:
        """Send a protective order at ``level`` (a spot stop-limit sell; a perpetual's reduce-only stop or take
        profit market order), written ahead and sent exactly once like every order."""
        ex = self.client.exchange
        q = self.client.amount(symbol, level.quantity)
        if not q > 0.0 or q < self.client.min_amount(symbol):
            return  # a remainder below the lot size: nothing can be sold on the exchange
        stop = float(ex.price_to_precision(symbol, level.price))
        limit: float | None = float(ex.price_to_precision(symbol, stop * (1.0 - STOP_LIMIT_BAND)))
        key = "takeProfitPrice" if level.reason == TAKE_PROFIT else "stopLossPrice"
        params: dict[str, Any] = {key: stop}
        if is_perp(symbol):  # a reduce-only STOP_MARKET / TAKE_PROFIT_MARKET: it triggers a market order and,
            limit, params["reduceOnly"] = None, True  # with no limit price, keeps no cash from entries
        order = Order(self._next_id(symbol), symbol, level.side, q, OrderType.LIMIT, limit,
                      created_at=datetime.now(timezone.utc), reason=level.reason, stop_price=stop)
        self.inflight[order.client_id] = order  # the symbol is busy: no bar exit races the placement
        try:
            await self._store_order(order)  # write-ahead: a crash after this is reconciled by client id
            try:
                res = await self.client.submit(order, policy=self.order_policy, params=params)
            except ccxt.BaseError as e:
                if is_transient(e):
                    raise
                order.status = OrderStatus.REJECTED
                await self._store_order(order)
                self._no_stop_orders.add(symbol)
                self._event("protective_refused", f"{level.reason} of {symbol} at {stop:g} refused by {self.venue} "
                            f"({type(e).__name__}: {e}); watching the ticker for it instead",
                            {"client_id": order.client_id, "error": type(e).__name__}, "broker")
                return
            order.exchange_id = str(res.get("id"))
            await self._store_order(order)
            self.resting[order.client_id] = order  # the resting-order watcher books its fills
        finally:
            self.inflight.pop(order.client_id, None)
        self._event("protective_placed", f"{level.reason} of {q:g} {symbol} rests on {self.venue} at {stop:g} "
                    + ("(market once triggered)" if limit is None else f"(limit {limit:g})"),
                    {"client_id": order.client_id, "stop": stop, "limit": limit}, "broker")

    # ---- the monitor -----------------------------------------------------------------------------
    async def _last_price(self, symbol: str) -> float:
        ex = self.client.exchange
        if hasattr(ex, "watch_ticker") and (ex.has or {}).get("watchTicker"):
            t = await ex.watch_ticker(symbol)
        else:
            t = await self.client.call("fetch_ticker", symbol)
        return float(t.get("last") or t.get("close") or math.nan)

    async def check_monitored(self) -> list[str]:
        """Close at market (sell a long, buy back a short) each watched position whose last price crossed a
        level; returns the symbols."""
        fired = []
        for s, levels in list(self._watched.items()):
            if self.busy(s) or not levels:
                continue
            last = await self._last_price(s)
            hit = next((lv for lv in levels if (last >= lv.price if lv.above else last <= lv.price)), None)
            held = self.pf.quantity(s)
            if hit is None or self.busy(s) or held == 0.0 or (held > 0.0) != (hit.side is Side.SELL):
                continue  # nothing crossed, an exit going out, or the position changed side since the levels
            stamp = int(time.time() * 1000)
            self._queue_order(Order(f"{s}:{hit.reason}:{stamp}", s, hit.side, abs(held),
                                    created_at=datetime.now(timezone.utc), reason=hit.reason, stop_price=hit.price))
            what = "selling" if hit.side is Side.SELL else "buying back"
            self._event("protective_fired", f"{hit.reason} of {s} at {hit.price:g}: last price {last:g} crossed it; "
                        f"{what} at market", {"symbol": s, "level": hit.price, "last": last}, "broker")
            fired.append(s)
        return fired

"""Operator orders of a session: ``place_order`` and ``cancel_order`` and their implementations (a base of
:class:`~workbench.engine.controls.SessionControls`). An operator order is validated, risk-checked like the
strategy's and handed to the broker, which rests it (paper) or sends it (exchange).
"""
from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

from workbench import execution as ex
from workbench.domain import Order, OrderType, SessionState, Side
from workbench.engine.commands import Command, CommandRejected
from workbench.engine.risk import RiskContext

if TYPE_CHECKING:
    from workbench.config import SessionConfig
    from workbench.engine.brokers import Broker
    from workbench.engine.risk import RiskEngine
    from workbench.execution.ledger import Portfolio
    from workbench.store import Store

S = SessionState


class OperatorOrders:
    """``place_order`` / ``cancel_order`` and their ``_do_`` implementations."""

    if TYPE_CHECKING:  # provided by Session
        id: str
        config: SessionConfig
        store: Store
        state: SessionState
        last_bar: datetime | None
        _order_seq: int
        _in_loop: bool
        _dirty_orders: dict[str, Order]

        @property
        def broker(self) -> Broker: ...
        @property
        def portfolio(self) -> Portfolio: ...
        @property
        def risk(self) -> RiskEngine: ...
        def _control(self, name: Command | str, actor: str, **args: Any) -> str: ...
        def _require_live(self, name: Command | str) -> None: ...
        def _checkpoint(self, periodic: bool = False) -> None: ...
        def _now(self) -> datetime: ...

    def place_order(self, symbol: str, side: str, quantity: float, type: str = "market",
                    limit_price: float | None = None, actor: str = "user") -> str:
        """Rest an operator order (market: the next bar's open; limit: when a bar trades through
        ``limit_price``) after the risk check; it fills with the broker's volume and cash rules and
        rests until filled, canceled (:meth:`cancel_order`, cancel all, stop) or the run ends. Its fills
        add to the symbol's one position, which the strategy's exits and the stops manage like any
        other; a sell from flat opens a short where ``direction`` allows shorts. That is the paper
        broker; an exchange broker sends them to its exchange."""
        return self._control("place_order", actor, symbol=symbol, side=side, quantity=quantity, type=type,
                             limit_price=limit_price)

    def cancel_order(self, client_id: str, actor: str = "user") -> str:
        """Cancel one resting order by its client id."""
        return self._control("cancel_order", actor, client_id=client_id)

    def _do_place_order(self, actor: str, symbol: str, side: str, quantity: float, type: str = "market",
                        limit_price: float | None = None, client_id: str | None = None) -> str:
        if client_id is not None and (client_id in self.broker or client_id in self._dirty_orders
                                      or (self.store.orders(self.id).client_id == client_id).any()):
            return f"order {client_id} already placed"  # re-applied after a crash
        self._require_live(Command.PLACE_ORDER)
        order = self._new_order(symbol, side, quantity, type, limit_price, client_id)
        held = self.portfolio.quantity(symbol)  # paused: no new entries (a buy unless it covers a short, a sell
        opens = held >= 0.0 if order.side is Side.BUY else held <= 0.0 and self.config.direction != "long"  # short)
        if opens and self.state is S.PAUSED:
            raise CommandRejected(f"cannot place a {order.side.value}: the session is paused (no new entries; "
                                  "exits go through); resume first")
        ref = order.limit_price if order.type is OrderType.LIMIT else self.portfolio.marks.get(symbol)
        if ref is None:
            raise CommandRejected(f"no price for {symbol} yet: place a limit order or wait for its first bar")
        order.ref_price = ref  # the decision price
        reserved = ex.reserved_cash(self.broker.open_orders(), self.config.commission)  # open buys keep theirs
        d = self.risk.check(order, RiskContext(self._now(), ref, self.portfolio, reserved=reserved))
        if not d.accepted:
            raise CommandRejected(f"order rejected by risk rule {d.rule}"
                                  + (f" ({', '.join(f'{k}={v}' for k, v in d.detail.items())})" if d.detail else ""))
        order.quantity = d.quantity
        return self._submit_operator_order(order)

    def _submit_operator_order(self, order: Order) -> str:
        """Hand a validated, risk-checked operator order to the broker (paper: rest it in the simulated
        book; exchange: write it ahead and send it); returns the command's message."""
        self.broker.submit(order)
        if not self.broker.remote:
            self.store.upsert_order(self.id, order)
        if self._in_loop and not self.state.is_final:
            self._checkpoint()  # durable before the command is marked applied
        return self.broker.describe(order)

    def _new_order(self, symbol: str, side: str, quantity: float, type: str, limit_price: float | None,
                   client_id: str | None) -> Order:
        """A validated resting order, or ValueError saying which argument is wrong and what is allowed."""
        if symbol not in self.config.symbols:
            raise ValueError(f"unknown symbol {symbol!r}; session symbols: {', '.join(self.config.symbols)}")
        try:
            side_, type_ = Side(str(side).lower()), OrderType(str(type).lower())
        except ValueError:
            raise ValueError(f"side must be 'buy' or 'sell' and type 'market' or 'limit' (got {side!r}, {type!r})") \
                from None
        try:
            q = float(quantity)
            lp = None if limit_price is None else float(limit_price)
        except (TypeError, ValueError):
            raise ValueError(f"quantity and limit_price must be numbers (got {quantity!r}, {limit_price!r})") from None
        if not (q > 0.0 and math.isfinite(q)):
            raise ValueError(f"quantity must be a positive number (got {quantity!r})")
        if type_ is OrderType.LIMIT and not (lp is not None and lp > 0.0 and math.isfinite(lp)):
            raise ValueError(f"a limit order needs a positive limit_price (got {limit_price!r})")
        if type_ is OrderType.MARKET and lp is not None:
            raise ValueError("a market order takes no limit_price; use type='limit'")
        if client_id is None:
            self._order_seq += 1
            client_id = f"op{self._order_seq}"
        return Order(client_id, symbol, side_, q, type=type_, limit_price=lp, created_at=self.last_bar,
                     reason="operator")

    def _do_cancel_order(self, actor: str, client_id: str) -> str:
        self._require_live("cancel_order")
        order = self.broker.cancel(client_id)  # an exchange broker raises CommandRejected saying why
        if order is None:
            open_ = [o.client_id for o in self.broker.open_orders()]
            raise CommandRejected(f"no resting order {client_id!r}; open: {', '.join(open_) or 'none'}")
        if self.broker.remote:
            return f"canceling order {client_id} on {self.broker.venue} (retrying until it answers)"
        self.store.upsert_order(self.id, order)
        return f"order {client_id} canceled ({order.filled_quantity:g} of {order.quantity:g} filled)"

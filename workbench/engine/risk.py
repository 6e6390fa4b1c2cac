"""The one risk engine every order passes before it reaches a broker.

* Pre-trade (:meth:`RiskEngine.check`). Orders that add exposure (buys) pass, in order: the
  trading state, symbol filters, time restrictions (weekday, trading hours, blackouts), the order
  rate, then the caps of semantics rule 4 (min volume, max position, portfolio limit,
  concentration, max share of bar volume, cash), which shrink the quantity or reject it. Orders
  that reduce exposure (sells, capped at the position: long-only) skip the pre-trade rules;
  exits are always allowed. Every rejection is an event naming the rule and its numbers.
* In-trade (:meth:`RiskEngine.exits_due`): holding time, then stop loss / trailing stop / take
  profit (semantics rules 5-6).
* Circuit breaker: daily loss (against the equity at the start of the UTC day), drawdown from
  peak, or a burst of rejections moves the state from RUNNING to REDUCING (only exposure-reducing
  orders pass) or HALTED. HALTED blocks every order except the risk engine's own exits (stops,
  take profit, holding time) and operator flattening (reason "close_all" or "end"): strategy
  entries and exit signals are held. Only an explicit :meth:`reset` returns to RUNNING.
* Overrides (:meth:`override`) change limits until they expire; adjustments scale sizing,
  tighten stops and disable symbols. Both apply to open positions from the next check.

Times are timezone-aware; the engine never reads a clock, callers pass bar or wall time.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from enum import Enum
from typing import Any

import numpy as np
from pydantic import ValidationError

from workbench import execution as ex
from workbench.account import AccountGate, Breach
from workbench.account.policy import account_of, venue_of
from workbench.config import RiskConfig, SessionConfig
from workbench.domain import Order, OrderType, Position, Side
from workbench.engine.commands import OVERRIDABLE
from workbench.execution import codes
from workbench.execution.ledger import Portfolio
from workbench.execution.nb import gap_nb, tail_nb

HALT_EXEMPT = frozenset({ex.STOP_LOSS, ex.TAKE_PROFIT, ex.TRAILING_STOP, ex.TIME_LIMIT, ex.CLOSE_ALL, ex.END,
                         ex.EVENT, ex.LIQUIDATION})
STOP_FLOOR = 0.001  # tightened stops stay at least 0.1 % from their reference
_MINUTE = timedelta(minutes=1)


class CoolingOff(ValueError):
    """A control that raises risk during the cooling-off after a circuit breaker trip, without a waiver."""


def _looser(current: Any, new: Any) -> bool:
    """Does changing a limit from ``current`` to ``new`` loosen it (None is no limit; larger is looser)?"""
    return current is not None and (new is None or float(new) > float(current))


class TradingState(str, Enum):
    RUNNING = "running"
    REDUCING = "reducing"
    HALTED = "halted"


@dataclass(slots=True)
class RiskContext:
    """What a pre-trade check needs: the time (the fill bar's open for entries), the reference price
    (the fill bar's open; a limit order's limit), the fill bar's volume (inf = unknown: volume rules
    pass) and the portfolio, marked at this bar's opens so that exposure and equity follow rule 4."""

    time: datetime
    price: float
    portfolio: Portfolio
    volume: float = math.inf
    reserved: float = 0.0  # cash open buy orders could still spend (execution.reserved_cash): not for entries


@dataclass(slots=True)
class Decision:
    """A check's outcome: ``quantity`` may be capped; ``rule`` names the rule that rejected or capped."""

    accepted: bool
    quantity: float
    rule: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


class RiskEngine:
    """Pre-trade checks, in-trade exits, circuit breaker, overrides and adjustments for one session."""

    def __init__(self, config: SessionConfig):
        self.config = config
        self._cb = config.risk.circuit_breaker
        self.state = TradingState.RUNNING
        self.events: list[dict[str, Any]] = []
        self.size_factor = 1.0
        self.stop_delta = 0.0
        self.disabled: set[str] = set()
        self.overrides: list[dict[str, Any]] = []  # active: {changes, reason, actor, expires_at}
        self._next_expiry: datetime | None = None
        self._orders: deque[datetime] = deque()
        self._rejections: deque[datetime] = deque()
        self._peak = self._day_start = self._last_equity = float(config.initial_balance)
        self.gate: AccountGate | None = None  # attach_account
        self._now: datetime | None = None  # the latest bar time seen: trips start the cooling-off from it
        self.cool_until: datetime | None = None  # after a trip, no raising risk before this without a waiver
        self._gate_key = ("", "", "")
        self._day_end: datetime | None = None
        self._breaker_on = self._cb.max_daily_loss is not None or self._cb.max_drawdown is not None
        tail_on = self._cb.max_volatility is not None or self._cb.max_var is not None
        self._tail = np.zeros(self._cb.tail_window) if tail_on else None  # the last returns (tail_nb's ring)
        self._n_tail = 0
        self._day_bars = ex.day_bars(config)
        self.max_gap = self._cb.max_gap  # the gap breaker's limit (None: off); the Trader calls on_open
        self.leverage = 1.0 if config.margin is None else config.margin.leverage  # buying power (rule 16)
        self._recompute()

    # ---- effective limits ----------------------------------------------------
    def _recompute(self) -> None:
        eff = {k: getattr(self.config.risk, k) for k in OVERRIDABLE}
        for ov in self.overrides:
            eff.update(ov["changes"])
        for k in ("stop_loss", "trailing_stop"):
            if eff[k] is not None and self.stop_delta:
                eff[k] = max(eff[k] - self.stop_delta, STOP_FLOOR)
        self.limits: dict[str, Any] = eff
        self._sl, self._tp, self._trail = eff["stop_loss"], eff["take_profit"], eff["trailing_stop"]
        hold = eff["max_holding_minutes"]
        self._hold = None if hold is None else timedelta(minutes=hold)
        self._exits_on = any(v is not None for v in (self._sl, self._tp, self._trail, self._hold)) or (
            self.config.margin is not None)  # liquidation (rule 16)

    def _tick(self, now: datetime) -> None:
        if self._next_expiry is None or now < self._next_expiry:
            return
        expired = [ov for ov in self.overrides if ov["expires_at"] <= now]
        self.overrides = [ov for ov in self.overrides if ov["expires_at"] > now]
        self._next_expiry = min((ov["expires_at"] for ov in self.overrides), default=None)
        self._recompute()
        for ov in expired:
            self._event("risk_override_expired", f"risk override expired: {ov['changes']}",
                        changes=ov["changes"], reason=ov["reason"], time=now.isoformat(), limits=dict(self.limits))

    # ---- pre-trade -------------------------------------------------------------
    def target_quantity(self, price: float, equity: float) -> float:
        """Quantity a new entry asks for at ``price``: the config's sizing times :meth:`scale_sizing`'s factor."""
        return ex.target_quantity(self.config.sizing, equity, price, self.size_factor)

    def check(self, order: Order, ctx: RiskContext) -> Decision:
        """Accept (maybe with a smaller quantity) or reject ``order``; rejections are also events.
        The order is not modified: send ``decision.quantity``."""
        self._tick(ctx.time)
        held = ctx.portfolio.quantity(order.symbol)
        exit_ = order.reason != ex.ENTRY and (order.side is Side.SELL or held < 0.0)
        if exit_ and order.side is Side.SELL and held <= 0.0 and order.reason == "operator" \
                and self.config.direction != "long":
            exit_ = False  # an operator's sell with no long held opens (or adds to) a short: an entry (rule 15)
        if exit_:
            return self._check_sell(order, ctx)  # an exit: a long's sell or a short's cover (rule 15)
        if self.state is not TradingState.RUNNING:
            return self._reject(order, ctx, self.state.value, state=self.state.value)
        if order.symbol in self.disabled:
            return self._reject(order, ctx, "symbol_disabled", symbol=order.symbol)
        if order.symbol not in self.config.symbols:
            return self._reject(order, ctx, "unknown_symbol", symbol=order.symbol, symbols=list(self.config.symbols))
        if not ctx.price > 0.0:
            return self._reject(order, ctx, "price", price=ctx.price)
        blocked = ex.time_block(ctx.time, self.config.time)
        if blocked:
            return self._reject(order, ctx, blocked, time=ctx.time.isoformat(), timezone=self.config.time.timezone)
        rate = self.limits["max_orders_per_minute"]
        if rate is not None:
            self._prune(self._orders, ctx.time - _MINUTE)
            if len(self._orders) >= rate:
                return self._reject(order, ctx, "max_order_rate", limit=rate, orders_last_minute=len(self._orders))
        pf, price, cash = ctx.portfolio, ctx.price, ctx.portfolio.buying_power(self.leverage) - ctx.reserved
        exposure, pos_value = pf.exposure, pf.symbol_exposure(order.symbol)
        q, rule = ex.cap_entry(
            order.quantity, price, ctx.volume, cash, exposure,
            self.config.commission, self.config.slippage, self.config.volume,
            max_position=self.limits["max_position"], portfolio_limit=self.limits["portfolio_limit"],
            concentration_limit=self.limits["concentration_limit"], position_value=pos_value,
        )
        detail = self._numbers(rule, order.quantity, price, ctx.volume, cash, exposure, pos_value) if rule else {}
        if q <= 0.0:
            return self._reject(order, ctx, rule, **detail)
        breach = self._account_breach(order, ctx, q * price) if self.gate is not None else None
        if breach is not None:
            return self._reject(order, ctx, breach.rule, **breach.numbers())
        self._record_order(ctx.time)
        return Decision(True, q, rule, detail)

    def _check_sell(self, order: Order, ctx: RiskContext) -> Decision:
        held = ctx.portfolio.quantity(order.symbol) * (1.0 if order.side is Side.SELL else -1.0)
        if not order.quantity > 0.0:
            return self._reject(order, ctx, ex.TOO_SMALL, quantity=order.quantity)
        if held <= 0.0:
            return self._reject(order, ctx, "no_position", position=held)
        if self.state is TradingState.HALTED and order.reason not in HALT_EXEMPT:
            return self._reject(order, ctx, "halted", state="halted", order_reason=order.reason)
        self._record_order(ctx.time)
        if order.quantity > held:
            return Decision(True, held, "long_only", {"position": held, "quantity": order.quantity})
        return Decision(True, order.quantity)

    def _numbers(self, rule: str, qty: float, price: float, volume: float, cash: float, exposure: float,
                 pos_value: float) -> dict[str, Any]:
        lim, vr = self.limits, self.config.volume
        value = qty * price
        return {
            ex.MAX_POSITION: {"limit": lim["max_position"], "position_value": pos_value, "order_value": value},
            ex.PORTFOLIO_LIMIT: {"limit": lim["portfolio_limit"], "exposure": exposure, "order_value": value},
            ex.CONCENTRATION: {"limit": lim["concentration_limit"], "equity": cash + exposure,
                               "position_value": pos_value, "order_value": value},
            ex.MIN_VOLUME: {"bar_volume": volume, "min_bar_volume": vr.min_bar_volume},
            ex.MAX_SHARE: {"bar_volume": volume, "max_share": vr.max_share, "quantity": qty},
            ex.CASH: {"cash": cash, "order_value": value},
            ex.TOO_SMALL: {"quantity": qty},
        }.get(rule, {})

    def _reject(self, order: Order, ctx: RiskContext, rule: str, **numbers: Any) -> Decision:
        data = {"client_id": order.client_id, "symbol": order.symbol, "side": order.side.value,
                "quantity": order.quantity, "price": ctx.price, "rule": rule, "time": ctx.time.isoformat(), **numbers}
        shown = ", ".join(f"{k}={v}" for k, v in numbers.items())
        self._event("order_rejected", f"{order.side.value} {order.quantity:g} {order.symbol} rejected by {rule}"
                    + (f" ({shown})" if shown else ""), **data)
        self._count_rejection(ctx.time)
        return Decision(False, 0.0, rule, numbers)

    def _record_order(self, now: datetime) -> None:
        if self.limits["max_orders_per_minute"] is not None:
            self._orders.append(now)
            self._prune(self._orders, now - _MINUTE)

    @staticmethod
    def _prune(times: deque[datetime], cutoff: datetime) -> None:
        while times and times[0] <= cutoff:
            times.popleft()

    # ---- in-trade --------------------------------------------------------------
    def exits_due(self, position: Position, bar: ex.Bar) -> list[Order]:
        """Exit orders due for ``position`` on ``bar`` (holding time, then stops; rules 5-6).

        Call before the bar's entries and only if no exit signal is due at this open (a signal
        exit comes first), and before ``Portfolio.track_high`` sees this bar. Each order carries its
        reference price in ``stop_price`` (the level, or the open if it gapped beyond it), for
        ``PaperBroker.execute``. Checks start the bar after the entry fill.
        """
        if self._next_expiry is not None:
            self._tick(bar.time)
        opened = position.opened_at
        if not self._exits_on or position.quantity == 0.0 or opened is None or bar.time <= opened:
            return []
        side = 1 if position.quantity > 0.0 else -1  # a short's stops are mirrored (rule 15)
        if self._hold is not None and bar.time - opened >= self._hold:
            reason, ref = ex.TIME_LIMIT, bar.open
        else:
            hit = ex.position_exit(side, bar, position.avg_price, position.peak_price, self._sl, self._tp,
                                   self._trail, position.extra.get("liquidation"))
            if hit is None:
                return []
            reason, ref = hit
        return [Order(
            client_id=f"{position.symbol}:{reason}:{int(bar.time.timestamp())}", symbol=position.symbol,
            side=Side.SELL if side > 0 else Side.BUY, quantity=abs(position.quantity), type=OrderType.MARKET,
            created_at=bar.time, reason=reason, stop_price=ref,
        )]

    # ---- circuit breaker -------------------------------------------------------
    def on_equity(self, now: datetime, equity: float) -> None:
        """Feed the equity after each bar: tracks peak and start-of-UTC-day equity and trips on a breach."""
        self._now = now
        if self._next_expiry is not None:
            self._tick(now)
        if self._day_end is None or now >= self._day_end:
            self._day_start = self._last_equity
            u = now.astimezone(timezone.utc)
            self._day_end = datetime.combine(u.date(), time(), timezone.utc) + timedelta(days=1)
        prev, self._last_equity = self._last_equity, equity
        if equity > self._peak:
            self._peak = equity
        cb = self._cb
        if self.state is TradingState.RUNNING and self._breaker_on:
            breach = ex.breaker_breach(equity, self._day_start, self._peak, cb)
            if breach == "daily_loss":
                loss = 1.0 - equity / self._day_start
                self.trip("daily_loss", actor="risk", limit=cb.max_daily_loss, loss=loss,
                          day_start_equity=self._day_start, equity=equity, time=now.isoformat())
            elif breach == "drawdown":
                dd = 1.0 - equity / self._peak
                self.trip("drawdown", actor="risk", limit=cb.max_drawdown, drawdown=dd,
                          peak_equity=self._peak, equity=equity, time=now.isoformat())
        if self._tail is not None:
            self._on_tail(self._tail, now, equity / prev - 1.0 if prev != 0.0 else 0.0)

    def on_open(self, now: datetime, symbol: str, prev_close: float, open_: float, side: float = 1.0) -> None:
        """The gap breaker (rule 10), for a symbol held on ``side`` (> 0 long, < 0 short) at its bar's open: a
        gap against it from the previous close past ``max_gap`` trips to the action, past twice it halts."""
        assert self.max_gap is not None
        level, drop = gap_nb(prev_close, open_, self.max_gap, side)
        if level == 0 or self.state is TradingState.HALTED or (level == 1 and self.state is not TradingState.RUNNING):
            return
        self._now = now
        self.trip("gap", actor="risk", state=TradingState.HALTED if level == 2 else None, limit=self.max_gap,
                  value=drop, symbol=symbol, previous_close=prev_close, open=open_, time=now.isoformat())

    def _on_tail(self, ring: np.ndarray, now: datetime, ret: float) -> None:
        """The tail breakers (rule 10): past a limit trip to the action, past twice it halt."""
        cb = self._cb
        nan = math.nan
        self._n_tail, code, level, value = tail_nb(
            ring, self._n_tail, ret, self._day_bars, nan if cb.max_volatility is None else cb.max_volatility,
            nan if cb.max_var is None else cb.max_var)
        if level == 0 or self.state is TradingState.HALTED or (level == 1 and self.state is not TradingState.RUNNING):
            return
        reason = codes.BREAKER_REASONS[code]
        limit = cb.max_volatility if reason == "volatility" else cb.max_var
        self.trip(reason, actor="risk", state=TradingState.HALTED if level == 2 else None, limit=limit,
                  value=value, window_bars=len(ring), time=now.isoformat())

    def count_rejection(self, now: datetime) -> None:
        """An order refused outside this engine (the exchange: insufficient balance, a filter): it counts
        toward the breaker's rejection rule like this engine's own rejections (the refusal's event is the
        caller's)."""
        self._tick(now)
        self._count_rejection(now)

    def _may_raise_risk(self, what: str, actor: str, waive: str, now: datetime | None = None) -> None:
        """Raise :class:`CoolingOff` while cooling off after a trip, unless ``waive`` gives a reason
        (recorded as a ``cooling_off_waived`` event)."""
        now = now or self._now  # unknown right after a restore: still cooling off
        if self.cool_until is None or (now is not None and now >= self.cool_until):
            return
        if not waive.strip():
            raise CoolingOff(f"cooling off after the circuit breaker trip until {self.cool_until.isoformat()}: "
                             f"{what}, which raises risk; wait, or waive the cooling-off with a reason")
        self._event("cooling_off_waived", f"cooling-off waived by {actor}: {what} ({waive})", actor=actor,
                    reason=waive, what=what, cooling_off_until=self.cool_until.isoformat())

    # ---- the account's limits (workbench.account) -------------------------------------------
    def attach_account(self, gate: AccountGate, session_id: str) -> None:
        """Put the account policy in front of this session's entries: every entry this engine accepts
        is also checked against what all the gate's sessions of the same account hold."""
        self.gate, self._gate_key = gate, (account_of(self.config), venue_of(self.config), session_id)

    @property
    def day_pnl(self) -> float:
        """Equity now less the start-of-UTC-day equity (the daily-loss breaker's reference)."""
        return self._last_equity - self._day_start

    def report_account(self, portfolio: Portfolio) -> None:
        """Tell the gate what this session holds now and its P&L of the day."""
        if self.gate is not None:
            account, venue, sid = self._gate_key
            self.gate.report(sid, account, venue, portfolio.exposures(), self.day_pnl, currency=self.config.currency,
                             marks=portfolio.marks)

    def _account_breach(self, order: Order, ctx: RiskContext, value: float) -> Breach | None:
        assert self.gate is not None
        self.report_account(ctx.portfolio)
        account, venue, sid = self._gate_key
        return self.gate.check(account, venue, order.symbol, value, session_id=sid)

    def _count_rejection(self, now: datetime) -> None:
        cb = self._cb
        if cb.max_rejections is None:
            return
        self._rejections.append(now)
        self._prune(self._rejections, now - timedelta(seconds=cb.rejection_window_s))
        if self.state is TradingState.RUNNING and len(self._rejections) >= cb.max_rejections:
            self.trip("rejections", actor="risk", limit=cb.max_rejections, rejections=len(self._rejections),
                      window_s=cb.rejection_window_s, time=now.isoformat())

    def trip(self, reason: str, *, actor: str = "operator", state: TradingState | str | None = None,
             **numbers: Any) -> None:
        """Trip the breaker to ``state`` (default: the config's action). A trip never lowers the state:
        HALTED stays HALTED."""
        target = TradingState(state or self._cb.action)
        if self.state is TradingState.HALTED or self.state is target:
            return
        previous, self.state = self.state, target
        cooling = self._cb.cooling_off_minutes
        if cooling and self._now is not None:
            self.cool_until = max(self.cool_until or self._now, self._now + timedelta(minutes=cooling))
        self._event("circuit_breaker_tripped",
                    f"circuit breaker tripped ({reason}): {previous.value} -> {target.value}",
                    reason=reason, actor=actor, previous=previous.value, state=target.value,
                    cooling_off_until=self.cool_until.isoformat() if self.cool_until else None, **numbers)

    def reset(self, actor: str, reason: str) -> None:
        """Back to RUNNING. Peak and start-of-day equity restart from the latest equity (the losses so
        far are acknowledged) and the rejection window is cleared, so the breaker does not re-trip at once."""
        previous, self.state = self.state, TradingState.RUNNING
        self._peak = self._day_start = self._last_equity
        self._rejections.clear()
        self._event("circuit_breaker_reset", f"circuit breaker reset by {actor}: {reason}",
                    actor=actor, reason=reason, previous=previous.value, equity=self._last_equity)

    # ---- overrides and adjustments -------------------------------------------------
    def override(self, changes: dict[str, Any], reason: str, expires_at: datetime, *, actor: str = "operator",
                 now: datetime | None = None, waive: str = "") -> None:
        """Change limits (keys of ``OVERRIDABLE``; None lifts a limit) until ``expires_at``.

        Overrides stack in the order given; each expires on its own. Raises ValueError for an
        unknown key, an invalid value, an empty reason or an expiry not after ``now``.
        """
        unknown = sorted(set(changes) - set(OVERRIDABLE))
        if unknown:
            raise ValueError(f"cannot override {', '.join(unknown)}; overridable: {', '.join(OVERRIDABLE)}")
        if not reason.strip():
            raise ValueError("a risk override needs a reason")
        if expires_at.tzinfo is None or (now is not None and expires_at <= now):
            raise ValueError("expires_at must be a timezone-aware time in the future")
        try:
            RiskConfig.model_validate({**self.config.risk.model_dump(), **changes})
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise ValueError(f"invalid risk override: {problems}") from None
        loosened = [k for k, v in changes.items() if k != "take_profit" and _looser(self.limits.get(k), v)]
        if loosened:
            self._may_raise_risk(f"the override loosens {', '.join(loosened)}", actor, waive, now)
        previous = dict(self.limits)
        self.overrides.append({"changes": dict(changes), "reason": reason, "actor": actor, "expires_at": expires_at})
        self._next_expiry = min(ov["expires_at"] for ov in self.overrides)
        self._recompute()
        self._event("risk_override", f"risk override by {actor} until {expires_at.isoformat()}: {changes} ({reason})",
                    changes=dict(changes), previous={k: previous[k] for k in changes}, reason=reason, actor=actor,
                    expires_at=expires_at.isoformat(), limits=dict(self.limits))

    def scale_sizing(self, factor: float, *, actor: str = "operator", reason: str = "", waive: str = "") -> None:
        """New entries are ``factor`` × the configured size ("reduce size by 50 %" is 0.5; 1 restores).
        Absolute, not cumulative, so re-applying a command is harmless."""
        if not 0.0 < factor <= 10.0:
            raise ValueError(f"sizing factor must be in (0, 10] (got {factor})")
        if factor > self.size_factor:
            self._may_raise_risk(f"sizing x{factor:g} is larger than x{self.size_factor:g}", actor, waive)
        previous, self.size_factor = self.size_factor, float(factor)
        self._event("sizing_scaled", f"position sizing x{factor:g} by {actor}", factor=factor, previous=previous,
                    actor=actor, reason=reason)

    def tighten_stops(self, delta: float, *, actor: str = "operator", reason: str = "", waive: str = "") -> None:
        """Stop loss and trailing stop fractions become (configured or overridden) - ``delta``, at least
        ``STOP_FLOOR``: "tighten stops by 2 %" is 0.02, so a 5 % stop becomes 3 %. Absolute, not
        cumulative: 0 undoes it. Open positions' levels move at once; take profit is unchanged."""
        if not 0.0 <= delta < 1.0:
            raise ValueError(f"stop tightening must be a fraction in [0, 1) (got {delta})")
        if delta < self.stop_delta:
            self._may_raise_risk(f"stops tightened by {delta:g} instead of {self.stop_delta:g} loosens them",
                                 actor, waive)
        previous, self.stop_delta = self.stop_delta, float(delta)
        self._recompute()
        self._event("stops_tightened", f"stops tightened by {delta:g} by {actor}", delta=delta, previous=previous,
                    stop_loss=self._sl, trailing_stop=self._trail, actor=actor, reason=reason)

    def disable_symbol(self, symbol: str, *, actor: str = "operator", reason: str = "") -> None:
        """No new entries in ``symbol``; its exits and stops still run."""
        self._set_symbol(symbol, False, actor, reason)

    def enable_symbol(self, symbol: str, *, actor: str = "operator", reason: str = "") -> None:
        """Allow new entries in ``symbol`` again."""
        self._set_symbol(symbol, True, actor, reason)

    def _set_symbol(self, symbol: str, enabled: bool, actor: str, reason: str) -> None:
        if symbol not in self.config.symbols:
            raise ValueError(f"unknown symbol {symbol!r}; session symbols: {', '.join(self.config.symbols)}")
        (self.disabled.discard if enabled else self.disabled.add)(symbol)
        kind = "symbol_enabled" if enabled else "symbol_disabled"
        self._event(kind, f"{symbol} {kind.split('_')[1]} by {actor}", symbol=symbol, actor=actor, reason=reason)

    # ---- events and recovery -----------------------------------------------------
    def _event(self, kind: str, message: str, **data: Any) -> None:
        self.events.append({"kind": kind, "message": message, "data": data})

    def drain_events(self) -> list[dict[str, Any]]:
        """Return and clear the pending events."""
        out, self.events = self.events, []
        return out

    def snapshot(self) -> dict[str, Any]:
        """State that must survive a crash, JSON-able (rate and rejection windows are transient)."""
        return {
            "state": self.state.value, "size_factor": self.size_factor, "stop_delta": self.stop_delta,
            "disabled": sorted(self.disabled), "peak": self._peak, "day_start": self._day_start,
            "last_equity": self._last_equity, "day_end": self._day_end.isoformat() if self._day_end else None,
            "overrides": [{**ov, "expires_at": ov["expires_at"].isoformat()} for ov in self.overrides],
            "cool_until": self.cool_until.isoformat() if self.cool_until else None,
            "tail": None if self._tail is None else [self._n_tail, self._tail.tolist()],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Replace the state with a :meth:`snapshot` (no events are emitted)."""
        self.state = TradingState(state["state"])
        self.size_factor, self.stop_delta = float(state["size_factor"]), float(state["stop_delta"])
        self.disabled = set(state["disabled"])
        self._peak, self._day_start, self._last_equity = state["peak"], state["day_start"], state["last_equity"]
        self._day_end = datetime.fromisoformat(state["day_end"]) if state["day_end"] else None
        self.overrides = [{**ov, "expires_at": datetime.fromisoformat(ov["expires_at"])} for ov in state["overrides"]]
        self._next_expiry = min((ov["expires_at"] for ov in self.overrides), default=None)
        cool = state.get("cool_until")  # absent in checkpoints from before cooling-off
        tail = state.get("tail")
        if tail is not None and self._tail is not None and len(tail[1]) == len(self._tail):
            self._n_tail, self._tail[:] = int(tail[0]), tail[1]
        self.cool_until = datetime.fromisoformat(cool) if cool else None
        self._recompute()

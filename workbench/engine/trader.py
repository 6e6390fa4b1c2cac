"""The trader step: one bar time's bars in, that bar's orders out, with no store (semantics rules 1-10).

:meth:`Trader.step` is the bar loop of docs/execution-semantics.md, the bar-by-bar twin of the
vectorized walk (:func:`workbench.execution.simulate.fills_nb`):

1. mark the opens;
2. exits first, per held symbol: flatten (session stopping: ``end``; close all: ``close_all``), else a
   pending exit signal (held while the breaker is HALTED), else the risk engine's holding-time and
   stop exits (:meth:`RiskEngine.exits_due`);
3. entries in symbol order (pending entry signals of flat symbols, sized and checked by the one risk
   engine) while entries are on;
4. resting operator orders (``broker.on_bar``);
5. track highs, mark the closes;
6. signals for the next bar: ``strategy.last_signal`` over a rolling :class:`BarBuffer` per symbol;
7. the equity after the bar to the risk engine (circuit breaker);
8. live sessions (``act_on_close``): the new signals act at once, steps 2-3 at the bar forming now (its
   open taken as this bar's close, the decision price), as paper acts at the next bar's open.

Orders go to a :class:`~workbench.engine.brokers.base.Broker`; its fills come back through one
callback, are booked in the portfolio and handed on to ``on_fill`` (the session queues them for the
store). Paper and live sessions run this step, and so do the parity tests (:func:`replay`).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd

from workbench import execution as ex
from workbench.config import SessionConfig
from workbench.diagnostics.why import ENTRIES_OFF, HALTED, IN_FLIGHT, ORDER, SIGNAL, WhyCounts
from workbench.domain import TRADE_COLUMNS, Fill, Order, Side
from workbench.engine.brokers.base import Broker, FillSink, OrderSink, ignore_fill, ignore_order
from workbench.engine.risk import RiskContext, RiskEngine, TradingState
from workbench.execution import Bar
from workbench.execution.codes import DIRECTIONS
from workbench.execution.latency import SignalDelay
from workbench.execution.ledger import Portfolio
from workbench.execution.margin import carry, funding_per_bar, liquidation_price
from workbench.execution.scaling import Scaler, step_message
from workbench.execution.scaling import warm_up as warm_up_scaling
from workbench.strategies.base import BarWindow, Strategy
from workbench.strategies.indicators import warm_up as warm_up_strategies

_COLUMNS = ("open", "high", "low", "close", "volume")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_HALTED = TradingState.HALTED


class BarBuffer:
    """The last ``size`` bars of one symbol in preallocated numpy arrays (amortized O(1) append)."""

    def __init__(self, size: int):
        self.size = max(int(size), 1)
        cap = 2 * self.size + 64
        self.t = np.empty(cap, dtype=np.int64)
        self.v = np.empty((cap, len(_COLUMNS)))
        self.n = 0

    def append(self, t_ns: int, bar: Bar) -> None:
        n = self.n
        if n == len(self.t):
            keep = self.size - 1
            self.t[:keep] = self.t[n - keep:n]
            self.v[:keep] = self.v[n - keep:n]
            n = keep
        self.t[n] = t_ns
        self.v[n] = (bar.open, bar.high, bar.low, bar.close, bar.volume)
        self.n = n + 1

    def window(self) -> BarWindow:
        """The last ``size`` bars (views, no copy)."""
        n = self.n
        a = n - self.size if n > self.size else 0
        return BarWindow(self.t[a:n], self.v[a:n])

    def frame(self) -> pd.DataFrame:
        return self.window().frame()

    def resized(self, size: int) -> BarBuffer:
        out = BarBuffer(size)
        w = self.window()
        t, v = w.times, w.values
        k = min(len(t), out.size)
        out.t[:k], out.v[:k], out.n = t[len(t) - k:], v[len(t) - k:], k
        return out

    def snapshot(self) -> dict[str, Any]:
        w = self.window()
        return {"size": self.size, "t": w.times.tolist(), "v": w.values.tolist()}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> BarBuffer:
        out = cls(state["size"])
        k = len(state["t"])
        if k:
            out.t[:k] = state["t"]
            out.v[:k] = np.asarray(state["v"], dtype=float)
        out.n = k
        return out


class Trader:
    """Strategy signals, the risk engine and a broker over one portfolio, a bar time per :meth:`step`.

    ``pending[symbol]`` is the (entry, exit) signal acting at the symbol's next bar; ``close_all`` the
    symbols to sell at their next bar. ``signals`` computes the next bar's ``pending`` from this bar
    (default: ``strategy.last_signal`` over the rolling buffers; the parity tests replace it).
    """

    def __init__(self, config: SessionConfig, broker: Broker, *, strategy: Strategy | None = None,
                 risk: RiskEngine | None = None, portfolio: Portfolio | None = None):
        self.config = config
        self.symbols = list(config.symbols)
        self.risk = risk if risk is not None else RiskEngine(config)
        self.portfolio = portfolio if portfolio is not None else Portfolio(config.initial_balance,
                                                                          shorts=config.direction != "long")
        self.pending: dict[str, tuple[bool, bool]] = {s: (False, False) for s in self.symbols}
        #: a strategy's own (short entry, short exit) signals (rule 15); without them the default rule reads
        #: ``pending`` (short entry = exit signal, short exit = entry signal)
        self.pending_short: dict[str, tuple[bool, bool]] = {s: (False, False) for s in self.symbols}
        self._direction = DIRECTIONS[config.direction]
        mg = config.margin
        #: a perpetual's funding rates by funding time (rule 16; ``replay(funding=...)``), else the constant
        self.funding: pd.Series | None = None
        self._borrow = 0.0 if mg is None else float(mg.borrow_rate)
        self._carrying = mg is not None and (self._borrow != 0.0 or mg.funding_rate != 0.0)
        self.close_all: set[str] = set()
        self.buffers: dict[str, BarBuffer] = {}
        self.set_strategy(strategy)
        self.signals: Callable[[Mapping[str, Bar], int], None] = self._strategy_signals
        self._flattens = any(ev.flatten for ev in config.time.events)  # event windows that sell
        self.on_fill: FillSink = ignore_fill  # every booked fill (the session stores it)
        self.on_order: OrderSink = ignore_order  # orders ended without a fill (rejected, canceled)
        self.broker = broker
        broker.on_fill = self._filled
        broker.on_order = self._order_done
        self.last_time: datetime | None = None
        self.last_ns = -1  # last_time as int ns since the epoch
        self.bars_seen = 0
        #: live: act on a closed bar's signals at once (the forming bar), not at the next closed bar's open
        self.act_on_close = False
        self._bar: timedelta | None = None  # the bar length (act_on_close)
        self.why = WhyCounts()  # signals, orders, fills and blocked signals by rule (workbench.diagnostics.why)
        self.scaler = None if config.scaling is None else Scaler(config.scaling)  # automated scaling (rule 11)
        self.delay = SignalDelay.for_config(config, not broker.remote)  # order latency (rule 13)
        if self.scaler is not None:
            warm_up_scaling()

    def set_strategy(self, strategy: Strategy | None) -> None:
        """Use ``strategy`` (default: the config's) from the next bar; the buffers keep their bars."""
        if strategy is None:
            from workbench.strategies import create

            strategy = create(self.config.strategy, self.config.params)
        self.strategy = strategy
        lb = strategy.lookback()
        self.buffers = {s: self.buffers[s].resized(lb) if s in self.buffers else BarBuffer(lb) for s in self.symbols}
        warm_up_strategies()  # the strategies' numba kernels load now, not inside the first bar

    # ---- fills ---------------------------------------------------------------------
    def _filled(self, fill: Fill, order: Order) -> None:
        self.portfolio.apply_fill(fill)
        if self.config.margin is not None and order.reason == ex.ENTRY:  # isolated margin: its liquidation price
            pos = self.portfolio.positions[fill.symbol]
            pos.extra["liquidation"] = liquidation_price(self.config, 1 if pos.quantity > 0.0 else -1, pos.avg_price)
        if self.scaler is not None:  # a closed trade's return enters the scaling window
            left = self.portfolio.positions[fill.symbol].quantity
            self.scaler.on_fill(fill.symbol, fill.side is Side.BUY, fill.quantity * fill.price, fill.commission,
                                left if abs(left) > ex.MIN_QUANTITY else 0.0)
        self.why.add(int(fill.time.timestamp()), "fill")
        self.on_fill(fill, order)

    def _order_done(self, order: Order, why: str) -> None:
        self.on_order(order, why)

    # ---- one bar time -----------------------------------------------------------------
    def step(self, bars: Mapping[str, Bar], *, entries: bool = True, stopping: bool = False) -> float:
        """Trade one bar time (``bars``: symbol -> its bar, all with the same open time); returns the
        equity after it. ``entries``: new entries allowed (the session is running, not paused);
        ``stopping``: flatten every position (reason ``end``)."""
        pf, risk, broker = self.portfolio, self.risk, self.broker
        for b in bars.values():
            t = b.time
            break
        else:
            raise ValueError("step() needs the bars of at least one symbol")
        self.last_time = t
        marks, positions = pf.marks, pf.positions
        if risk.max_gap is not None:  # the gap breaker sees each held symbol's gap against it to its open
            for s, b in bars.items():
                pos = positions.get(s)
                if pos is not None and pos.quantity != 0.0:
                    risk.on_open(t, s, marks.get(s, b.open), b.open, pos.quantity)
        for s, b in bars.items():
            marks[s] = b.open
        t_ns = (t - _EPOCH) // _US * 1000
        if (self._carrying or self.funding is not None) and self.last_ns >= 0:
            self._carry(bars, self.last_ns, t_ns)  # 0) carrying costs at the open (rule 16)
        self._act(bars, t, entries=entries, stopping=stopping)
        broker.on_bar(bars, pf)  # 3) resting operator orders
        for s, b in bars.items():  # 4) peaks (a short's troughs) and marks see the whole bar
            marks[s] = b.close
            pos = positions.get(s)
            if pos is not None:
                if pos.quantity > 0.0:
                    if b.high > pos.peak_price:
                        pos.peak_price = b.high
                elif pos.quantity < 0.0 and b.low < pos.peak_price:
                    pos.peak_price = b.low
        self.last_ns = t_ns
        self.signals(bars, t_ns)  # 5) signals for the next bar
        if self.delay is not None:  # with latency, they act k bars later
            self.delay.apply(self.pending, bars)
            self.delay.apply(self.pending_short, bars, "short:")  # a strategy's own short signals too
        self.bars_seen += 1
        equity = pf.equity
        risk.on_equity(t, equity)  # 6) the breaker sees the equity after the bar
        if self.scaler is not None:  # and automated scaling
            self._scaling_step(t, t_ns, equity)
        if risk.gate is not None:  # and the account gate what the session holds
            risk.report_account(pf)
        if self.act_on_close and not stopping:
            self._act_now(bars, entries)
        return equity

    def _act_now(self, bars: Mapping[str, Bar], entries: bool) -> None:
        """Live: act on the signals of the bar that just closed at once, at the bar forming now (its open is
        taken as that close: the decision price), not at the next closed bar; they are then consumed."""
        if self._bar is None:
            from workbench.data.schema import timeframe_delta

            self._bar = timeframe_delta(self.config.data.timeframe).to_pytimedelta()
        forming = {s: Bar(b.time + self._bar, b.close, b.close, b.close, b.close, b.volume) for s, b in bars.items()}
        self._act(forming, next(iter(forming.values())).time, entries=entries, stopping=False, stops=False)
        for s in bars:
            self.pending[s] = self.pending_short[s] = (False, False)

    def _act(self, bars: Mapping[str, Bar], t: datetime, *, entries: bool, stopping: bool, stops: bool = True) -> None:
        """Exits, then entries, at the open of ``bars`` (bar time ``t``); ``stops``: check stop and holding-time
        exits too."""
        pf, risk, broker = self.portfolio, self.risk, self.broker
        positions, close_all = pf.positions, self.close_all
        stamp = -1
        was_side: dict[str, int] = {}  # symbol -> the side it held at the open (1 long, -1 short)
        reversing: set[str] = set()  # closed by a signal at this open: an entry may take the other side
        long_only = self._direction == 1
        why = self.why
        flatten = self._flattens and ex.event_flatten(t, self.config.time)  # a flattening event window (rule 7)
        for s, b in bars.items():  # 1) exits first
            pos = positions.get(s)
            if pos is None or pos.quantity == 0.0:
                continue
            side = was_side[s] = 1 if pos.quantity > 0.0 else -1
            signal = self.pending[s][1] if long_only else self.sides(s)[1 if side > 0 else 3]
            if broker.busy(s):
                if signal:
                    why.add(int(t.timestamp()), SIGNAL)
                    why.blocked(int(t.timestamp()), IN_FLIGHT)
                continue  # an order of s is in flight (exchange): never a second exit
            if stopping or s in close_all or (signal and risk.state is not _HALTED):
                reason = ex.END if stopping else ex.CLOSE_ALL if s in close_all else ex.SIGNAL
            else:  # a flattening event window sells before holding-time and stop exits
                reason = ex.EVENT if flatten else ""
            if reason:
                if stamp < 0:
                    stamp = int(t.timestamp())
                if reason == ex.SIGNAL:
                    reversing.add(s)
                orders = [Order(f"{s}:{reason}:{stamp}", s, Side.SELL if side > 0 else Side.BUY, abs(pos.quantity),
                                created_at=t, reason=reason)]
            else:
                if signal:  # an exit signal held by the breaker
                    why.add(int(t.timestamp()), SIGNAL)
                    why.blocked(int(t.timestamp()), HALTED)
                orders = risk.exits_due(pos, b) if stops else []
            for o in orders:
                o.ref_price = ref = o.stop_price if o.stop_price is not None else b.open  # the decision price
                d = risk.check(o, RiskContext(t, ref, pf, b.volume))
                if o.reason == ex.SIGNAL:
                    why.add(stamp, SIGNAL)
                    if d.accepted:
                        why.add(stamp, ORDER)
                    else:
                        why.blocked(stamp, d.rule)
                if d.accepted:
                    o.quantity = d.quantity
                    broker.submit(o, b)
        if close_all:
            close_all.difference_update(bars)
        if entries and (self.scaler is None or self.scaler.scale > 0.0):  # 2) entries, in symbol order
            for s, b in bars.items():
                if long_only:
                    if not self.pending[s][0]:
                        continue
                    side = 1
                else:
                    le, _lx, se, _sx = self.sides(s)
                    if le == se:  # no entry signal, or both sides at once (a conflict: both ignored)
                        continue
                    side = 1 if le else -1
                if (s in was_side and not (s in reversing and was_side[s] == -side)) or broker.busy(s):
                    continue  # held at the open and not reversed by a signal (rule 15)
                pos = positions.get(s)
                if pos is not None and pos.quantity != 0.0:
                    continue
                if stamp < 0:
                    stamp = int(t.timestamp())
                equity = pf.equity if risk.leverage == 1.0 else pf.equity * risk.leverage  # buying power (rule 16)
                q = self.entry_target(s, b.open, equity)
                if self.scaler is not None:
                    q *= self.scaler.scale
                o = Order(f"{s}:{ex.ENTRY}:{stamp}", s, Side.BUY if side > 0 else Side.SELL, q, created_at=t,
                          reason=ex.ENTRY, ref_price=b.open)
                reserved = ex.reserved_cash(broker.open_orders(), self.config.commission)  # open buys keep theirs
                d = risk.check(o, RiskContext(t, b.open, pf, b.volume, reserved))
                why.add(stamp, SIGNAL)
                if d.accepted:
                    why.add(stamp, ORDER)
                    o.quantity = d.quantity
                    broker.submit(o, b, pf.buying_power(risk.leverage) - reserved)
                else:
                    why.blocked(stamp, d.rule)
        else:
            self._entries_off(bars, list(was_side))

    def sides(self, symbol: str) -> tuple[bool, bool, bool, bool]:
        """(long entry, long exit, short entry, short exit) acting at ``symbol``'s next open under the config's
        direction (rule 15; :func:`workbench.execution.simulate.sides_at_nb` is the walk's twin): sides the
        direction does not trade are False; with 'both' one side's entry is the other's exit too."""
        e, x = self.pending[symbol]
        d = self._direction
        le = e and d & 1 != 0
        lx = x
        se = sx = False
        if d & 2:
            se, sx = self.pending_short[symbol] if self.strategy_of(symbol).own_shorts else (x, e)
        if d == 3:
            lx = lx or se
            sx = sx or le
        return le, lx, se, sx

    def _carry(self, bars: Mapping[str, Bar], prev_ns: int, t_ns: int) -> None:
        """Each held position's funding and borrow interest for this bar, at its open (rule 16)."""
        rate = float(funding_per_bar(np.array([prev_ns, t_ns], dtype=np.int64), self.config.margin, self.funding)[1])
        live_perp = getattr(self.broker, "books_funding", False)  # the exchange's own funding is the whole carry
        rate, borrow = (0.0, 0.0) if live_perp else (rate, self._borrow)
        pf = self.portfolio
        for s, b in bars.items():
            pos = pf.positions.get(s)
            if pos is not None and pos.quantity != 0.0:
                f, i = carry(pos.quantity, b.open, rate, borrow, t_ns - prev_ns)
                if f != 0.0 or i != 0.0:
                    pf.apply_carry(s, f, i)

    def entry_target(self, symbol: str, price: float, equity: float) -> float:
        """Quantity a new entry of ``symbol`` asks for at ``price`` (legs scale it: workbench.engine.legs)."""
        return self.risk.target_quantity(price, equity)

    def _scaling_step(self, t: datetime, t_ns: int, equity: float) -> None:
        """Automated scaling after the bar: a step is a 'scaling' event with the numbers behind it."""
        rec = self.scaler.on_bar(t_ns, equity) if self.scaler is not None else None
        if rec is not None:
            self.risk.events.append({"kind": "scaling", "message": step_message(rec),
                                     "data": {**rec, "time": t.isoformat()}})

    def _entries_off(self, bars: Mapping[str, Bar], was_long: list[str]) -> None:
        """Count the entry signals of flat symbols that entries being off (paused, stopping) blocked."""
        for s, b in bars.items():
            if self.pending[s][0] and s not in was_long:
                stamp = int(b.time.timestamp())
                self.why.add(stamp, SIGNAL)
                self.why.blocked(stamp, ENTRIES_OFF)

    def _strategy_signals(self, bars: Mapping[str, Bar], t_ns: int) -> None:
        last_signal, buffers, pending = self.strategy.last_signal, self.buffers, self.pending
        for s, b in bars.items():
            buf = buffers[s]
            buf.append(t_ns, b)
            e, x = last_signal(buf.window())
            pending[s] = (e and not x, x and not e)
            if self._own_shorts:
                e, x = self.strategy.last_short_signal(buf.window())
                self.pending_short[s] = (e and not x, x and not e)

    @property
    def _own_shorts(self) -> bool:
        return self._direction & 2 != 0 and self.strategy.own_shorts

    def strategy_of(self, symbol: str) -> Strategy:
        """The strategy whose signals ``symbol`` trades (a leg's, in a multi-strategy session)."""
        return self.strategy

    def open_symbols(self) -> list[str]:
        return [s for s, p in self.portfolio.positions.items() if p.quantity != 0.0]

    # ---- crash recovery ------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The trader's part of the runner state (JSON-able; closed trades follow from the fills)."""
        return {
            "portfolio": self.portfolio.snapshot(trades=False), "risk": self.risk.snapshot(),
            "pending": {s: list(v) for s, v in self.pending.items()},
            "pending_short": {s: list(v) for s, v in self.pending_short.items()},
            "last_ns": self.last_ns,  # the previous bar's open: funding and interest accrue from it (rule 16)
            "buffers": {s: b.snapshot() for s, b in self.buffers.items()},
            "close_all": sorted(self.close_all), "orders": self.broker.snapshot(), "why": self.why.snapshot(),
            "scaling": None if self.scaler is None else self.scaler.snapshot(),
            "latency": None if self.delay is None else self.delay.snapshot(),
        }

    def restore(self, state: Mapping[str, Any], strategy: Strategy) -> None:
        """Replace the state with a :meth:`snapshot` (the caller rebuilds closed trades if left out)."""
        self.portfolio.restore(state["portfolio"])
        self.risk.restore(state["risk"])
        self.strategy = strategy
        self.pending = {s: (bool(v[0]), bool(v[1])) for s, v in state["pending"].items()}
        self.pending_short = {s: (bool(v[0]), bool(v[1])) for s, v in state.get("pending_short", {}).items()}
        self.pending_short.update({s: (False, False) for s in self.pending if s not in self.pending_short})
        self.last_ns = int(state.get("last_ns", -1))
        self.buffers = {s: BarBuffer.restore(b) for s, b in state["buffers"].items()}
        self.close_all = set(state["close_all"])
        self.why = WhyCounts.restore(state.get("why"))
        self.broker.restore(state.get("orders", []))
        if self.delay is not None:  # signals still on their way to the market
            self.delay.restore(state.get("latency"))
        if self.scaler is not None and state.get("scaling"):  # a resumed session keeps its scale
            self.scaler.restore(state["scaling"])


def replay(config: SessionConfig, frames: Mapping[str, pd.DataFrame], *, include_open: bool = False,
           strategy: Strategy | None = None, funding: pd.Series | None = None) -> pd.DataFrame:
    """The shipped :class:`Trader` with the paper broker over ``frames`` (symbol -> OHLCV frame with a
    time index; symbols in config order), no store: the trades as a frame of
    :data:`workbench.domain.TRADE_COLUMNS` in booking order (closed trades by exit; with ``include_open``
    then the open positions, as the backtest reports them)."""
    from workbench.engine.brokers import PaperBroker
    from workbench.engine.feeds import ReplayFeed

    missing = [s for s in config.symbols if s not in frames]
    if missing:
        raise ValueError(f"no bars for {', '.join(missing)}; frames has {', '.join(frames) or 'nothing'}")
    from workbench.engine.legs import make_trader

    trader = make_trader(config, PaperBroker(config), strategy=strategy)
    trader.funding = funding  # a funding rate series (rule 16), as run_backtest(funding=...)
    step = trader.step
    for bars in ReplayFeed({s: frames[s] for s in config.symbols}).bars():
        step(bars)
    return pd.DataFrame(trader.portfolio.trade_log(include_open=include_open), columns=list(TRADE_COLUMNS))


__all__ = ["BarBuffer", "Trader", "replay"]

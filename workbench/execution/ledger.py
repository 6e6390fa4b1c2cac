"""The session's cash/position ledger: cash, positions, marks, equity, exposure and the trade log.

Long positions, and short ones when the portfolio is made with ``shorts=True`` (execution rule 15: a
signed quantity; a sell from flat opens a short, a buy covers it). The arithmetic of a fill is
:func:`workbench.execution.nb.book_buy_nb` / :func:`~workbench.execution.nb.book_sell_nb` (and
``book_short_nb`` / ``book_cover_nb``), which the vectorized walk books with too. An opening fill adds
to a position at a weighted average price; a closing fill closes part or all of it and logs one trade
row per closing fill (like vectorbt's exit trades), with the entry fees, slippage and carrying costs
(funding, interest: :meth:`Portfolio.apply_carry`, rule 16) attributed pro rata. Rows have the keys
of ``workbench.domain.TRADE_COLUMNS``, so ``pd.DataFrame(rows, columns=TRADE_COLUMNS)`` is the
backtest's trade log.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, cast

import pandas as pd

from workbench.domain import TRADE_COLUMNS, Fill, Position, Side
from workbench.jit import kernels


def _nb() -> Any:
    """:mod:`workbench.execution.nb`, compiled where numba is loaded; a dashboard replaying a session's
    stored fills books them with the same definitions run by Python (:func:`workbench.jit.kernels`)."""
    return kernels("workbench.execution.nb")


class Portfolio:
    """Cash and positions of one session. Positions stay in ``positions`` after closing (quantity 0)."""

    def __init__(self, initial_cash: float, shorts: bool = False):
        self.initial_cash = float(initial_cash)
        self.shorts = shorts  # may a sell from flat open a short (rule 15)?
        self.cash = float(initial_cash)
        self.positions: dict[str, Position] = {}
        self.trades: list[dict[str, Any]] = []  # closed trades
        self.marks: dict[str, float] = {}  # last valuation price per symbol
        self.fill_count = 0  # fills booked so far (the first fill_count fills rebuild the trades)
        self.carry_total = 0.0  # funding + interest booked so far (rule 16): not in the fills
        self.trade_carry: list[list[float]] = []  # [trade index, funding, interest] of closed trades that had any

    # ---- fills ---------------------------------------------------------------
    def apply_fill(self, fill: Fill) -> dict[str, Any] | None:
        """Book ``fill``: cash (incl. commission), the position, and for a sell the closed trade (returned)."""
        pos = self.positions.get(fill.symbol)
        self.fill_count += 1
        held = pos.quantity if pos is not None else 0.0
        if fill.side is Side.SELL and held <= 0.0 and self.shorts:
            self._open_short(fill, pos)
            return None
        if fill.side is Side.BUY and held < 0.0:
            return self._close(fill, cast(Position, pos), -1)
        if fill.side is Side.BUY:
            if pos is None:
                pos = self.positions[fill.symbol] = Position(fill.symbol)
            if pos.quantity <= 0.0:
                pos.quantity, pos.avg_price, pos.opened_at, pos.peak_price = 0.0, 0.0, fill.time, 0.0
                pos.extra = _fresh()
            self.cash, pos.quantity, pos.avg_price = _nb().book_buy_nb(
                self.cash, pos.quantity, pos.avg_price, fill.quantity, fill.price, fill.commission
            )
            pos.extra["entry_fees"] += fill.commission
            pos.extra["entry_slippage"] += fill.slippage
            self.marks.setdefault(fill.symbol, fill.price)
            return None
        if pos is None or not fill.quantity <= held * (1.0 + 1e-9):
            raise ValueError(f"sell of {fill.quantity} {fill.symbol} exceeds the position of {held} (long-only)")
        return self._close(fill, pos, 1)

    def _open_short(self, fill: Fill, pos: Position | None) -> None:
        """A sell from flat or short: open or add to the short (rule 15)."""
        if pos is None:
            pos = self.positions[fill.symbol] = Position(fill.symbol)
        if pos.quantity >= 0.0:
            pos.quantity, pos.avg_price, pos.opened_at, pos.peak_price = 0.0, 0.0, fill.time, math.inf
            pos.extra = _fresh()
        self.cash, pos.quantity, pos.avg_price = _nb().book_short_nb(
            self.cash, pos.quantity, pos.avg_price, fill.quantity, fill.price, fill.commission
        )
        pos.extra["entry_fees"] += fill.commission
        pos.extra["entry_slippage"] += fill.slippage
        self.marks.setdefault(fill.symbol, fill.price)

    def _close(self, fill: Fill, pos: Position, side: int) -> dict[str, Any]:
        """A sell of a long (``side`` 1) or a buy covering a short (-1): the closed trade (returned)."""
        size = abs(pos.quantity)
        if not fill.quantity <= size * (1.0 + 1e-9):
            raise ValueError(f"buy of {fill.quantity} {fill.symbol} exceeds the short position of {size}")
        share = min(fill.quantity / size, 1.0)
        extra = pos.extra
        entry_fees = extra["entry_fees"] * share
        entry_slip = extra["entry_slippage"] * share
        funding, interest = extra.get("funding", 0.0) * share, extra.get("interest", 0.0) * share
        book = _nb().book_sell_nb if side > 0 else _nb().book_cover_nb
        self.cash, left, pnl = book(
            self.cash, pos.quantity, pos.avg_price, fill.quantity, fill.price, fill.commission, entry_fees
        )
        pnl = pnl + (funding + interest)  # carrying costs are the trade's P&L (rule 16)
        if funding != 0.0 or interest != 0.0:
            self.trade_carry.append([len(self.trades), funding, interest])
        trade = {
            "symbol": fill.symbol,
            "entry_time": pos.opened_at,
            "exit_time": fill.time,
            "entry_price": pos.avg_price,
            "exit_price": fill.price,
            "quantity": fill.quantity,
            "pnl": pnl,
            "return_pct": pnl / (fill.quantity * pos.avg_price),
            "entry_fees": entry_fees,
            "exit_fees": fill.commission,
            "commission": entry_fees + fill.commission,
            "slippage": entry_slip + fill.slippage,
            "duration": fill.time - cast(datetime, pos.opened_at),  # set by the buy that opened it
            "exit_reason": fill.reason,
            "status": "closed",
            "side": "long" if side > 0 else "short",
            "funding": funding,
            "interest": interest,
        }
        self.trades.append(trade)
        pos.realized_pnl += pnl
        pos.quantity = left
        extra["entry_fees"] -= entry_fees
        extra["entry_slippage"] -= entry_slip
        if "funding" in extra:
            extra["funding"] -= funding
            extra["interest"] -= interest
        if abs(pos.quantity) <= _nb().MIN_QUANTITY or share >= 1.0:
            pos.quantity = 0.0
        return trade

    def apply_carry(self, symbol: str, funding: float, interest: float) -> None:
        """Book one bar's carrying costs of the open position in ``symbol`` (cash flows, negative = paid;
        :func:`workbench.execution.margin.carry`): cash, and the position's share for its trade row."""
        pos = self.positions[symbol]
        self.cash += funding
        self.cash += interest
        self.carry_total += funding + interest
        pos.extra["funding"] = pos.extra.get("funding", 0.0) + funding
        pos.extra["interest"] = pos.extra.get("interest", 0.0) + interest

    # ---- valuation -----------------------------------------------------------
    def mark(self, prices: Mapping[str, float]) -> None:
        """Set valuation prices (e.g. this bar's opens before sizing, its closes after it)."""
        self.marks.update(prices)

    def track_high(self, symbol: str, high: float, low: float = math.nan) -> None:
        """Raise a long's peak price (for trailing stops) to ``high``, or lower a short's to ``low``; call
        after each bar."""
        pos = self.positions.get(symbol)
        if pos is None:
            return
        if pos.quantity > 0.0 and high > pos.peak_price:
            pos.peak_price = high
        elif pos.quantity < 0.0 and low < pos.peak_price:
            pos.peak_price = low

    def position(self, symbol: str) -> Position | None:
        """The open position in ``symbol`` (long or short), or None when flat."""
        pos = self.positions.get(symbol)
        return pos if pos is not None and pos.quantity != 0.0 else None

    def quantity(self, symbol: str) -> float:
        pos = self.positions.get(symbol)
        return pos.quantity if pos is not None else 0.0

    def symbol_exposure(self, symbol: str) -> float:
        """Value of the position in ``symbol`` at its mark (a short's too: its size x mark, >= 0)."""
        pos = self.positions.get(symbol)
        if pos is None or pos.quantity == 0.0:
            return 0.0
        if pos.quantity > 0.0:
            return pos.quantity * self.marks.get(symbol, pos.avg_price)
        return -pos.quantity * self.marks.get(symbol, pos.avg_price)

    def exposures(self) -> dict[str, float]:
        """Value of each open position at its mark (shorts' >= 0 too)."""
        return {s: self.symbol_exposure(s) for s, p in self.positions.items() if p.quantity != 0.0}

    @property
    def exposure(self) -> float:
        """Gross value of open positions at their marks: longs' plus shorts' size x mark."""
        total = 0.0
        for s, p in self.positions.items():
            if p.quantity > 0.0:
                total += p.quantity * self.marks.get(s, p.avg_price)
            elif p.quantity < 0.0:
                total -= p.quantity * self.marks.get(s, p.avg_price)
        return total

    @property
    def short_value(self) -> float:
        """The shorts' signed value at their marks (<= 0)."""
        total = 0.0
        for s, p in self.positions.items():
            if p.quantity < 0.0:
                total += p.quantity * self.marks.get(s, p.avg_price)
        return total

    @property
    def equity(self) -> float:
        """Cash plus positions at their marks (shorts count negative): cash + gross exposure + 2 x the
        shorts' (negative) value, in one pass."""
        gross = short = 0.0
        marks = self.marks
        for s, p in self.positions.items():
            q = p.quantity
            if q > 0.0:
                gross += q * marks.get(s, p.avg_price)
            elif q < 0.0:
                v = q * marks.get(s, p.avg_price)
                gross -= v
                short += v
        return self.cash + gross + 2.0 * short

    def buying_power(self, leverage: float = 1.0) -> float:
        """What new entries may spend (rule 16): cash when nothing is short and nothing borrowed, else
        equity x ``leverage`` less the gross exposure."""
        short = self.short_value
        if leverage == 1.0 and short == 0.0:
            return self.cash
        exposure = self.exposure
        return (self.cash + exposure + 2.0 * short) * leverage - exposure

    def unrealized_pnl(self, symbol: str | None = None) -> float:
        """Mark-to-market gain of open positions against their average price (fees not deducted)."""
        syms = [symbol] if symbol is not None else list(self.positions)
        out = 0.0
        for s in syms:
            p = self.positions.get(s)
            if p is not None and p.quantity != 0.0:
                out += p.quantity * (self.marks.get(s, p.avg_price) - p.avg_price)
        return out

    @property
    def realized_pnl(self) -> float:
        """Net P&L of all closed trades."""
        return sum(p.realized_pnl for p in self.positions.values())

    def trade_log(self, include_open: bool = True) -> list[dict[str, Any]]:
        """Closed trades, then (optionally) open positions as rows with status "open": exit price =
        mark, pnl = unrealized less entry fees, no exit time, duration, exit fees or reason (as the
        backtest). Each row has exactly the keys of :data:`workbench.domain.TRADE_COLUMNS`, in order."""
        rows = [{c: t[c] for c in TRADE_COLUMNS} for t in self.trades]
        if include_open:
            for s, p in self.positions.items():
                if p.quantity == 0.0:
                    continue
                px = self.marks.get(s, p.avg_price)
                fees = p.extra["entry_fees"]
                size = abs(p.quantity)
                funding, interest = p.extra.get("funding", 0.0), p.extra.get("interest", 0.0)
                pnl = p.quantity * (px - p.avg_price) - fees + (funding + interest)
                values = {
                    "symbol": s, "entry_time": p.opened_at, "exit_time": None, "entry_price": p.avg_price,
                    "exit_price": px, "quantity": size, "pnl": pnl,
                    "return_pct": pnl / (size * p.avg_price), "entry_fees": fees, "exit_fees": 0.0,
                    "commission": fees, "slippage": p.extra["entry_slippage"], "duration": None,
                    "exit_reason": None, "status": "open", "side": "long" if p.quantity > 0.0 else "short",
                    "funding": funding, "interest": interest,
                }
                rows.append({c: values[c] for c in TRADE_COLUMNS})
        return rows

    # ---- crash recovery --------------------------------------------------------
    def snapshot(self, trades: bool = True) -> dict[str, Any]:
        """All state as a JSON-able dict (times as ISO strings, durations as seconds). ``trades=False``
        leaves out the closed trades (they follow from the fills: :meth:`replay_fills`)."""
        out = {
            "initial_cash": self.initial_cash,
            "cash": self.cash,
            "marks": dict(self.marks),
            "fill_count": self.fill_count,
            "positions": {
                s: {"quantity": p.quantity, "avg_price": p.avg_price, "opened_at": _iso(p.opened_at),
                    "realized_pnl": p.realized_pnl, "peak_price": p.peak_price, "extra": dict(p.extra)}
                for s, p in self.positions.items()
            },
        }
        if self.carry_total != 0.0 or self.trade_carry:  # what a rebuild from the fills cannot know
            out["carry_total"], out["trade_carry"] = self.carry_total, [list(c) for c in self.trade_carry]
        if trades:
            out["trades"] = [
                {**t, "entry_time": _iso(t["entry_time"]), "exit_time": _iso(t["exit_time"]),
                 "duration": t["duration"].total_seconds()}
                for t in self.trades
            ]
        return out

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replace all state with a :meth:`snapshot`."""
        self.initial_cash = float(state["initial_cash"])
        self.cash = float(state["cash"])
        self.marks = {s: float(v) for s, v in state["marks"].items()}
        self.fill_count = int(state.get("fill_count", 0))
        self.carry_total = float(state.get("carry_total", 0.0))
        self.trade_carry = [list(c) for c in state.get("trade_carry", ())]
        self.positions = {
            s: Position(s, quantity=p["quantity"], avg_price=p["avg_price"], opened_at=_dt(p["opened_at"]),
                        realized_pnl=p["realized_pnl"], peak_price=p["peak_price"], extra=dict(p["extra"]))
            for s, p in state["positions"].items()
        }
        self.trades = [
            {**t, "entry_time": _dt(t["entry_time"]), "exit_time": _dt(t["exit_time"]),
             "duration": timedelta(seconds=t["duration"])}
            for t in state.get("trades", ())
        ]

    def add_carry(self, state: Mapping[str, Any]) -> float:
        """Put a :meth:`snapshot`'s carrying costs into this portfolio's closed trades (rebuilt from the
        fills, which do not hold them): each trade's funding, interest and P&L. Returns the snapshot's
        carry total (what its cash holds beyond the fills')."""
        for index, funding, interest in state.get("trade_carry", ()):
            t = self.trades[int(index)]
            t["funding"], t["interest"] = funding, interest
            t["pnl"] = t["pnl"] + (funding + interest)
            t["return_pct"] = t["pnl"] / (t["quantity"] * t["entry_price"])
        return float(state.get("carry_total", 0.0))

    def add_checkpoint_carry(self, saved: Mapping[str, Any]) -> None:
        """Book into this portfolio, rebuilt from the stored fills, the carrying costs (rule 16) a runner
        checkpoint's portfolio (``saved``: a :meth:`snapshot`) holds and the fills do not: the closed
        trades' funding and interest (and P&L), the open positions' so far, and the cash they moved. What
        was booked after that checkpoint shows at the next one. An open position gets its saved carry only
        if it is the same position (opened at the same time), pro rata if fills since have reduced it."""
        n = len(self.trades)
        self.trade_carry = [list(c) for c in saved.get("trade_carry", ()) if int(c[0]) < n]
        self.add_carry({"trade_carry": self.trade_carry})
        total = float(saved.get("carry_total", 0.0))
        self.cash += total
        self.carry_total += total
        for symbol, p in (saved.get("positions") or {}).items():
            extra, pos = p.get("extra") or {}, self.positions.get(symbol)
            if pos is None or pos.quantity == 0.0 or not p["quantity"] or _utc(pos.opened_at) != _utc(p["opened_at"]):
                continue
            if "funding" in extra or "interest" in extra:
                share = min(abs(pos.quantity) / abs(p["quantity"]), 1.0)
                pos.extra["funding"] = float(extra.get("funding", 0.0)) * share
                pos.extra["interest"] = float(extra.get("interest", 0.0)) * share

    @classmethod
    def replay_fills(cls, initial_cash: float, fills: Iterable[Fill]) -> Portfolio:
        """A portfolio that booked ``fills`` in order: the same cash, positions and closed trades, bit for
        bit, as the one that booked them live (marks and peaks come from bars, not fills). A sell from flat
        was a short's entry (the live ledger accepted it), so replays allow shorts. Carrying costs (rule 16)
        are not fills: a replay leaves them out of the cash and trades (:meth:`add_checkpoint_carry`)."""
        pf = cls(initial_cash, shorts=True)
        for fill in fills:
            pf.apply_fill(fill)
        return pf

    @classmethod
    def replay_stored(cls, initial_cash: float, fills: pd.DataFrame, orders: pd.DataFrame,
                      saved: Mapping[str, Any] | None = None) -> Portfolio:
        """:meth:`replay_fills` of the store's fill rows (``Store.fills``, in booking order), each with
        its order's reason from the order rows (``Store.orders``); with ``saved`` (the runner checkpoint's
        portfolio) its carrying costs too (:meth:`add_checkpoint_carry`), as a view of a running session
        shows them."""
        reason = dict(zip(orders.client_id, orders.reason, strict=True)) if len(orders) else {}
        pf = cls.replay_fills(initial_cash, (
            Fill(r.client_id, r.symbol, Side(r.side), r.quantity, r.price, r.commission, r.slippage,
                 pd.Timestamp(r.time).to_pydatetime(), r.fill_id, reason.get(r.client_id, ""))
            for r in fills.itertuples(index=False)))
        if saved:
            pf.add_checkpoint_carry(saved)
        return pf


def _fresh() -> dict[str, float]:
    """A new position's running sums: its entry fees and slippage (and carrying costs, once paid)."""
    return {"entry_fees": 0.0, "entry_slippage": 0.0}


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _dt(s: str | None) -> datetime | None:
    return None if s is None else datetime.fromisoformat(s)


def _utc(t: datetime | str | None) -> pd.Timestamp | None:
    """``t`` as a UTC timestamp (naive times are UTC, as the store keeps them)."""
    if t is None:
        return None
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")

"""Legs of a multi-strategy session as columns of the execution walk.

Each (leg, symbol) is one column with its own position, its signals from its leg's strategy and its
entries sized as the session's sizing × the leg's allocation; every column shares the one cash
balance and the session's risk limits (docs/execution-semantics.md "Multi-strategy sessions"). A
session without legs is its own single leg: one column per symbol, allocation 1.

A column's ``key`` names it wherever a symbol is expected (positions, orders, trades): the symbol
itself when one leg trades it (always so in live sessions, where the exchange nets per symbol),
``SYMBOL@leg`` when several legs trade it.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from workbench.config import SessionConfig

__all__ = ["Column", "columns", "column_scale", "leg_of", "market_symbol", "with_legs", "leg_summary", "SEP"]

SEP = "@"  # "BTC/USDT@trend" (symbols never contain it)


class Column(NamedTuple):
    """One column of the walk: the leg ('' without legs), the symbol, the leg's allocation, the key."""

    leg: str
    symbol: str
    allocation: float
    key: str


def columns(config: SessionConfig) -> list[Column]:
    """The walk's columns of ``config``: legs in config order, each leg's symbols in its order."""
    if not config.legs:
        return [Column("", s, 1.0, s) for s in config.symbols]
    pairs = [(leg, s) for leg in config.legs for s in leg.symbols]
    shared = {s for s in config.symbols if sum(1 for _, x in pairs if x == s) > 1}
    return [Column(leg.name, s, float(leg.allocation), f"{s}{SEP}{leg.name}" if s in shared else s)
            for leg, s in pairs]


def market_symbol(key: str) -> str:
    """The exchange's symbol of a column key (what an account holds: legs' positions net per symbol)."""
    return key.partition(SEP)[0]


def leg_of(config: SessionConfig) -> dict[str, tuple[str, str]]:
    """Column key -> (leg, symbol)."""
    return {c.key: (c.leg, c.symbol) for c in columns(config)}


def column_scale(config: SessionConfig) -> np.ndarray:
    """Each column's sizing multiplier (its leg's allocation; 1 without legs), float64 (m,)."""
    return np.array([c.allocation for c in columns(config)], dtype=np.float64)


def with_legs(frame: pd.DataFrame, config: SessionConfig) -> pd.DataFrame:
    """A trade or order log of ``config`` (``symbol``: column keys; a backtest's, a session's or the store's)
    with a ``leg`` column after ``symbol`` (unchanged without legs); a key ``config`` does not know is refused."""
    if "leg" in frame.columns or not config.legs:
        return frame
    names = leg_of(config)
    unknown = sorted(set(frame["symbol"]) - set(names))
    if unknown:
        raise ValueError(f"symbols {', '.join(unknown)} are not columns of this config's legs ({', '.join(names)})")
    out = frame.copy()
    out.insert(out.columns.get_loc("symbol") + 1, "leg", [names[k][0] for k in frame["symbol"]])
    return out


def leg_summary(trades: pd.DataFrame, legs: list[str] | None = None) -> pd.DataFrame:
    """Per leg: trades, closed trades, P&L (closed and open), fees, win rate; indexed by leg, in ``legs``
    order (legs without trades get zeros). Trades need a ``leg`` column (:func:`with_legs`)."""
    if "leg" not in trades.columns:
        raise ValueError("these trades have no 'leg' column: they are not from a session with legs")
    names = legs if legs is not None else list(dict.fromkeys(trades["leg"]))
    closed = trades["status"] == "closed"
    g = trades.groupby("leg", sort=False)
    out = pd.DataFrame({
        "trades": g.size(),
        "closed": closed.groupby(trades["leg"]).sum(),
        "pnl": g["pnl"].sum(),
        "realized_pnl": trades["pnl"].where(closed, 0.0).groupby(trades["leg"]).sum(),
        "fees": g["commission"].sum(),
        "win_rate": (trades["pnl"] > 0).where(closed).groupby(trades["leg"]).mean(),
    }).reindex(names)
    out[["trades", "closed"]] = out[["trades", "closed"]].fillna(0).astype(int)
    out[["pnl", "realized_pnl", "fees"]] = out[["pnl", "realized_pnl", "fees"]].fillna(0.0)
    out.index.name = "leg"
    return out

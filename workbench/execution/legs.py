"""Legs of a multi-strategy session as columns of the execution walk.

Each (leg, symbol) is one column with its own position, its signals from its leg's strategy and its
entries sized as the session's sizing × the leg's allocation; every column shares the one cash
balance and the session's risk limits (docs/execution-semantics.md "Multi-strategy sessions"). A
session without legs is its own single leg: one column per symbol, allocation 1, key = the symbol.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from workbench.config import SessionConfig

__all__ = ["Column", "columns", "column_key", "split_key", "column_scale", "SEP"]

SEP = "@"  # column key = "BTC/USDT@trend" (symbols never contain it)


class Column(NamedTuple):
    """One column of the walk: the leg ('' without legs), the symbol and the leg's allocation."""

    leg: str
    symbol: str
    allocation: float

    @property
    def key(self) -> str:
        return column_key(self.leg, self.symbol)


def columns(config: SessionConfig) -> list[Column]:
    """The walk's columns of ``config``: legs in config order, each leg's symbols in its order."""
    if not config.legs:
        return [Column("", s, 1.0) for s in config.symbols]
    return [Column(leg.name, s, float(leg.allocation)) for leg in config.legs for s in leg.symbols]


def column_key(leg: str, symbol: str) -> str:
    """The column's name where a symbol is expected (positions, orders): the symbol itself without legs."""
    return f"{symbol}{SEP}{leg}" if leg else symbol


def split_key(key: str) -> tuple[str, str]:
    """(leg, symbol) of a :func:`column_key`."""
    symbol, _, leg = key.partition(SEP)
    return leg, symbol


def column_scale(config: SessionConfig) -> np.ndarray:
    """Each column's sizing multiplier (its leg's allocation; 1 without legs), float64 (m,)."""
    return np.array([c.allocation for c in columns(config)], dtype=np.float64)

"""Built-in strategies."""
from __future__ import annotations

import pandas as pd

from workbench.strategies.base import Param, Strategy
from workbench.strategies.registry import register


def _cross_above(a: pd.Series, b: pd.Series) -> pd.Series:
    return (a > b) & (a.shift(1) <= b.shift(1))


@register
class SmaCross(Strategy):
    name = "sma_cross"
    title = "SMA Cross"
    description = "Enter when the fast simple moving average crosses above the slow one; exit on the cross below."
    params = (
        Param("fast", int, 10, 2, 1000, "fast SMA window, bars"),
        Param("slow", int, 30, 3, 5000, "slow SMA window, bars"),
    )

    @classmethod
    def check_combination(cls, p: dict) -> None:
        if p["fast"] >= p["slow"]:
            raise ValueError(f"param 'fast' ({p['fast']}) must be smaller than 'slow' ({p['slow']})")

    def lookback(self) -> int:
        return self.p["slow"] + 1

    def signals(self, bars: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        close = bars["close"]
        fast = close.rolling(self.p["fast"]).mean()
        slow = close.rolling(self.p["slow"]).mean()
        return _cross_above(fast, slow), _cross_above(slow, fast)

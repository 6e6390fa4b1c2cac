"""Built-in strategies: SMA cross, pump detection, momentum, mean reversion.

Signals are levels: an entry is True on every bar its condition holds (the backtest and the
live loop enter on the first one while flat), never True together with an exit, and False
while indicators warm up.

Each strategy's math is one ``compute`` over numpy columns built on
:mod:`workbench.strategies.indicators` (see :class:`~workbench.strategies.base.ArrayStrategy`):
the backtest evaluates it over the whole history, the live loop over the newest bar only, and
both give the same decision bit for bit. Every indicator reads a finite window of past bars, so
``signals`` over the last ``lookback()`` bars also gives the same last row as over the whole
history. The cost of the vectorized path is O(n * window) for sums: for a 1,000-bar window over
525,600 bars ~0.1 s for a mean and ~1 s with the standard deviation.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

from workbench.strategies.base import ArrayStrategy, Param
from workbench.strategies.registry import register

Cols = Mapping[str, np.ndarray]
_INDICATORS = "workbench.strategies.indicators"
#: kept under their old names (tests and notebooks import them from here)
_OLD_NAMES = {"_window_sum": "window_sum", "_window_mean_std": "window_mean_std"}


def _ind() -> ModuleType:
    """The indicators (numba kernels), imported by the first computation: the strategy catalogue that
    forms and dashboards read does not load numba."""
    return sys.modules.get(_INDICATORS) or importlib.import_module(_INDICATORS)


def __getattr__(name: str) -> Any:
    if name in _OLD_NAMES:
        return getattr(_ind(), _OLD_NAMES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _plus_one(tail: int | None) -> int | None:
    return None if tail is None else tail + 1


@register
class SmaCross(ArrayStrategy):
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

    def compute(self, cols: Cols, tail: int | None) -> tuple[np.ndarray, np.ndarray]:
        ind = _ind()
        close = cols["close"]
        start = 0 if tail is None else max(len(close) - tail, 0)
        return ind.sma_cross_nb(close, self.p["fast"], self.p["slow"], start)


@register
class PumpDetection(ArrayStrategy):
    name = "pump_detection"
    title = "Pump Detection Strategy v2"
    description = (
        "Multi-factor pump detection algorithm: enters when a volume spike (volume vs the median of "
        "recent bars), price acceleration (a fast, still rising return) and a breakout above the "
        "recent high coincide (or at least `min_factors` of them); exits when momentum fades (close "
        "drops below its short moving average). Stops and take profit come from the risk settings."
    )
    params = (
        Param("volume_window", int, 60, 5, 5000, "bars of volume history for the median baseline"),
        Param("volume_mult", float, 3.0, 1.0, 100.0, "volume spike: bar volume >= this multiple of the median"),
        Param("accel_window", int, 5, 1, 500, "bars over which the price return is measured"),
        Param("min_return", float, 0.01, 0.0, 1.0, "minimum return over accel_window (0.01 = 1 %), and rising"),
        Param("breakout_window", int, 30, 2, 5000, "breakout: close above the highest high of this many prior bars"),
        Param("min_factors", int, 3, 1, 3, "how many of the 3 factors (volume, acceleration, breakout) must hold"),
        Param("exit_window", int, 10, 2, 5000, "exit when close falls below its mean over this many bars"),
    )

    def lookback(self) -> int:
        p = self.p
        return max(p["volume_window"] + 1, p["accel_window"] + 2, p["breakout_window"] + 1, p["exit_window"])

    columns = ("high", "close", "volume")

    def compute(self, cols: Cols, tail: int | None) -> tuple[np.ndarray, np.ndarray]:
        ind = _ind()
        p = self.p
        close, high, volume = cols["close"], cols["high"], cols["volume"]
        c, t = ind.tail_of(close, tail), _plus_one(tail)
        baseline = ind.prior_median(volume, p["volume_window"], tail)
        with np.errstate(divide="ignore", invalid="ignore"):
            spike = (ind.tail_of(volume, tail) / baseline) >= p["volume_mult"]
            ret = ind.tail_of(close, t) / ind.shifted(close, p["accel_window"], t) - 1.0  # one row more: rising?
        rising = np.zeros(len(ret), dtype=bool)
        rising[1:] = ret[1:] > ret[:-1]
        accel = ind.tail_of((ret >= p["min_return"]) & rising, tail)
        breakout = c > ind.prior_max(high, p["breakout_window"], tail)
        factors = spike.astype(int) + accel.astype(int) + breakout.astype(int)
        entries = factors >= p["min_factors"]
        fade = c < ind.window_sum(close, p["exit_window"], tail) / p["exit_window"]
        return entries, fade & ~entries


@register
class Momentum(ArrayStrategy):
    name = "momentum"
    title = "Momentum"
    description = (
        "Rate-of-change momentum: enters when the return over `window` bars exceeds `entry_threshold` "
        "(optionally only while close is above its `trend_window` SMA); exits when it drops below "
        "`exit_threshold`."
    )
    params = (
        Param("window", int, 60, 1, 10000, "rate-of-change lookback, bars"),
        Param("entry_threshold", float, 0.01, -1.0, 10.0, "enter when ROC > this (0.01 = 1 %)"),
        Param("exit_threshold", float, 0.0, -1.0, 10.0, "exit when ROC < this; must be <= entry_threshold"),
        Param("trend_window", int, 0, 0, 5000, "trend filter: enter only above the SMA of this many bars (0 = off)"),
    )

    @classmethod
    def check_combination(cls, p: dict) -> None:
        if p["exit_threshold"] > p["entry_threshold"]:
            raise ValueError(
                f"param 'exit_threshold' ({p['exit_threshold']}) must be <= 'entry_threshold' "
                f"({p['entry_threshold']}), otherwise entry and exit would fire together"
            )
        if p["trend_window"] == 1:
            raise ValueError("param 'trend_window' must be 0 (off) or at least 2 (got 1)")

    def lookback(self) -> int:
        return max(self.p["window"] + 1, self.p["trend_window"])

    def compute(self, cols: Cols, tail: int | None) -> tuple[np.ndarray, np.ndarray]:
        ind = _ind()
        p = self.p
        close = cols["close"]
        c = ind.tail_of(close, tail)
        with np.errstate(divide="ignore", invalid="ignore"):
            roc = c / ind.shifted(close, p["window"], tail) - 1.0
        entries = roc > p["entry_threshold"]
        if p["trend_window"]:
            entries &= c > ind.window_sum(close, p["trend_window"], tail) / p["trend_window"]
        return entries, roc < p["exit_threshold"]


@register
class MeanReversion(ArrayStrategy):
    name = "mean_reversion"
    title = "Mean Reversion"
    description = (
        "Z-score mean reversion: enters when close is more than `entry_z` standard deviations below "
        "its `window`-bar mean; exits once the z-score is back above -`exit_z` (0 = at the mean)."
    )
    params = (
        Param("window", int, 60, 3, 2000, "bars for the rolling mean and standard deviation"),
        Param("entry_z", float, 2.0, 0.1, 10.0, "enter when z-score < -entry_z"),
        Param("exit_z", float, 0.0, -10.0, 10.0, "exit when z-score > -exit_z; must be < entry_z"),
    )

    @classmethod
    def check_combination(cls, p: dict) -> None:
        if p["exit_z"] >= p["entry_z"]:
            raise ValueError(
                f"param 'exit_z' ({p['exit_z']}) must be smaller than 'entry_z' ({p['entry_z']}), "
                "otherwise entry and exit would fire together"
            )

    def lookback(self) -> int:
        return self.p["window"]

    def compute(self, cols: Cols, tail: int | None) -> tuple[np.ndarray, np.ndarray]:
        ind = _ind()
        p = self.p
        close = cols["close"]
        mean, std = ind.window_mean_std(close, p["window"], tail)
        with np.errstate(divide="ignore", invalid="ignore"):
            # a flat window has std ~1e-16 of price from rounding alone: no signal there
            z = np.where(std > 1e-10 * np.abs(mean), (ind.tail_of(close, tail) - mean) / std, np.nan)
        return z < -p["entry_z"], z > -p["exit_z"]

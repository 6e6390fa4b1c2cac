"""Built-in strategies: SMA cross, pump detection, momentum, mean reversion.

Signals are levels: an entry is True on every bar its condition holds (the backtest and the
live loop enter on the first one while flat), never True together with an exit, and False
while indicators warm up.

Every indicator reads a finite window of past bars, so ``signals`` over the last
``lookback()`` bars gives the same last row as over the whole history (the live loop relies
on this). Rolling means and standard deviations come from ``_window_sum`` and
``_window_mean_std``, which add each window's values in a fixed order (oldest to newest), so
a window's result depends only on its own values, never on where the frame starts. pandas'
online rolling mean differs by ~1e-12 depending on the start, which flips decisions whenever
close sits on its mean. Rolling max/median and price ratios are exact anyway. The cost is
O(n * window): for a 1,000-bar window over 525,600 bars ~0.1 s for a mean and ~1 s with the
standard deviation.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.strategies.base import Param, Strategy
from workbench.strategies.registry import register


def _cross_above(a: pd.Series, b: pd.Series) -> pd.Series:
    return (a > b) & (a.shift(1) <= b.shift(1))


def _window_sum(x: np.ndarray, window: int) -> np.ndarray:
    """Sum of each trailing ``window`` of ``x``, added oldest to newest; NaN during warm-up."""
    n = len(x)
    out = np.full(n, np.nan)
    if n < window:
        return out
    m = n - window + 1
    acc = x[:m].astype(np.float64, copy=True)
    for k in range(1, window):
        acc += x[k : k + m]
    out[window - 1 :] = acc
    return out


def _window_mean_std(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing mean and sample standard deviation (ddof=1), two-pass, fixed order."""
    n = len(x)
    mean = _window_sum(x, window) / window
    std = np.full(n, np.nan)
    if n < window:
        return mean, std
    m = n - window + 1
    mu = mean[window - 1 :]
    sq = np.zeros(m)
    for k in range(window):
        d = x[k : k + m] - mu
        sq += d * d
    std[window - 1 :] = np.sqrt(sq / (window - 1))
    return mean, std


def _bools(values: np.ndarray | pd.Series, index: pd.Index) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=bool), index=index)


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
        close = bars["close"].to_numpy(dtype=np.float64)
        fast = pd.Series(_window_sum(close, self.p["fast"]) / self.p["fast"], index=bars.index)
        slow = pd.Series(_window_sum(close, self.p["slow"]) / self.p["slow"], index=bars.index)
        return _cross_above(fast, slow), _cross_above(slow, fast)


@register
class PumpDetection(Strategy):
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

    def signals(self, bars: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        p = self.p
        close, high, volume = bars["close"], bars["high"], bars["volume"]
        baseline = volume.shift(1).rolling(p["volume_window"]).median()  # order statistic: exact
        with np.errstate(divide="ignore", invalid="ignore"):
            spike = (volume / baseline) >= p["volume_mult"]
        ret = close / close.shift(p["accel_window"]) - 1.0
        accel = (ret >= p["min_return"]) & (ret > ret.shift(1))
        breakout = close > high.shift(1).rolling(p["breakout_window"]).max()
        factors = spike.astype(int) + accel.astype(int) + breakout.astype(int)
        entries = factors >= p["min_factors"]
        c = close.to_numpy(dtype=float)
        fade = c < _window_sum(c, p["exit_window"]) / p["exit_window"]
        exits = fade & ~entries.to_numpy()
        return _bools(entries, bars.index), _bools(exits, bars.index)


@register
class Momentum(Strategy):
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

    def signals(self, bars: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        p = self.p
        close = bars["close"].to_numpy(dtype=float)
        n, w = len(close), p["window"]
        prev = np.full(n, np.nan)
        if n > w:
            prev[w:] = close[: n - w]
        roc = close / prev - 1.0
        entries = roc > p["entry_threshold"]
        if p["trend_window"]:
            entries &= close > _window_sum(close, p["trend_window"]) / p["trend_window"]
        exits = roc < p["exit_threshold"]
        return _bools(entries, bars.index), _bools(exits, bars.index)


@register
class MeanReversion(Strategy):
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

    def signals(self, bars: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        p = self.p
        close = bars["close"].to_numpy(dtype=float)
        mean, std = _window_mean_std(close, p["window"])
        with np.errstate(divide="ignore", invalid="ignore"):
            # a flat window has std ~1e-16 of price from rounding alone: no signal there
            z = np.where(std > 1e-10 * np.abs(mean), (close - mean) / std, np.nan)
        return _bools(z < -p["entry_z"], bars.index), _bools(z > -p["exit_z"], bars.index)

"""Margin, liquidation and carrying costs (docs/execution-semantics.md rule 16) for one order or one bar.

The numba kernels are in :mod:`workbench.execution.nb` (:func:`~workbench.execution.nb.liquidation_price_nb`,
:func:`~workbench.execution.nb.carry_nb`, :func:`~workbench.execution.nb.funding_due_nb`); the walk calls
them directly and the Trader through these wrappers. The funding series of a perpetual (a pandas Series
of rates indexed by funding time, e.g. ``workbench.data.funding``) is turned into the rate due at each bar
here, once, for both.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from workbench.config import Margin, SessionConfig
from workbench.execution import nb


def funding_per_bar(times_ns: np.ndarray, margin: Margin | None, series: pd.Series | None = None) -> np.ndarray:
    """The funding rate due at each bar opening at ``times_ns`` (int64 ns, increasing): the sum of the
    rates of the funding times in (previous bar, this bar]; 0 at the first bar. ``series``: rates indexed
    by funding time (UTC); without it, ``margin.funding_rate`` every 8 h from 00:00 UTC."""
    times_ns = np.asarray(times_ns, dtype=np.int64)
    out = np.zeros(len(times_ns))
    if len(times_ns) < 2 or (series is None and (margin is None or margin.funding_rate == 0.0)):
        return out
    if series is None:
        assert margin is not None
        for i in range(1, len(times_ns)):
            out[i] = nb.funding_due_nb(int(times_ns[i - 1]), int(times_ns[i]), float(margin.funding_rate))
        return out
    idx = pd.DatetimeIndex(series.index)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    order = np.argsort(idx.as_unit("ns").asi8, kind="stable")
    at = idx.as_unit("ns").asi8[order]
    csum = np.concatenate(([0.0], np.cumsum(np.asarray(series.to_numpy(dtype=float), dtype=float)[order])))
    upto = csum[np.searchsorted(at, times_ns, side="right")]  # sum of the rates at funding times <= t
    out[1:] = upto[1:] - upto[:-1]
    return out


def check_funding(series: pd.Series | None) -> pd.Series | None:
    """``series`` if it is a funding-rate series (numbers indexed by time), else a ValueError saying so."""
    if series is None:
        return None
    if not isinstance(series, pd.Series) or not isinstance(series.index, pd.DatetimeIndex):
        raise ValueError("funding must be a pandas Series of rates indexed by funding time (e.g. "
                         f"workbench.data.funding), got {type(series).__name__}")
    if series.isna().any():
        raise ValueError("the funding series has NaN rates; drop or fill them first")
    return series


def liquidation_price(config: SessionConfig, side: int, entry: float) -> float:
    """The liquidation price of a position of ``side`` (1 long, -1 short) entered at ``entry``; -inf/+inf
    (never) without a margin block."""
    mg = config.margin
    return nb.liquidation_price_nb(side, float(entry), math.nan if mg is None else mg.initial_fraction,
                                   0.0 if mg is None else float(mg.maintenance))


def carry(quantity: float, price: float, funding: float, borrow: float, elapsed_ns: int) -> tuple[float, float]:
    """(funding, interest) cash flows of a position of signed ``quantity`` at ``price`` for one bar: the
    funding rate due, and the annual ``borrow`` rate for the ``elapsed_ns`` since the previous bar."""
    f, i = nb.carry_nb(float(quantity), float(price), float(funding), float(borrow), int(elapsed_ns))
    return float(f), float(i)

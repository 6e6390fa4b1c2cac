"""Window indicators over numpy columns, evaluated over every row or only the last ``tail`` rows.

Strategies write their math once over these (see :class:`workbench.strategies.base.ArrayStrategy`):
the vectorized backtest asks for every row (``tail=None``), the bar-by-bar loop for the last one
or two. Both give bit-identical values for a row, whatever the frame's start, because each value
depends only on its own window and is computed in a fixed order:

* sums and means add a window's values oldest to newest (``acc += x``) in one numba kernel,
  :func:`window_sums_nb`, whatever the number of rows (no fastmath: LLVM keeps the order of the
  additions). pandas' online rolling mean differs by ~1e-12 depending on where the frame starts,
  which flips decisions whenever close sits on its mean;
* standard deviations are two-pass (mean, then the sum of squared deviations in the same order);
* max and median are order statistics (exact); an even-sized median is ``(a + b) / 2`` of the two
  middle values, as pandas computes it;
* :func:`sma_cross_nb` (the SMA cross strategy's whole decision) is a kernel over those sums, so the
  live loop's newest row is one numba call.

Every function returns a float array of length ``n`` (``tail=None``) or ``min(tail, n)`` (the last
rows), NaN where the window is not full yet.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit

_ROWWISE_LIMIT = 1 << 16  # rows x window at most this: per-row cumsum (few rows); else column loop


def tail_of(x: np.ndarray, tail: int | None) -> np.ndarray:
    """``x`` itself (``tail=None``) or its last ``tail`` rows."""
    return x if tail is None else x[len(x) - min(tail, len(x)):]


def _span(n: int, tail: int | None, window: int) -> tuple[int, int, int]:
    """(first output row, first row with a full window, rows with a full window)."""
    s = 0 if tail is None else max(n - tail, 0)
    first = max(s, window - 1)
    return s, first, max(n - first, 0)


def _windows(x: np.ndarray, lo: int, m: int, window: int) -> np.ndarray:
    """The ``m`` windows of ``window`` values starting at ``lo``, ``lo + 1``, ... as an (m, window) view."""
    if m == 1:
        return x[lo:lo + window][None, :]
    step = x.strides[0]
    return np.lib.stride_tricks.as_strided(x[lo:], shape=(m, window), strides=(step, step), writeable=False)


_BLOCK = 2048  # rows per block of window_sums_nb: the block's sums stay in L1 while its windows are added


@njit(cache=True, nogil=True)
def window_sums_nb(x: np.ndarray, lo: int, m: int, window: int) -> np.ndarray:
    """Sums of the ``m`` windows of ``window`` values of ``x`` starting at ``lo``, ``lo + 1``, ...,
    each added oldest to newest: ``((x[i] + x[i+1]) + x[i+2]) + ...`` (what ``np.cumsum`` gives along
    the window). The one definition of a window sum, for the backtest's every row and the live loop's
    last one or two alike; rows are independent, so the blocks change nothing in any row's order."""
    out = np.empty(m)
    for b in range(0, m, _BLOCK):
        e = min(b + _BLOCK, m)
        o = out[b:e]
        o[:] = x[lo + b:lo + e]
        for k in range(1, window):
            xs = x[lo + b + k:lo + e + k]
            for j in range(e - b):  # non-negative indices over slices: LLVM vectorizes across rows
                o[j] += xs[j]
    return out


def window_sum(x: np.ndarray, window: int, tail: int | None = None) -> np.ndarray:
    """Sum of each trailing ``window`` of ``x``, added oldest to newest; NaN during warm-up."""
    n = len(x)
    if tail is not None and n >= window + tail - 1:  # the live loop: every window is full
        return window_sums_nb(x, n - window - tail + 1, tail, window)
    s, first, m = _span(n, tail, window)
    out = np.full(n - s, np.nan)
    if m:
        out[first - s:] = window_sums_nb(x, first - window + 1, m, window)
    return out


# sma_cross_nb lives here, next to the kernel it calls: numba's on-disk cache is invalidated per source
# file, so a caller in another file could keep a stale copy of window_sums_nb after it changes.
@njit(cache=True, nogil=True)
def sma_cross_nb(close: np.ndarray, fast: int, slow: int, start: int) -> tuple[np.ndarray, np.ndarray]:
    """SMA cross (entries: the fast mean crosses above the slow one, ``fast > slow`` now and ``fast <=
    slow`` one row before; exits: the reverse) for rows ``start`` .. ``len(close) - 1``. Means are
    :func:`window_sums_nb` divided by the window; a row without a full slow window one row before
    (or with a NaN in its windows) has no signal. One kernel for the backtest's every row and the
    live loop's newest one."""
    n = len(close)
    entries, exits = np.zeros(n - start, np.bool_), np.zeros(n - start, np.bool_)
    a = max(start, slow)  # the first row whose previous row has both means
    if a >= n:
        return entries, exits
    fs = window_sums_nb(close, a - fast, n - a + 1, fast)  # rows a - 1 .. n - 1
    ss = window_sums_nb(close, a - slow, n - a + 1, slow)
    f0, s0 = fs[0] / fast, ss[0] / slow
    for i in range(1, n - a + 1):
        f1, s1 = fs[i] / fast, ss[i] / slow
        entries[a - start + i - 1] = f1 > s1 and f0 <= s0
        exits[a - start + i - 1] = s1 > f1 and s0 <= f0
        f0, s0 = f1, s1
    return entries, exits


def warm_up() -> None:
    """Load (numba's on-disk cache) or compile the kernels the live loop calls, for the arrays it passes
    (a column of a bar buffer: strided; contiguous while it holds one bar), so that a session's first
    bars do not pay for it."""
    for close in (np.ones((4, 5))[:, 3], np.ones(4)):
        window_sums_nb(close, 0, 2, 3)
        sma_cross_nb(close, 2, 3, 3)

def window_mean_std(x: np.ndarray, window: int, tail: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Trailing mean and sample standard deviation (ddof=1), two-pass, fixed order."""
    n = len(x)
    s, first, m = _span(n, tail, window)
    mean = window_sum(x, window, tail) / window
    std = np.full(n - s, np.nan)
    if not m:
        return mean, std
    lo, mu = first - window + 1, mean[first - s:]
    if m * window <= _ROWWISE_LIMIT:
        d = _windows(x, lo, m, window) - mu[:, None]
        sq = np.cumsum(d * d, axis=1)[:, -1]  # == 0.0 + d0² + d1² + ... as below
    else:
        sq = np.zeros(m)
        for k in range(window):
            d = x[lo + k:lo + k + m] - mu
            sq += d * d
    std[first - s:] = np.sqrt(sq / (window - 1))
    return mean, std


def shifted(x: np.ndarray, k: int, tail: int | None = None) -> np.ndarray:
    """``x`` ``k`` rows back (row i holds ``x[i - k]``), NaN for the first ``k`` rows."""
    n = len(x)
    s = 0 if tail is None else max(n - tail, 0)
    out = np.full(n - s, np.nan)
    a = max(s, k)
    if a < n:
        out[a - s:] = x[a - k:n - k]
    return out


def prior_max(x: np.ndarray, window: int, tail: int | None = None) -> np.ndarray:
    """Highest of the ``window`` values before each row (row i: max of ``x[i-window:i]``)."""
    if tail is None:
        return pd.Series(x).shift(1).rolling(window).max().to_numpy()
    n = len(x)
    s, first, m = _span(n, tail, window + 1)
    out = np.full(n - s, np.nan)
    if m:
        out[first - s:] = _windows(x, first - window, m, window).max(axis=1)
    return out


def prior_median(x: np.ndarray, window: int, tail: int | None = None) -> np.ndarray:
    """Median of the ``window`` values before each row (row i: median of ``x[i-window:i]``)."""
    if tail is None:
        return pd.Series(x).shift(1).rolling(window).median().to_numpy()
    n = len(x)
    s, first, m = _span(n, tail, window + 1)
    out = np.full(n - s, np.nan)
    if m:
        w = _windows(x, first - window, m, window)
        srt = np.sort(w, axis=1)
        h = window // 2
        med = srt[:, h] if window % 2 else (srt[:, h - 1] + srt[:, h]) / 2
        med[np.isnan(srt[:, -1])] = np.nan  # NaN sorts last: any NaN in the window
        out[first - s:] = med
    return out


def previous(x: np.ndarray) -> np.ndarray:
    """``x`` one row back within the array (the first row gets NaN)."""
    out = np.empty(len(x))
    if len(x):
        out[0] = np.nan
        out[1:] = x[:-1]
    return out

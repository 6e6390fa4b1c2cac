"""Numba kernels for parameter sweeps: many combinations through :func:`kernel.simulate_nb` at once.

A sweep must not build a vectorbt Portfolio per combination, so :func:`booking.replay_nb` (the
same pass as run_backtest's result) books the kernel's fills the way ``Portfolio.from_orders`` does
and :func:`metrics_nb` computes every key of ``METRIC_KEYS`` with the
formulas of :func:`workbench.backtest.metrics.compute_metrics` (sums pairwise like NumPy's, the
5 % quantile interpolated like ``np.quantile``), so a sweep row equals ``run_backtest(...).metrics``
to ~1e-12 (tested to 1e-9). :func:`sweep_chunk_nb` runs a chunk of combinations in parallel
(``prange``) and releases the GIL.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from workbench.backtest.booking import replay_nb
from workbench.backtest.kernel import simulate_nb
from workbench.backtest.metrics import METRIC_LABELS

METRIC_KEYS: tuple[str, ...] = tuple(METRIC_LABELS)  # compute_metrics' keys, in its order
N_METRICS = len(METRIC_KEYS)


@njit(cache=True)
def _leaf(a: np.ndarray, lo: int, n: int) -> float:
    """NumPy's pairwise_sum base case (n <= 128): eight running sums."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    stop = n - n % 8
    while i < stop:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True)
def _pairwise(a: np.ndarray, lo: int, n: int) -> float:
    """NumPy's pairwise summation of a[lo:lo+n], its recursion unrolled onto a stack (numba's
    cache cannot hold recursive functions called from a parallel kernel)."""
    if n <= 128:
        return _leaf(a, lo, n)
    los = np.empty(64, dtype=np.int64)
    ns = np.empty(64, dtype=np.int64)
    state = np.zeros(64, dtype=np.int64)  # 1: left half pending, 2: right half pending
    left = np.empty(64)
    top = 0
    los[0], ns[0], state[0] = lo, n, 0
    while True:
        m = ns[top]
        if state[top] == 0 and m > 128:  # split: n2 = half, rounded down to a multiple of 8
            n2 = m // 2
            n2 -= n2 % 8
            state[top] = 1
            top += 1
            los[top], ns[top], state[top] = los[top - 1], n2, 0
            continue
        v = _leaf(a, los[top], m)
        top -= 1
        while True:  # hand v to the parents
            if top < 0:
                return v
            half = ns[top] // 2
            half -= half % 8
            if state[top] == 1:
                left[top] = v
                state[top] = 2
                top += 1
                los[top], ns[top], state[top] = los[top - 1] + half, ns[top - 1] - half, 0
                break
            v = left[top] + v
            top -= 1


@njit(cache=True)
def np_sum(a: np.ndarray) -> float:
    """``np.sum`` of a contiguous float64 vector, same rounding (first element, then pairwise rest)."""
    n = len(a)
    if n == 0:
        return 0.0
    return a[0] + _pairwise(a, 1, n - 1)


@njit(cache=True)
def _quickselect(a: np.ndarray, k: int) -> float:
    """The k-th smallest of ``a`` (reordered in place): iterative quickselect, three-way partitions,
    so long runs of equal values (flat returns) stay O(n). numba's np.partition recurses too deep."""
    lo, hi = 0, len(a) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        x, y, z = a[lo], a[mid], a[hi]
        pivot = max(min(x, y), min(max(x, y), z))  # median of three
        lt, i, gt = lo, lo, hi
        while i <= gt:
            v = a[i]
            if v < pivot:
                a[i], a[lt] = a[lt], v
                lt += 1
                i += 1
            elif v > pivot:
                a[i], a[gt] = a[gt], v
                gt -= 1
            else:
                i += 1
        if k < lt:
            hi = lt - 1
        elif k > gt:
            lo = gt + 1
        else:
            return pivot
    return a[lo]


@njit(cache=True)
def _next_up(part: np.ndarray, j: int) -> float:
    """After a quickselect put the j-th smallest at ``part[j]`` (everything after it is >= it):
    the (j+1)-th smallest, or ``part[j]`` itself when j is the last position."""
    if j + 1 >= len(part):
        return part[j]
    return part[j + 1 :].min()


@njit(cache=True)
def _kth(a: np.ndarray, k: int, buf: np.ndarray) -> tuple[float, float]:
    """The k-th and (k+1)-th smallest of ``a`` (0-based; the k-th twice if k is the last), ``a``
    untouched, ``buf`` (len(a)) as scratch. Large inputs first bracket the answer between two
    values of a strided sample, count what lies below and quickselect only the values inside the
    bracket (one branch-free pass instead of quickselect's mispredicted partitions); a bracket
    that misses falls back to all of ``a``."""
    n = len(a)
    if n > 8192:
        ns = 4096
        sample = np.empty(ns)
        for i in range(ns):
            sample[i] = a[(i * n) // ns]
        sample.sort()
        pos = (k * ns) // n
        p_lo = sample[pos - 64] if pos - 64 > 0 else -np.inf
        p_hi = sample[pos + 64] if pos + 64 < ns else np.inf
        below = 0
        m = 0
        for i in range(n):
            x = a[i]
            below += x < p_lo
            buf[m] = x
            m += (x >= p_lo) & (x <= p_hi)
        if below <= k and k + 1 < below + m:
            part = buf[:m]
            x = _quickselect(part, k - below)
            return x, _next_up(part, k - below)
    buf[:n] = a
    part = buf[:n]
    x = _quickselect(part, k)
    return x, _next_up(part, k)


@njit(cache=True)
def _ratio(num: float, den: float) -> float:
    if np.isnan(num) or np.isnan(den):
        return np.nan
    if den == 0.0:
        if num == 0.0:
            return np.nan
        return np.inf if num > 0 else -np.inf
    return num / den


@njit(cache=True)
def metrics_nb(
    equity: np.ndarray, times: np.ndarray, init_cash: float, ppy: float,
    t_entry: np.ndarray, t_exit: np.ndarray, t_pnl: np.ndarray, t_ret: np.ndarray, t_closed: np.ndarray,
) -> np.ndarray:
    """Every metric of ``compute_metrics`` (in ``METRIC_KEYS`` order) from one booked backtest.

    Same arithmetic as compute_metrics' NumPy calls (so equal bit for bit to the straightforward
    version), but fused: one pass for returns and drawdown, a sampled bracket for the quantile
    (:func:`_kth`) and one reused scratch vector instead of a temporary per NumPy expression."""
    out = np.full(N_METRICS, np.nan)
    n = len(equity)
    final = equity[n - 1] if n else init_cash
    total_return = final / init_cash - 1.0
    r = np.empty(n)
    scratch = np.empty(n)
    annualized = np.nan
    mean = std = downside = max_dd = var = es = np.nan
    if n:
        annualized = max(final / init_cash, 0.0) ** (ppy / n) - 1.0
        # returns; drawdown from the running peak (initial balance counting as the first peak):
        # within one peak's reign the deepest point is its lowest equity ((peak - e) / peak is
        # monotone in e, rounding included), so one division per new peak, not per bar
        peak = init_cash
        trough = init_cash
        max_dd = 0.0
        bad = not init_cash > 0.0  # or a NaN equity: compute_metrics' drawdown is NaN then
        prev = init_cash
        for i in range(n):
            e = equity[i]
            r[i] = e / prev - 1.0 if prev != 0.0 else 0.0
            prev = e
            bad |= e != e
            if e > peak:
                max_dd = max(max_dd, (peak - trough) / peak)
                peak = e
                trough = e
            trough = min(trough, e)
        max_dd = np.nan if bad else max(max_dd, (peak - trough) / peak)
        mean = np_sum(r) / n
        # 5 % quantile, np.quantile's 'linear' method
        virtual = (n - 1) * 0.05
        lo = int(np.floor(virtual))
        hi = min(lo + 1, n - 1)
        a, b = _kth(r, lo, scratch)
        if hi == lo:
            b = a
        gamma = virtual - lo
        diff = b - a
        q = b - diff * (1.0 - gamma) if gamma >= 0.5 else a + diff * gamma
        # one last pass over r: the tail r[r <= q] in order (the pairwise sum depends on it;
        # branch-free), squared deviations into scratch, squared losses over r itself
        tail = np.empty(n)
        n_tail = 0
        for i in range(n):
            v = r[i]
            tail[n_tail] = v
            n_tail += v <= q
            d = v - mean
            scratch[i] = d * d
            g = min(v, 0.0)
            r[i] = g * g
        var = 0.0 - q
        es = 0.0 - np_sum(tail[:n_tail]) / n_tail
        if n >= 2:
            std = np.sqrt(np_sum(scratch) / (n - 1))
            downside = np.sqrt(np_sum(r) / n)
    sqrt_ppy = np.sqrt(ppy) if np.isfinite(ppy) else np.nan

    closed = np.nonzero(t_closed)[0]
    count = len(closed)
    pnl = t_pnl[closed]
    wins = pnl[pnl > 0.0]
    losses = pnl[pnl < 0.0]
    avg_win = np_sum(wins) / len(wins) if len(wins) else np.nan
    avg_loss = np_sum(losses) / len(losses) if len(losses) else np.nan
    span_days = n / ppy * 365.0 if n else np.nan
    # exposure: rows with a trade open, entry row <= i < exit row (open trades: to the end), i.e.
    # the length of the union of those intervals
    exposure = np.nan
    if len(t_entry) == 0:
        exposure = 0.0 if n else np.nan
    elif n:
        order = np.argsort(t_entry, kind="mergesort")
        busy = 0
        cover = 0  # rows before this one are counted
        for t in order:
            start = t_entry[t]
            end = max(t_exit[t] if t_closed[t] else n, start)
            start = max(start, cover)
            if end > start:
                busy += end - start
                cover = end
        exposure = busy / n

    out[0] = final - init_cash
    out[1] = final
    out[2] = total_return
    out[3] = annualized
    out[4] = std * sqrt_ppy
    out[5] = _ratio(mean, std) * sqrt_ppy
    out[6] = _ratio(mean, downside) * sqrt_ppy
    out[7] = max_dd
    out[8] = var
    out[9] = es
    out[10] = _ratio(annualized, max_dd)
    if count:
        out[11] = len(wins) / count
        out[12] = _ratio(np_sum(wins), -np_sum(losses))
    out[13] = avg_win
    out[14] = avg_loss
    if len(losses):
        out[15] = avg_win / abs(avg_loss)
    out[16] = count
    if span_days > 0:
        out[17] = count / span_days
    if count:
        dur = 0.0
        for t in closed:
            dur += times[t_exit[t]] - times[t_entry[t]]
        out[18] = dur / count / 3.6e12
    out[19] = exposure
    if count:
        rets = t_ret[closed]
        out[20] = rets.max()
        out[21] = rets.min()
    return out


@njit(cache=True, parallel=True, nogil=True)
def sweep_chunk_nb(
    times: np.ndarray, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
    volume: np.ndarray, close_filled: np.ndarray,
    buys: np.ndarray,  # (k, n, m) bool, shifted like run_backtest's
    sells: np.ndarray,
    allowed: np.ndarray, init_cash: float, sizing_mode: int, sizing_value: float, max_position: float,
    portfolio_limit: float, taker: float, fixed_fee: float, slip: float, impact: float, min_volume: float,
    max_share: float, skip_excess: bool, sl: float, tp: float, trail: float, max_hold_ns: int, ppy: float,
) -> np.ndarray:
    """Metrics (k, N_METRICS) of k combinations: simulate_nb, replay_nb, metrics_nb each, in parallel."""
    k = buys.shape[0]
    out = np.empty((k, N_METRICS))
    for j in prange(k):
        qty, price, _, _, call_seq = simulate_nb(
            times, open_, high, low, close, volume, buys[j], sells[j], allowed, init_cash, sizing_mode,
            sizing_value, max_position, portfolio_limit, taker, fixed_fee, slip, impact, min_volume,
            max_share, skip_excess, sl, tp, trail, max_hold_ns,
        )
        b = replay_nb(qty, price, call_seq, close_filled, init_cash, taker, fixed_fee)
        # value (n,); exit trades: size, entry_idx, entry_price, exit_idx, pnl, status (1 closed)
        value, t_size, t_entry, t_price, t_exit, t_pnl, t_status = b[2], b[10], b[11], b[12], b[14], b[17], b[18]
        t_ret = t_pnl / (t_size * t_price)  # return_pct as result.trades_frame computes it
        out[j] = metrics_nb(value, times, init_cash, ppy, t_entry, t_exit, t_pnl, t_ret, t_status == 1)
    return out

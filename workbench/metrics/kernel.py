"""The metrics kernel: every metric of :mod:`workbench.metrics`, defined once, in numba.

:func:`metrics_nb` is what ``compute_metrics`` (backtests, sessions, reports) wraps and what the
parameter sweep (:func:`workbench.backtest.sweep_kernel.sweep_chunk_nb`) calls per combination
inside its ``prange`` loop. Its arithmetic is NumPy's (:func:`np_sum` sums pairwise like
``np.sum``; the 5 % quantile is interpolated like ``np.quantile``), so the numbers equal the
straightforward NumPy formulas.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from workbench.metrics import METRIC_KEYS  # metrics_nb's output, in order

N_METRICS = len(METRIC_KEYS)


@njit(cache=True)
def _step_range_nb(i8: np.ndarray) -> tuple[int, int]:
    """(smallest, largest) step between consecutive values (at least two values)."""
    lo = hi = i8[1] - i8[0]
    cur, prev = i8[2:], i8[1:-1]  # views, loop from 0, no branches: numba vectorizes it
    for t in range(len(cur)):
        d = cur[t] - prev[t]
        lo = min(lo, d)
        hi = max(hi, d)
    return lo, hi


@njit(cache=True)
def _term(x: float, mode: int, shift: float) -> float:
    """What a sum of mode ``mode`` adds for ``x``: x itself (0), (x - shift)² (1), min(x, 0)² (2)."""
    if mode == 1:
        d = x - shift
        return d * d
    if mode == 2:
        g = min(x, 0.0)
        return g * g
    return x


@njit(cache=True)
def _leaf(a: np.ndarray, lo: int, n: int, mode: int, shift: float) -> float:
    """NumPy's pairwise_sum base case (n <= 128) over ``_term(a[i])``: eight running sums. (Loops
    from 0 over a view: numba then knows the indices are not negative, and vectorizes.)"""
    v = a[lo : lo + n]
    if n < 8:
        res = 0.0
        for i in range(n):
            res += _term(v[i], mode, shift)
        return res
    r0, r1 = _term(v[0], mode, shift), _term(v[1], mode, shift)
    r2, r3 = _term(v[2], mode, shift), _term(v[3], mode, shift)
    r4, r5 = _term(v[4], mode, shift), _term(v[5], mode, shift)
    r6, r7 = _term(v[6], mode, shift), _term(v[7], mode, shift)
    stop = n - n % 8
    for j in range(1, stop // 8):
        i = j * 8
        r0 += _term(v[i], mode, shift)
        r1 += _term(v[i + 1], mode, shift)
        r2 += _term(v[i + 2], mode, shift)
        r3 += _term(v[i + 3], mode, shift)
        r4 += _term(v[i + 4], mode, shift)
        r5 += _term(v[i + 5], mode, shift)
        r6 += _term(v[i + 6], mode, shift)
        r7 += _term(v[i + 7], mode, shift)
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(stop, n):
        res += _term(v[i], mode, shift)
    return res


@njit(cache=True)
def _pairwise(a: np.ndarray, lo: int, n: int, mode: int, shift: float) -> float:
    """NumPy's pairwise summation of ``_term`` over a[lo:lo+n], its recursion unrolled onto a stack
    (numba's cache cannot hold recursive functions called from a parallel kernel)."""
    if n <= 128:
        return _leaf(a, lo, n, mode, shift)
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
        v = _leaf(a, los[top], m, mode, shift)
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
def np_sum(a: np.ndarray, mode: int = 0, shift: float = 0.0) -> float:
    """``np.sum`` of a contiguous float64 vector, same rounding (first element, then pairwise rest);
    mode 1 sums ``(a - shift)**2`` and mode 2 ``np.minimum(a, 0)**2`` the same way, without the
    temporary array."""
    n = len(a)
    if n == 0:
        return 0.0
    return _term(a[0], mode, shift) + _pairwise(a, 1, n - 1, mode, shift)


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
def _select(a: np.ndarray, k: int, cand: np.ndarray, sel: np.ndarray) -> tuple[float, float, int]:
    """The k-th and (k+1)-th smallest of ``a`` (0-based; the k-th twice if k is the last), ``a``
    untouched, and ``mc``: ``cand[:mc]`` holds, in ``a``'s order, every value up to the (k+1)-th
    (a superset; the caller filters it). ``cand`` and ``sel`` (len(a) each) are scratch.

    Large inputs first bracket the answer between two values of a strided sample: one
    branch-free pass counts what lies below and keeps the values up to the bracket's top, and only
    those inside the bracket are quickselected (instead of quickselect's mispredicted partitions
    over all of ``a``); a bracket that misses falls back to all of ``a``."""
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
        at_lo = 0
        at_hi = 0
        mc = 0
        for i in range(n):
            x = a[i]
            below += x < p_lo
            at_lo += x == p_lo
            at_hi += x == p_hi
            cand[mc] = x
            mc += x <= p_hi
        # ties (e.g. the zero returns of flat bars): a bracket end that is both answers
        if below <= k and k + 1 < below + at_lo:
            return p_lo, p_lo, mc
        if mc - at_hi <= k and k + 1 < mc:
            return p_hi, p_hi, mc
        m = 0
        for i in range(mc):
            x = cand[i]
            sel[m] = x
            m += x >= p_lo
        if below <= k and k + 1 < below + m:
            part = sel[:m]
            x = _quickselect(part, k - below)
            return x, _next_up(part, k - below), mc
    cand[:n] = a
    sel[:n] = a
    part = sel[:n]
    x = _quickselect(part, k)
    return x, _next_up(part, k), n


@njit(cache=True)
def _kth(a: np.ndarray, k: int, buf: np.ndarray) -> tuple[float, float]:
    """The k-th and (k+1)-th smallest of ``a`` (0-based; the k-th twice if k is the last), ``a``
    untouched, ``buf`` (len(a)) as scratch: :func:`_select`."""
    x, x1, _ = _select(a, k, buf, np.empty(len(a)))
    return x, x1


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
def _exposure_nb(t_start: np.ndarray, t_end: np.ndarray, n: int) -> float:
    """Fraction of the n rows with a trade open, t_start <= row < t_end: the length of the union of
    those intervals over n. No trades: 0 (NaN without rows); a start < 0 (not placeable): NaN."""
    if len(t_start) == 0:
        return 0.0 if n else np.nan
    if n == 0 or t_start.min() < 0:
        return np.nan
    k = len(t_start)
    in_order = True  # a backtest's trades come by entry: no sort needed
    for t in range(1, k):
        if t_start[t] < t_start[t - 1]:
            in_order = False
            break
    order = np.arange(k) if in_order else np.argsort(t_start, kind="mergesort")
    busy = 0
    cover = 0  # rows before this one are counted
    for t in order:
        start = t_start[t]
        end = max(t_end[t], start)
        start = max(start, cover)
        if end > start:
            busy += end - start
            cover = end
    return busy / n


@njit(cache=True, nogil=True)  # the A/B computes its variants' metrics in parallel threads
def metrics_nb(
    equity: np.ndarray,  # (n,) account value per period, finite
    init_cash: float,
    ppy: float,  # periods per year (NaN: not known)
    t_start: np.ndarray,  # (k,) int64 per trade: first row it is open (exposure)
    t_end: np.ndarray,  # (k,) int64: first row it is no longer open (n while open)
    t_pnl: np.ndarray,  # (k,) float
    t_ret: np.ndarray,  # (k,) float: return_pct
    t_dur: np.ndarray,  # (k,) float: holding time in ns (NaN: unknown)
    t_closed: np.ndarray,  # (k,) bool
    work: np.ndarray,  # (3, >= n) float scratch, reusable across calls
) -> np.ndarray:
    """Every metric (``METRIC_KEYS`` order) of an equity curve and its trades; see
    :mod:`workbench.metrics` for the conventions.

    Sums are pairwise like NumPy's and the 5 % quantile is interpolated like ``np.quantile``, but
    fused: a vectorized returns pass, a drawdown pass with one division per new peak, a sampled
    bracket for the quantile that also keeps the tail's candidates (:func:`_select`), squared
    deviations summed straight from the returns, and the caller's scratch rows instead of a
    temporary per NumPy expression."""
    out = np.full(N_METRICS, np.nan)
    n = len(equity)
    final = equity[n - 1] if n else init_cash
    total_return = final / init_cash - 1.0
    r = work[0, :n]
    scratch = work[1, :n]
    annualized = np.nan
    mean = std = downside = max_dd = var = es = np.nan
    if n:
        annualized = max(final / init_cash, 0.0) ** (ppy / n) - 1.0
        # returns (a loop the compiler vectorizes; a wiped-out account stays at 0 %), then the
        # drawdown from the running peak (the initial balance counting as the first peak): within
        # one peak's reign the deepest point is its lowest equity ((peak - e) / peak is monotone in
        # e, rounding included), so one division per new peak, not per bar
        r[0] = equity[0] / init_cash - 1.0 if init_cash != 0.0 else 0.0
        cur, prev, rest = equity[1:], equity[: n - 1], r[1:]  # views, loop from 0: see _leaf
        for i in range(n - 1):
            p = prev[i]
            rest[i] = cur[i] / p - 1.0 if p != 0.0 else 0.0
        peak = init_cash
        trough = init_cash
        max_dd = 0.0
        bad = not init_cash > 0.0  # or a NaN equity: the drawdown is NaN then
        for i in range(n):
            e = equity[i]
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
        a, b, mc = _select(r, lo, scratch, work[2, :n])
        if hi == lo:
            b = a
        gamma = virtual - lo
        diff = b - a
        q = b - diff * (1.0 - gamma) if gamma >= 0.5 else a + diff * gamma
        # the tail r[r <= q] in order (the pairwise sum depends on it; branch-free), from the
        # candidates _select kept in scratch; squared deviations and losses are summed from r
        tail = scratch
        n_tail = 0
        for i in range(mc):
            v = tail[i]
            tail[n_tail] = v
            n_tail += v <= q
        var = 0.0 - q  # 0.0 - x: no -0.0
        es = 0.0 - np_sum(tail[:n_tail]) / n_tail
        if n >= 2:
            std = np.sqrt(np_sum(r, 1, mean) / (n - 1))
            downside = np.sqrt(np_sum(r, 2, 0.0) / n)
    sqrt_ppy = np.sqrt(ppy) if np.isfinite(ppy) else np.nan

    closed = np.nonzero(t_closed)[0]
    count = len(closed)
    pnl = t_pnl[closed]
    wins = pnl[pnl > 0.0]
    losses = pnl[pnl < 0.0]
    avg_win = np_sum(wins) / len(wins) if len(wins) else np.nan
    avg_loss = np_sum(losses) / len(losses) if len(losses) else np.nan
    span_days = n / ppy * 365.0 if n else np.nan

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
    dur = t_dur[closed]
    dur = dur[~np.isnan(dur)]  # closed trades of unknown holding time do not count
    if len(dur):
        out[18] = np_sum(dur) / len(dur) / 3.6e12
    out[19] = _exposure_nb(t_start, t_end, n)
    if count:
        rets = t_ret[closed]
        out[20] = rets.max()
        out[21] = rets.min()
    return out

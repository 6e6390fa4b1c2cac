"""Where the walk may jump to: the first bar at or after ``i`` where anything can happen (a signal, a
stop level reached, a position's side to act on), so runs of bars where nothing can act are skipped."""
from __future__ import annotations

import numpy as np
from numba import njit

from workbench.execution.codes import NONE
from workbench.execution.nb import stop_exit_nb, stop_levels_nb


@njit(cache=True)
def next_event_nb(
    i: int, pos: np.ndarray, buy_sig: np.ndarray, sell_sig: np.ndarray, allowed: np.ndarray, entries: bool
) -> int:
    """First bar >= ``i`` where a signal can act on positions ``pos``: an exit signal of a held
    symbol or, when ``entries``, an allowed entry signal of a flat one; ``len(buy_sig)`` if none.
    (The loops run from 0 over views: numba then drops its negative-index checks, twice as fast.)"""
    n, m = buy_sig.shape
    buys, sells, ok = buy_sig[i:], sell_sig[i:], allowed[i:]
    if m == 1:  # the common case, one tight scan
        if pos[0] > 0.0:
            col = sells[:, 0]
            for j in range(len(col)):
                if col[j]:
                    return i + j
        elif entries:
            col = buys[:, 0]
            for j in range(len(col)):
                if col[j] and ok[j]:
                    return i + j
        return n
    for j in range(len(ok)):
        for c in range(m):
            if pos[c] > 0.0:
                if sells[j, c]:
                    return i + j
            elif entries and buys[j, c] and ok[j]:
                return i + j
    return n


@njit(cache=True)
def next_event_sides_nb(
    i: int, pos: np.ndarray, buy_sig: np.ndarray, sell_sig: np.ndarray, short_sig: np.ndarray,
    cover_sig: np.ndarray, allowed: np.ndarray, entries: bool, direction: int,
) -> int:
    """:func:`next_event_nb` with short positions (rule 15): the first bar >= ``i`` where a held
    column's exit signal (or, with 'both', the other side's entry) or, when ``entries``, an allowed
    entry signal of a flat column can act; ``len(buy_sig)`` if none."""
    n, m = buy_sig.shape
    for j in range(i, n):
        for c in range(m):
            le, lx, se, sx = sides_at_nb(j, c, buy_sig, sell_sig, short_sig, cover_sig, direction)
            if pos[c] > 0.0:
                if lx or se:
                    return j
            elif pos[c] < 0.0:
                if sx or le:
                    return j
            elif entries and (le or se) and allowed[j]:
                return j
    return n


@njit(cache=True)
def sides_at_nb(
    i: int, c: int, buy_sig: np.ndarray, sell_sig: np.ndarray, short_sig: np.ndarray, cover_sig: np.ndarray,
    direction: int,
) -> tuple[bool, bool, bool, bool]:
    """(long entry, long exit, short entry, short exit) acting at bar ``i`` of column ``c`` under
    ``direction`` (rule 15): the sides the direction does not trade are False; short signals are the
    strategy's own (``short_sig``/``cover_sig``) or, when those are empty, the default rule (short entry
    = the exit signal, short exit = the entry signal). With 'both' an entry signal of one side also
    exits the other (a reversal), so it is returned as that side's exit too."""
    le = buy_sig[i, c] and (direction & 1) != 0
    lx = sell_sig[i, c]
    se = False
    sx = False
    if direction & 2:
        if short_sig.shape[0] > 0:
            se, sx = short_sig[i, c], cover_sig[i, c]
        else:
            se, sx = sell_sig[i, c], buy_sig[i, c]
    if direction == 3:
        lx = lx or se
        sx = sx or le
    return le, lx, se, sx


@njit(cache=True)
def next_stop_event_nb(
    i: int, pos: np.ndarray, open_: np.ndarray, high: np.ndarray, low: np.ndarray, buy_sig: np.ndarray,
    sell_sig: np.ndarray, entry_px: np.ndarray, peak: np.ndarray, sl: float, tp: float, trail: float,
) -> int:
    """First bar >= ``i`` where something can act when held longs watch only their stops: a held column's
    exit signal or stop level reached (:func:`stop_exit_nb`'s conditions), a flat column's entry signal;
    ``len(open_)`` if none. The held columns' trailing ``peak`` sees the bars before it (in place, as the
    walk's step 3 would)."""
    n, m = open_.shape
    if m == 1 and np.isnan(trail):  # one column, fixed levels: one tight scan
        _code, stop_lvl, tp_lvl = stop_levels_nb(entry_px[0], peak[0], sl, tp, trail)
        o, h, lo, s = open_[i:, 0], high[i:, 0], low[i:, 0], sell_sig[i:, 0]
        top = peak[0]
        for j in range(len(o)):
            if s[j] or lo[j] <= stop_lvl or o[j] <= stop_lvl or h[j] >= tp_lvl or o[j] >= tp_lvl:
                peak[0] = top
                return i + j
            if h[j] > top:
                top = h[j]
        peak[0] = top
        return n
    for r in range(i, n):
        for c in range(m):
            if pos[c] > 0.0:
                if sell_sig[r, c]:
                    return r
                code, _ref = stop_exit_nb(open_[r, c], high[r, c], low[r, c], entry_px[c], peak[c], sl, tp, trail)
                if code != NONE:
                    return r
            elif buy_sig[r, c]:
                return r
        for c in range(m):
            if pos[c] > 0.0 and high[r, c] > peak[c]:
                peak[c] = high[r, c]
    return n

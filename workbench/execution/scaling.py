"""Automated scaling (docs/execution-semantics.md rule 11): one state update, for the walk and the Trader.

The state is a small float array (:data:`STATE_SIZE`; JSON-able, so it is part of a session's
checkpoint). :func:`scaling_trade_nb` adds a closed trade's return to the window since the last
step, :func:`scaling_bar_nb` sees the equity after each bar and decides a step; the vectorized walk
(:func:`workbench.execution.simulate.fills_nb`) calls both, and so does :class:`Scaler`, the
wrapper the bar-by-bar Trader holds. The current scale multiplies an entry's target quantity.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from workbench.config import Scaling
from workbench.execution.codes import DAY_NS

# the state array's slots
SCALE, FROZEN, SINCE, TRADES, WINS, SUM_R, SUM_R2, PEAK, MAX_DD, STEPS = range(10)
STATE_SIZE = 10
# step codes and their names (the event's "step")
STEP_NONE, STEP_UP, STEP_DOWN, STEP_HALT = range(4)
SCALING_STEPS: tuple[str, ...] = ("", "up", "down", "halt")
#: a step's numbers, the columns of the walk's step rows after the bar: code, scale before and after,
#: the drawdown from the window's peak, and the window's trades, win rate, Sharpe and max drawdown
STEP_FIELDS: tuple[str, ...] = ("step", "previous", "scale", "drawdown", "trades", "win_rate", "sharpe",
                                "max_drawdown")


# the parameter array's slots (an array, not a tuple: the parallel sweep's kernels take arrays)
(P_ON, P_START, P_STEP, P_MULTIPLY, P_AFTER_TRADES, P_AFTER_NS, P_MIN_SHARPE, P_MAX_DRAWDOWN, P_MIN_WIN_RATE,
 P_DOWN_DRAWDOWN, P_HALT, P_FLOOR) = range(12)


def scaling_params(block: Scaling | None) -> np.ndarray:
    """A config's ``scaling`` block as the kernels take it: float64 slots P_* (flags 0/1; NaN or 0 = no
    condition); off (P_ON 0) when it is None."""
    nan = math.nan
    if block is None:
        return np.array([0.0, 1.0, 0.0, 0.0, 0.0, 0.0, nan, nan, nan, nan, 0.0, 1.0])

    def opt(v: float | None) -> float:
        return nan if v is None else float(v)

    return np.array([
        1.0, float(block.start), float(block.step), float(block.step_mode == "factor"), float(block.after_trades or 0),
        0.0 if block.after_days is None else float(round(block.after_days * DAY_NS)), opt(block.min_sharpe),
        opt(block.max_drawdown), opt(block.min_win_rate), opt(block.down_drawdown), float(block.on_drawdown == "halt"),
        float(block.start if block.floor is None else block.floor),
    ])


@njit(cache=True)
def scaling_init_nb(start: float) -> np.ndarray:
    """A new state: scale ``start``, not frozen, the window not begun (SINCE -1)."""
    st = np.zeros(STATE_SIZE)
    st[SCALE] = start
    st[SINCE] = -1.0
    return st


@njit(cache=True)
def scaling_trade_nb(st: np.ndarray, ret: float) -> None:
    """Add a closed trade's return (net proceeds / (entry cost + entry fees) - 1) to the window."""
    st[TRADES] += 1.0
    if ret > 0.0:
        st[WINS] += 1.0
    st[SUM_R] += ret
    st[SUM_R2] += ret * ret


@njit(cache=True)
def short_return_nb(entry_net: float, entry_cost: float, cover_cost: float) -> float:
    """A closed short's return for the window: (its entry's proceeds - entry fees - the cover's cost with
    its fees) / (entry notional + entry fees); a long's net proceeds / entry cost - 1, mirrored."""
    return (entry_net - cover_cost) / entry_cost


@njit(cache=True)
def scaling_stats_nb(st: np.ndarray) -> tuple[float, float]:
    """(win rate, Sharpe) of the window's closed trades: wins / trades, and mean / sample standard
    deviation of their returns (not annualized; ±inf when they are all equal and non-zero); NaN when
    there are too few trades (1 for the win rate, 2 for the Sharpe)."""
    n = st[TRADES]
    win = st[WINS] / n if n > 0.0 else np.nan
    if n < 2.0:
        return win, np.nan
    mean = st[SUM_R] / n
    var = max((st[SUM_R2] - n * mean * mean) / (n - 1.0), 0.0)
    sd = np.sqrt(var)
    if sd > 1e-12:
        return win, mean / sd
    return win, np.inf if mean > 0.0 else (-np.inf if mean < 0.0 else np.nan)


@njit(cache=True)
def scaling_bar_nb(st: np.ndarray, now: int, equity: float, p: np.ndarray) -> tuple[int, np.ndarray]:
    """The rule after a bar (time ``now``, ns) with ``equity``: update the window's peak and drawdown, then
    step (STEP_* code; the step's numbers in :data:`STEP_FIELDS` order, or (STEP_NONE, empty)).

    A drawdown from the window's peak >= ``down_drawdown`` steps down (÷ step or - step, not below
    ``floor``) or halts (scale 0: no new entries until an operator sets a scale). Otherwise, below
    1.0, once ``after_trades`` trades closed and ``after_days`` passed since the last step (those set),
    a step up (× step or + step, at most 1.0) needs the window's Sharpe >= ``min_sharpe``, its max
    drawdown <= ``max_drawdown`` and its win rate >= ``min_win_rate`` (those set). A step starts a new
    window. A frozen or halted scale does not move.
    """
    if st[SINCE] < 0.0:
        st[SINCE] = now
        st[PEAK] = equity
    if equity > st[PEAK]:
        st[PEAK] = equity
    dd = 1.0 - equity / st[PEAK] if st[PEAK] > 0.0 else 0.0
    if dd > st[MAX_DD]:
        st[MAX_DD] = dd
    old = st[SCALE]
    none = np.empty(0)
    if st[FROZEN] != 0.0 or old <= 0.0:
        return STEP_NONE, none
    code, new = STEP_NONE, old
    step, multiply = p[P_STEP], p[P_MULTIPLY] != 0.0
    if not np.isnan(p[P_DOWN_DRAWDOWN]) and dd >= p[P_DOWN_DRAWDOWN]:
        if p[P_HALT] != 0.0:
            code, new = STEP_HALT, 0.0
        else:
            new = max(old / step if multiply else old - step, p[P_FLOOR])
            if new < old:
                code = STEP_DOWN
    elif old < 1.0 and st[TRADES] >= p[P_AFTER_TRADES] and (
            p[P_AFTER_NS] <= 0.0 or now - st[SINCE] >= p[P_AFTER_NS]):
        win, sharpe = scaling_stats_nb(st)
        if ((np.isnan(p[P_MIN_SHARPE]) or sharpe >= p[P_MIN_SHARPE])
                and (np.isnan(p[P_MAX_DRAWDOWN]) or st[MAX_DD] <= p[P_MAX_DRAWDOWN])
                and (np.isnan(p[P_MIN_WIN_RATE]) or win >= p[P_MIN_WIN_RATE])):
            code, new = STEP_UP, min(old * step if multiply else old + step, 1.0)
    if code == STEP_NONE:
        return STEP_NONE, none
    win, sharpe = scaling_stats_nb(st)
    out = np.array([float(code), old, new, dd, st[TRADES], win, sharpe, st[MAX_DD]])
    st[SCALE] = new
    st[SINCE] = now
    st[TRADES] = st[WINS] = st[SUM_R] = st[SUM_R2] = st[MAX_DD] = 0.0
    st[PEAK] = equity
    st[STEPS] += 1.0
    return code, out


def step_record(row: np.ndarray | list[float]) -> dict[str, Any]:
    """A step's numbers (:data:`STEP_FIELDS`) as a dict for an event or a result: the step's name, and
    None where a number is NaN (too few trades)."""
    out: dict[str, Any] = {}
    for name, v in zip(STEP_FIELDS, row):
        x = float(v)
        out[name] = None if math.isnan(x) else x
    out["step"] = SCALING_STEPS[int(row[0])]
    out["trades"] = int(row[4])
    return out


def step_message(rec: Mapping[str, Any]) -> str:
    """One line for a step's event: what moved and the numbers behind it."""
    def num(key: str, fmt: str) -> str:
        v = rec[key]
        return "n/a" if v is None else format(v, fmt)

    return (f"scaling {rec['step']}: x{rec['previous']:g} -> x{rec['scale']:g} (drawdown {rec['drawdown']:.2%}, "
            f"{rec['trades']} trades, win rate {num('win_rate', '.0%')}, Sharpe {num('sharpe', '.2f')}, "
            f"max drawdown {num('max_drawdown', '.2%')})")


class Scaler:
    """The scaling rule of one session (the bar-by-bar Trader's): the kernels above over one state array,
    plus each held symbol's entry cost (a closed trade's return needs it)."""

    def __init__(self, block: Scaling):
        self.params = scaling_params(block)
        self.state = scaling_init_nb(self.params[P_START])
        self.cost: dict[str, float] = {}  # symbol -> entry notional + entry fees of the open position
        self.proceeds: dict[str, float] = {}  # symbol -> exits so far: a long's proceeds - fees, a short's cost + fees
        self.net: dict[str, float] = {}  # symbol -> a short's entry proceeds - entry fees
        self.short: set[str] = set()  # symbols whose open position is short

    @property
    def scale(self) -> float:
        return float(self.state[SCALE])

    @property
    def frozen(self) -> bool:
        return bool(self.state[FROZEN])

    def set(self, *, frozen: bool | None = None, scale: float | None = None) -> None:
        """An operator's change: freeze or unfreeze, and/or set the scale (in [0, 1]; 0 halts entries)."""
        if scale is not None:
            if not 0.0 <= scale <= 1.0:
                raise ValueError(f"scale must be in [0, 1] (1 = the configured size, 0 = no entries); got {scale}")
            self.state[SCALE] = float(scale)
        if frozen is not None:
            self.state[FROZEN] = 1.0 if frozen else 0.0

    def on_fill(self, symbol: str, buy: bool, notional: float, fee: float, left: float) -> None:
        """Book a fill of ``symbol`` (``notional`` = quantity × price; ``left`` the position after it, < 0
        short); when the position is closed (``left`` 0), its return enters the window."""
        if symbol not in self.cost and symbol not in self.proceeds:  # no open position known: this opens one
            if left == 0.0:
                return
            if left < 0.0:
                self.short.add(symbol)
        short = symbol in self.short
        if buy != short:  # a buy of a long, a sell of a short: its entry (partly filled ones add up)
            self.cost[symbol] = self.cost.get(symbol, 0.0) + (notional + fee)
            if short:
                self.net[symbol] = self.net.get(symbol, 0.0) + (notional - fee)
            return
        got = self.proceeds.get(symbol, 0.0) + (notional + fee if short else notional - fee)
        if left != 0.0:
            self.proceeds[symbol] = got
            return
        cost, net = self.cost.pop(symbol, 0.0), self.net.pop(symbol, 0.0)
        self.proceeds.pop(symbol, None)
        self.short.discard(symbol)
        if cost > 0.0:
            scaling_trade_nb(self.state, short_return_nb(net, cost, got) if short else got / cost - 1.0)

    def on_bar(self, now_ns: int, equity: float) -> dict[str, Any] | None:
        """The rule after a bar: the step taken (:func:`step_record`), or None."""
        code, row = scaling_bar_nb(self.state, now_ns, float(equity), self.params)
        return None if code == STEP_NONE else step_record(row)

    def snapshot(self) -> dict[str, Any]:
        return {"state": self.state.tolist(), "cost": dict(self.cost), "proceeds": dict(self.proceeds),
                "net": dict(self.net), "short": sorted(self.short)}

    def restore(self, snap: Mapping[str, Any]) -> None:
        state = np.asarray(snap["state"], dtype=float)
        if state.shape != (STATE_SIZE,):
            raise ValueError(f"scaling state has {state.size} numbers, expected {STATE_SIZE}")
        self.state = state
        self.cost = {str(k): float(v) for k, v in snap.get("cost", {}).items()}
        self.proceeds = {str(k): float(v) for k, v in snap.get("proceeds", {}).items()}
        self.net = {str(k): float(v) for k, v in snap.get("net", {}).items()}
        self.short = {str(k) for k in snap.get("short", [])}


def warm_up() -> None:
    """Load the kernels (cache or compile) before a session's first bar."""
    st = scaling_init_nb(0.5)
    scaling_trade_nb(st, 0.0)
    scaling_bar_nb(st, 0, 1.0, scaling_params(None))


def walk_steps(index: Any, rows: np.ndarray) -> list[dict[str, Any]]:
    """The walk's step rows (bar, :data:`STEP_FIELDS`) as records with the bar's ``time`` (``index``)."""
    return [{"time": index[int(r[0])], **step_record(r[1:])} for r in rows]

"""A config's numbers as the walk takes them: :class:`KernelParams` and :func:`kernel_params`."""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from workbench.config import SessionConfig
from workbench.execution.codes import DIRECTIONS, HALTED, REDUCING, SIZING_MODES
from workbench.execution.legs import column_scale
from workbench.execution.rules import day_bars
from workbench.execution.scaling import scaling_params


class KernelParams(NamedTuple):
    """A config's numbers as the walk takes them: unset limits are inf (caps), NaN (fractions) or 0 (counts)."""

    init_cash: float
    sizing_mode: int  # index in SIZING_MODES
    sizing_value: float
    max_position: float
    portfolio_limit: float
    concentration: float
    taker: float
    fixed_fee: float
    slip: float  # fixed slippage fraction
    impact: float  # volume-model impact (0 = fixed model)
    min_volume: float
    max_share: float
    skip_excess: bool
    sl: float
    tp: float
    trail: float
    max_hold_ns: int  # < 0 = none
    max_orders_per_minute: int  # 0 = none
    max_daily_loss: float
    max_drawdown: float
    max_rejections: int  # 0 = none
    rejection_window_ns: int
    breaker_action: int  # REDUCING or HALTED
    max_vol: float  # tail breakers (NaN = off): daily realized volatility, daily 95 % VaR
    max_var: float
    tail_window: int  # bars
    day_bars: float  # bars in a day (the tail measures' scale)
    max_gap: float  # gap breaker (NaN = off): a held symbol's drop from its previous close to the open
    scaling: np.ndarray  # automated scaling (rule 11): execution.scaling's P_* slots, P_ON 0 when off
    col_scale: np.ndarray  # (m,) each column's sizing multiplier: its leg's allocation (execution.legs), else 1
    direction: int = 1  # codes.DIRECTIONS: 1 long, 2 short, 3 both (rule 15)
    leverage: float = 1.0  # margin (rule 16): buying power = equity x leverage
    initial: float = math.nan  # initial margin fraction; NaN: margin off (no liquidation)
    maintenance: float = 0.0
    borrow: float = 0.0  # a short's annual borrow rate, accrued for the time since the previous bar
    funding_rate: float = 0.0  # constant funding rate per 8 h interval
    funding: np.ndarray = np.empty(0)  # (n,) the funding rate due at each bar (a series), or empty: the constant
    short_sig: np.ndarray = np.empty((0, 0), dtype=np.bool_)  # (n, m) a strategy's own short entries, or empty:
    cover_sig: np.ndarray = np.empty((0, 0), dtype=np.bool_)  # the default rule (short entry = exit signal ...)


def kernel_params(config: SessionConfig) -> KernelParams:
    """:class:`KernelParams` of ``config``."""
    risk, vol, slip, cb = config.risk, config.volume, config.slippage, config.risk.circuit_breaker
    nan, inf = math.nan, math.inf

    def opt(v: float | None, none: float) -> float:
        return none if v is None else float(v)

    mg = config.margin
    return KernelParams(
        float(config.initial_balance), SIZING_MODES.index(config.sizing.mode), float(config.sizing.value),
        opt(risk.max_position, inf), opt(risk.portfolio_limit, inf), opt(risk.concentration_limit, inf),
        float(config.commission.taker), float(config.commission.fixed),
        slip.bps / 1e4, float(slip.impact) if slip.model == "volume" else 0.0,
        float(vol.min_bar_volume), float(vol.max_share), vol.on_excess == "skip",
        opt(risk.stop_loss, nan), opt(risk.take_profit, nan), opt(risk.trailing_stop, nan),
        -1 if risk.max_holding_minutes is None else int(round(risk.max_holding_minutes * 60e9)),
        risk.max_orders_per_minute or 0,
        opt(cb.max_daily_loss, nan), opt(cb.max_drawdown, nan), cb.max_rejections or 0,
        int(round(cb.rejection_window_s * 1e9)), REDUCING if cb.action == "reducing" else HALTED,
        opt(cb.max_volatility, nan), opt(cb.max_var, nan), int(cb.tail_window),
        day_bars(config), opt(cb.max_gap, nan), col_scale=column_scale(config),
        scaling=scaling_params(config.scaling), direction=DIRECTIONS[config.direction],
        leverage=1.0 if mg is None else float(mg.leverage), initial=nan if mg is None else mg.initial_fraction,
        maintenance=0.0 if mg is None else float(mg.maintenance),
        borrow=0.0 if mg is None else float(mg.borrow_rate),
        funding_rate=0.0 if mg is None else float(mg.funding_rate),
    )

"""Session configuration: every parameter of the guide, validated with errors a person can act on.

:mod:`~workbench.config.base` holds symbol names, :class:`ConfigError` and the shared checks;
:mod:`~workbench.config.blocks` the blocks (sizing, costs, time rules, risk, data, live, legs, scaling,
margin); :mod:`~workbench.config.session` :class:`SessionConfig` and :func:`make_config`.

Fractions are fractions: ``stop_loss=0.05`` means 5 %. Money is in the quote currency
(USDT for ``BTC/USDT``). A config round-trips through JSON (``to_json``/``from_json``),
which is what templates store. How a config is executed (fills, sizing caps, stops,
time windows) is fixed in docs/execution-semantics.md, shared by backtests and sessions.
"""

from workbench.config.base import HHMM_RE, SYMBOL_RE, TIMEFRAMES, ConfigError, base_of, currency_of, is_perp, quote_of
from workbench.config.blocks import (
    CircuitBreaker,
    CommissionModel,
    DataConfig,
    Depth,
    EventWindow,
    Latency,
    Leg,
    LiveConfig,
    Margin,
    PositionSizing,
    RiskConfig,
    Scaling,
    SlippageModel,
    TimeRestrictions,
    VolumeRule,
    Window,
)
from workbench.config.session import SessionConfig, make_config

__all__ = [
    "HHMM_RE", "SYMBOL_RE", "TIMEFRAMES", "CircuitBreaker", "CommissionModel", "ConfigError", "DataConfig", "Depth",
    "EventWindow", "Latency", "Leg", "LiveConfig", "Margin", "PositionSizing", "RiskConfig", "Scaling",
    "SessionConfig", "SlippageModel", "TimeRestrictions", "VolumeRule", "Window", "base_of", "currency_of", "is_perp",
    "make_config", "quote_of",
]

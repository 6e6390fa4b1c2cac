"""Built-in risk profiles: config overlays (sizing and risk limits) applied on top of any config.

``apply_profile(config, "conservative")`` returns a new validated SessionConfig; everything the
profile does not name is kept. The profiles are defined here once; the history view and the
wizard offer them by name.
"""
from __future__ import annotations

import copy
from typing import Any

from workbench.config import SessionConfig, make_config

PROFILES: dict[str, dict[str, Any]] = {
    "conservative": {
        "sizing": {"mode": "percent_equity", "value": 0.05},
        "risk": {"stop_loss": 0.02, "take_profit": 0.04, "trailing_stop": 0.015, "concentration_limit": 0.2,
                 "circuit_breaker": {"max_daily_loss": 0.02, "max_drawdown": 0.05, "action": "halted"}},
    },
    "moderate": {
        "sizing": {"mode": "percent_equity", "value": 0.1},
        "risk": {"stop_loss": 0.04, "take_profit": 0.08, "trailing_stop": 0.03, "concentration_limit": 0.4,
                 "circuit_breaker": {"max_daily_loss": 0.05, "max_drawdown": 0.1, "action": "halted"}},
    },
    "aggressive": {
        "sizing": {"mode": "percent_equity", "value": 0.25},
        "risk": {"stop_loss": 0.08, "take_profit": 0.2, "trailing_stop": None, "concentration_limit": 0.8,
                 "circuit_breaker": {"max_daily_loss": 0.1, "max_drawdown": 0.2, "action": "reducing"}},
    },
}


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in overlay.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def apply_profile(config: SessionConfig, name: str) -> SessionConfig:
    """``config`` with the risk profile ``name`` laid over it (a new, validated config)."""
    if name not in PROFILES:
        raise ValueError(f"unknown risk profile {name!r}; use one of {', '.join(PROFILES)}")
    return make_config(**_merge(config.to_dict(), PROFILES[name]))

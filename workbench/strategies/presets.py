"""Built-in presets per strategy for the three market regimes (:mod:`workbench.metrics.regime`).

A preset is a set of strategy params plus risk (and, for volatile markets, sizing) settings that suit
a market condition: **trending** (slower signals, a trailing stop that lets winners run), **ranging**
(faster signals, a near take profit and a tight stop) and **high-volatility** (slower, stricter
signals, wider stops, smaller positions). :func:`with_preset` lays one over a config (the wizard's
"Preset" choice and ``--preset NAME`` on the command line); the params the preset leaves out keep
the config's values. They are starting points to backtest, not advice.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.config import SessionConfig

__all__ = ["PRESET_NAMES", "PRESETS", "apply_preset", "preset", "preset_names", "with_preset"]

PRESET_NAMES: tuple[str, ...] = ("trending", "ranging", "high-volatility")

_TRENDING_RISK = {"stop_loss": 0.02, "trailing_stop": 0.015, "take_profit": None}
_RANGING_RISK = {"stop_loss": 0.006, "take_profit": 0.008, "trailing_stop": None}
_VOLATILE_RISK = {"stop_loss": 0.04, "trailing_stop": 0.03, "take_profit": None}
_VOLATILE_SIZING = {"mode": "percent_equity", "value": 0.05}

#: strategy -> preset name -> config fields (``params``, ``risk``, optionally ``sizing``)
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "sma_cross": {
        "trending": {"params": {"fast": 20, "slow": 100}, "risk": _TRENDING_RISK},
        "ranging": {"params": {"fast": 5, "slow": 20}, "risk": _RANGING_RISK},
        "high-volatility": {"params": {"fast": 30, "slow": 150}, "risk": _VOLATILE_RISK, "sizing": _VOLATILE_SIZING},
    },
    "momentum": {
        "trending": {"params": {"window": 60, "entry_threshold": 0.004, "exit_threshold": 0.0, "trend_window": 240},
                     "risk": _TRENDING_RISK},
        "ranging": {"params": {"window": 20, "entry_threshold": 0.006, "exit_threshold": 0.002, "trend_window": 0},
                    "risk": _RANGING_RISK},
        "high-volatility": {"params": {"window": 120, "entry_threshold": 0.02, "exit_threshold": 0.0,
                                       "trend_window": 480}, "risk": _VOLATILE_RISK, "sizing": _VOLATILE_SIZING},
    },
    "mean_reversion": {
        "trending": {"params": {"window": 120, "entry_z": 3.0, "exit_z": 0.5}, "risk": _TRENDING_RISK},
        "ranging": {"params": {"window": 60, "entry_z": 2.0, "exit_z": 0.0}, "risk": _RANGING_RISK},
        "high-volatility": {"params": {"window": 240, "entry_z": 3.0, "exit_z": 0.0}, "risk": _VOLATILE_RISK,
                            "sizing": _VOLATILE_SIZING},
    },
    "pump_detection": {
        "trending": {"params": {"min_factors": 2, "breakout_window": 60}, "risk": _TRENDING_RISK},
        "ranging": {"params": {"volume_mult": 4.0, "min_factors": 3}, "risk": _RANGING_RISK},
        "high-volatility": {"params": {"volume_mult": 5.0, "min_return": 0.02, "min_factors": 3},
                            "risk": _VOLATILE_RISK, "sizing": _VOLATILE_SIZING},
    },
}


def preset_names(strategy: str) -> list[str]:
    """The presets ``strategy`` has (none for a strategy without built-in presets)."""
    return list(PRESETS.get(strategy, {}))


def preset(strategy: str, name: str) -> dict[str, Any]:
    """The config fields of ``strategy``'s preset ``name``; ValueError naming the choices otherwise."""
    options = PRESETS.get(strategy)
    if not options:
        raise ValueError(f"strategy {strategy!r} has no built-in presets; those with presets: {sorted(PRESETS)}")
    if name not in options:
        raise ValueError(f"unknown preset {name!r} for {strategy}; use one of {list(options)}")
    fields = options[name]
    return {k: dict(v) for k, v in fields.items()}


def apply_preset(fields: dict[str, Any], name: str) -> dict[str, Any]:
    """Config ``fields`` (a dict, e.g. a command line's) with their strategy's preset ``name`` laid over
    them: its params over theirs, its risk settings over theirs, its sizing if it has one."""
    from workbench.config import SessionConfig

    strategy = fields.get("strategy") or SessionConfig.model_fields["strategy"].default
    chosen = preset(strategy, name)
    out = {**fields, "params": {**fields.get("params", {}), **chosen["params"]},
           "risk": {**fields.get("risk", {}), **chosen["risk"]}}
    if "sizing" in chosen:
        out["sizing"] = chosen["sizing"]
    return out


def with_preset(config: SessionConfig, name: str) -> SessionConfig:
    """``config`` with its strategy's preset ``name`` laid over it (:func:`apply_preset`), validated."""
    from workbench.config import make_config

    return make_config(**apply_preset(config.to_dict(), name))

"""Model-based parameter search with Optuna: a TPE sampler proposes the next params from the trials so
far, and a median pruner stops a trial that is already worse than most at an early stage.

Each trial is a sweep combination (:mod:`workbench.backtest.sweep`'s kernel path, the same metrics as
``run_backtest``) evaluated over ``stages`` growing prefixes of the bars (the first third, two thirds,
all of them by default); the metric of each prefix is the trial's intermediate value, so a trial
pruned after the first third costs a third of a backtest. Combinations the strategy rejects (e.g.
``fast >= slow``) are pruned. The outcome is a :class:`Suggestion` an analyst reads and accepts (its
:meth:`~Suggestion.config`): nothing is applied to any config or session on its own.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from workbench.backtest.runner import bars_for
from workbench.backtest.sweep import LOWER_IS_BETTER, Bars, _Prepared, _slice
from workbench.backtest.sweep_kernel import METRIC_KEYS
from workbench.config import SessionConfig

__all__ = ["Suggestion", "optimize"]

#: a search space entry: (low, high) for a number range, or a list of values to choose from
Space = Mapping[str, tuple[float, float] | Sequence[Any]]


@dataclass
class Suggestion:
    """The best params found (``params``, the strategy's full set) and their ``value`` of ``metric``;
    ``trials`` has one row per trial (its params, value, state: COMPLETE or PRUNED)."""

    base: SessionConfig
    metric: str
    params: dict[str, Any]
    value: float
    trials: pd.DataFrame

    def config(self) -> SessionConfig:
        """The base config with the suggested params: call it to accept the suggestion."""
        return self.base.replace(params=dict(self.params))

    def __repr__(self) -> str:
        pruned = int((self.trials["state"] == "PRUNED").sum()) if len(self.trials) else 0
        return (f"Suggestion({self.metric}={self.value:.4g} with {self.params}; {len(self.trials)} trials, "
                f"{pruned} pruned; accept with .config())")


def _space(cls: Any, space: Space | None) -> dict[str, Any]:
    """Param name -> (low, high) or a list of choices: ``space``, else every declared ranged param."""
    declared = {p.name: p for p in cls.params}
    if space is None:
        out: dict[str, Any] = {}
        for name, p in declared.items():
            if p.choices or p.type is bool:
                out[name] = list(p.choices or (False, True))
            elif p.low is not None and p.high is not None:
                out[name] = (p.low, p.high)
        return out
    unknown = [k for k in space if k not in declared]
    if unknown:
        raise ValueError(f"strategy {cls.name!r} has no param {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(declared)}")
    return dict(space)


def _suggest(trial: Any, name: str, spec: Any, kind: type) -> Any:
    if isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(v, int | float) for v in spec):
        low, high = spec
        if kind is int:
            return trial.suggest_int(name, int(low), int(high))
        return trial.suggest_float(name, float(low), float(high))
    if isinstance(spec, Sequence) and not isinstance(spec, str) and len(spec):
        return trial.suggest_categorical(name, list(spec))
    raise ValueError(f"search space for {name!r} must be (low, high) or a non-empty list of values (got {spec!r})")


def optimize(config: SessionConfig, *, n_trials: int = 50, metric: str = "sharpe_ratio", space: Space | None = None,
             bars: Bars = None, stages: int = 3, seed: int = 0, prune: bool = True) -> Suggestion:
    """Search ``config``'s strategy params for the best ``metric`` (lower is better for drawdown-like
    metrics) with ``n_trials`` Optuna trials (TPE, reproducible for a ``seed``; median pruning over
    ``stages`` prefixes of the bars unless ``prune`` is False). ``space``: param -> (low, high) or a
    list of values; default every declared range. See the module docstring."""
    import optuna

    if not isinstance(config, SessionConfig):
        raise TypeError(f"optimize takes a SessionConfig (see workbench.make_config), got {type(config).__name__}")
    if metric not in METRIC_KEYS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRIC_KEYS)}")
    if n_trials < 1 or stages < 1:
        raise ValueError(f"n_trials and stages must be >= 1 (got {n_trials}, {stages})")
    from workbench.strategies import registry

    cls = registry.get(config.strategy)
    search = _space(cls, space)
    if not search:
        raise ValueError(f"nothing to search: strategy {cls.name!r} has no ranged params; give space=")
    kinds = {p.name: p.type for p in cls.params}
    frames = bars_for(config, bars)
    index = pd.DatetimeIndex(sorted(set().union(*(f.index for f in frames.values()))))
    cuts = [index[max(int(len(index) * (k + 1) / stages) - 1, 0)] for k in range(stages)]
    preps = [_Prepared(config, _slice(frames, index[0], cut)) for cut in cuts]
    col = METRIC_KEYS.index(metric)
    minimize = metric in LOWER_IS_BETTER

    def objective(trial: Any) -> float:
        combo = {name: _suggest(trial, name, spec, kinds[name]) for name, spec in search.items()}
        try:
            params = cls.validate({**config.params, **combo})
        except (ValueError, TypeError) as e:
            trial.set_user_attr("invalid", str(e))
            raise optuna.TrialPruned() from None
        value = math.nan
        for step, prep in enumerate(preps):
            value = float(prep.run([cls(**params)], 1, False)[0, col])
            if not math.isfinite(value):
                value = math.inf if minimize else -math.inf
            if step < len(preps) - 1:
                trial.report(value, step)
                if prune and trial.should_prune():
                    raise optuna.TrialPruned()
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize" if minimize else "maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0) if prune
        else optuna.pruners.NopPruner(),
    )
    study.optimize(objective, n_trials=n_trials)
    rows = [{**t.params, "value": t.value, "state": t.state.name} for t in study.trials]
    trials = pd.DataFrame(rows)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not done:
        raise ValueError(f"no trial completed: every combination tried was invalid or pruned ({len(rows)} trials)")
    best = study.best_trial
    assert best.value is not None  # a completed trial has its value
    return Suggestion(config, metric, cls.validate({**config.params, **best.params}), float(best.value), trials)

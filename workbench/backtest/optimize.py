"""Model-based parameter search with Optuna: a TPE sampler proposes the next params from the trials so
far, and a median pruner stops a trial that is already worse than most at an early stage.

Each trial is a sweep combination (:mod:`workbench.backtest.sweep`'s kernel path, the same metrics as
``run_backtest``) evaluated over ``stages`` growing prefixes of the bars (the first third, two thirds,
all of them by default); the metric of each prefix is the trial's intermediate value, so a trial
pruned after the first third costs a third of a backtest. Combinations the strategy rejects (e.g.
``fast >= slow``) are pruned. With ``cluster=`` (the sweep's: a Dask scheduler address or Client) the
trials run on the Dask cluster, ``batch`` at a time (default: the workers' threads), each stage a task,
pruned between stages as locally; with ``batch=1`` the trials are the local search's. The outcome
is a :class:`Suggestion` an analyst reads and accepts (its :meth:`~Suggestion.config`): nothing is
applied to any config or session on its own.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from workbench.backtest.runner import bars_for
from workbench.backtest.sweep import LOWER_IS_BETTER, Bars, _dask_client, _Prepared, _slice
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


def _value(prep: _Prepared, cls: Any, params: dict[str, Any], col: int, minimize: bool) -> float:
    """The metric (column ``col``) of one params set on ``prep``'s bars; not finite -> the worst value."""
    value = float(prep.run([cls(**params)], 1, False)[0, col])
    return value if math.isfinite(value) else (math.inf if minimize else -math.inf)


def optimize(config: SessionConfig, *, n_trials: int = 50, metric: str = "sharpe_ratio", space: Space | None = None,
             bars: Bars = None, stages: int = 3, seed: int = 0, prune: bool = True, cluster: Any = None,
             batch: int | None = None) -> Suggestion:
    """Search ``config``'s strategy params for the best ``metric`` (lower is better for drawdown-like
    metrics) with ``n_trials`` Optuna trials (TPE, reproducible for a ``seed``; median pruning over
    ``stages`` prefixes of the bars unless ``prune`` is False). ``space``: param -> (low, high) or a
    list of values; default every declared range. ``cluster``/``batch``: run the trials on a Dask
    cluster, ``batch`` at a time. See the module docstring."""
    import optuna

    if not isinstance(config, SessionConfig):
        raise TypeError(f"optimize takes a SessionConfig (see workbench.make_config), got {type(config).__name__}")
    if metric not in METRIC_KEYS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRIC_KEYS)}")
    if n_trials < 1 or stages < 1:
        raise ValueError(f"n_trials and stages must be >= 1 (got {n_trials}, {stages})")
    if batch is not None and (cluster is None or batch < 1):
        raise ValueError(f"batch is the number of trials run at once on a Dask cluster: give cluster= and a batch "
                         f">= 1 (got batch={batch}, cluster={cluster!r})")
    from workbench.strategies import registry

    cls = registry.get(config.strategy)
    search = _space(cls, space)
    if not search:
        raise ValueError(f"nothing to search: strategy {cls.name!r} has no ranged params; give space=")
    kinds = {p.name: p.type for p in cls.params}
    frames = bars_for(config, bars)
    index = pd.DatetimeIndex(sorted(set().union(*(f.index for f in frames.values()))))
    cuts = [index[max(int(len(index) * (k + 1) / stages) - 1, 0)] for k in range(stages)]
    col = METRIC_KEYS.index(metric)
    minimize = metric in LOWER_IS_BETTER

    def propose(trial: Any) -> dict[str, Any] | None:
        """The trial's params, or None (recorded on the trial) if the strategy rejects them."""
        combo = {name: _suggest(trial, name, spec, kinds[name]) for name, spec in search.items()}
        try:
            return dict(cls.validate({**config.params, **combo}))
        except (ValueError, TypeError) as e:
            trial.set_user_attr("invalid", str(e))
            return None

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize" if minimize else "maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=cluster is not None),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0) if prune
        else optuna.pruners.NopPruner(),
    )
    if cluster is not None:
        _search_on_dask(cluster, study, n_trials, batch, propose, (config, frames, index[0], cuts, col, minimize),
                        prune)
    else:
        preps = [_Prepared(config, _slice(frames, index[0], cut)) for cut in cuts]

        def objective(trial: Any) -> float:
            params = propose(trial)
            if params is None:
                raise optuna.TrialPruned()
            value = math.nan
            for step, prep in enumerate(preps):
                value = _value(prep, cls, params, col, minimize)
                if step < len(preps) - 1:
                    trial.report(value, step)
                    if prune and trial.should_prune():
                        raise optuna.TrialPruned()
            return value

        study.optimize(objective, n_trials=n_trials)
    rows = [{**t.params, "value": t.value, "state": t.state.name} for t in study.trials]
    trials = pd.DataFrame(rows)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not done:
        raise ValueError(f"no trial completed: every combination tried was invalid or pruned ({len(rows)} trials)")
    best = study.best_trial
    assert best.value is not None  # a completed trial has its value
    return Suggestion(config, metric, cls.validate({**config.params, **best.params}), float(best.value), trials)


# --- Dask ------------------------------------------------------------------------------------

_WORKER_STAGES: dict[int, tuple[Any, _Prepared]] = {}  # stage -> (scattered data, its kernel inputs)


def _dask_stage(data: tuple[Any, ...], stage: int, params: dict[str, Any]) -> float:
    """One trial's metric on the bars of ``stage`` (a prefix), on a Dask worker; each stage's kernel
    inputs are built once per worker and scattered dataset."""
    config, frames, first, cuts, col, minimize = data
    cached = _WORKER_STAGES.get(stage)
    if cached is None or cached[0] is not data:
        if any(d is not data for d, _ in _WORKER_STAGES.values()):
            _WORKER_STAGES.clear()  # a new search
        cached = _WORKER_STAGES[stage] = (data, _Prepared(config, _slice(frames, first, cuts[stage])))
    from workbench.strategies import registry

    return _value(cached[1], registry.get(config.strategy), params, col, minimize)


def _search_on_dask(cluster: Any, study: Any, n_trials: int, batch: int | None, propose: Any,
                    data: tuple[Any, ...], prune: bool) -> None:
    """Run ``n_trials`` trials of ``study`` on the Dask cluster, ``batch`` at once (ask and tell): each
    stage of a trial is a task; a trial the pruner stops after a stage runs no further stage."""
    import optuna
    from distributed import as_completed

    stages = len(data[3])
    client, owned = _dask_client(cluster)
    try:
        remote = client.scatter(data, broadcast=True)
        width = batch or max(1, sum(client.nthreads().values()))
        running: dict[Any, tuple[Any, int, dict[str, Any]]] = {}  # future key -> (trial, stage, params)
        done = as_completed()
        asked = 0

        def submit(trial: Any, step: int, params: dict[str, Any]) -> None:
            fut = client.submit(_dask_stage, remote, step, params, pure=False)
            running[fut.key] = (trial, step, params)
            done.add(fut)

        def launch() -> None:
            nonlocal asked
            while asked < n_trials and len(running) < width:
                trial, asked = study.ask(), asked + 1
                params = propose(trial)
                if params is None:
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                else:
                    submit(trial, 0, params)

        launch()
        for fut in done:
            trial, step, params = running.pop(fut.key)
            value = float(fut.result())
            if step == stages - 1:
                study.tell(trial, value)
            else:
                trial.report(value, step)
                if prune and trial.should_prune():
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                else:
                    submit(trial, step + 1, params)
            launch()
    finally:
        if owned:
            client.close()

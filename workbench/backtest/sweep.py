"""Parameter sweeps: grid or random search, walk-forward splits and one-at-a-time sensitivity.

Each combination runs the same path as :func:`run_backtest` without its vectorbt Portfolio: the
runner's :func:`~workbench.backtest.runner.kernel_inputs` (bars arrays, ``strategy.signals`` per
symbol with its shift and conflict rule) and :func:`~workbench.execution.simulate.kernel_params`, the
same cached walk (:func:`workbench.execution.simulate.fills_nb`, run_backtest's too),
the same booking (:func:`workbench.backtest.booking.book_nb`, equity curve only), then
:mod:`sweep_kernel` computes ``compute_metrics``' numbers (equal to ``run_backtest(...).metrics``
to ~1e-12). Combinations run in chunks: per chunk only the (chunk, n, symbols) signal arrays
exist (two buffers, reused), and only metric rows are kept, so memory stays flat whatever the grid
size. Inside a chunk combinations run in parallel numba threads; the next chunk's signals are
computed meanwhile.

``cluster=`` (a dask.distributed scheduler address or Client) sends the chunks to a Dask cluster
instead: the bars are scattered to every worker once, each task is one chunk (signals, kernel,
metrics, by the same :class:`_Prepared` path) and returns only its metric rows.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import numba
import numpy as np
import pandas as pd

from workbench.backtest.runner import bars_for, kernel_inputs, union_index
from workbench.backtest.sweep_kernel import METRIC_KEYS, sweep_chunk_nb
from workbench.config import SessionConfig
from workbench.data.books import depth_config
from workbench.execution import entry_allowed, flatten_at
from workbench.execution.latency import delay_bars, delay_signals
from workbench.execution.simulate import kernel_params
from workbench.metrics import METRIC_LABELS, infer_periods_per_year

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from distributed import Client

    from workbench.strategies.base import Strategy

__all__ = ["SweepResult", "sweep", "walk_forward", "sensitivity"]

DEFAULT_METRICS: tuple[str, ...] = (
    "total_return", "sharpe_ratio", "sortino_ratio", "max_drawdown", "calmar_ratio",
    "win_rate", "profit_factor", "trade_count", "exposure",
)
LOWER_IS_BETTER: frozenset[str] = frozenset(
    {"max_drawdown", "volatility", "value_at_risk", "expected_shortfall", "avg_trade_duration_hours"}
)
Bars: TypeAlias = Mapping[str, pd.DataFrame] | pd.DataFrame | None
Signals: TypeAlias = tuple[np.ndarray, ...]  # (k, n, m) buys, sells[, shorts, covers]


@dataclass
class SweepResult:
    """A sweep's outcome: ``frame`` has one row per valid combination (all declared params, then
    metrics); ``params`` are the swept names; ``invalid`` lists skipped (params, reason)."""

    config: SessionConfig
    frame: pd.DataFrame
    params: list[str]
    metrics: list[str]
    invalid: list[tuple[dict[str, Any], str]] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """How many combinations the strategy rejected."""
        return len(self.invalid)

    def best(self, metric: str = "sharpe_ratio", *, minimize: bool | None = None) -> pd.Series:
        """The best row by ``metric`` (lowest for drawdown-like metrics unless ``minimize`` says)."""
        self._check_metric(metric)
        col = self.frame[metric]
        if col.notna().sum() == 0:
            raise ValueError(f"metric {metric!r} is NaN for every combination; pick another metric")
        low = metric in LOWER_IS_BETTER if minimize is None else minimize
        return self.frame.loc[col.idxmin() if low else col.idxmax()]

    def best_params(self, metric: str = "sharpe_ratio", *, minimize: bool | None = None) -> dict[str, Any]:
        """The strategy params (all declared ones) of :meth:`best`, ready for ``config.replace(params=...)``."""
        label = self.best(metric, minimize=minimize).name
        return {p: _py(self.frame.at[label, p]) for p in self._declared()}  # per column: ints stay ints

    def heatmap(self, x: str, y: str, metric: str = "sharpe_ratio") -> go.Figure:
        """``metric`` over two params (other params aggregated by max)."""
        import plotly.graph_objects as go

        self._check_metric(metric)
        for p in (x, y):
            if p not in self.frame.columns or p in self.metrics:
                raise ValueError(f"{p!r} is not a param of this sweep; params: {', '.join(self.params)}")
        table = self.frame.pivot_table(index=y, columns=x, values=metric, aggfunc="max")
        fig = go.Figure(
            go.Heatmap(z=table.to_numpy(), x=[str(v) for v in table.columns], y=[str(v) for v in table.index],
                       colorscale="RdYlGn", colorbar={"title": metric})
        )
        fig.update_layout(title=f"{METRIC_LABELS.get(metric, (metric,))[0]} by {x} and {y} (max over others)",
                          xaxis_title=x, yaxis_title=y)
        return fig

    def parallel_coordinates(self, metric: str = "sharpe_ratio") -> go.Figure:
        """One line per combination across the swept params, coloured by ``metric``."""
        import plotly.graph_objects as go

        self._check_metric(metric)
        dims = [{"label": p, "values": self.frame[p].astype(float)} for p in self.params]
        values = self.frame[metric].astype(float).replace([np.inf, -np.inf], np.nan)
        dims.append({"label": metric, "values": values})
        line = {"color": values, "colorscale": "Viridis", "showscale": True}
        fig = go.Figure(go.Parcoords(line=line, dimensions=dims))
        fig.update_layout(title=f"{len(self.frame)} combinations by {metric}")
        return fig

    def _declared(self) -> list[str]:
        return [c for c in self.frame.columns if c not in self.metrics]

    def _check_metric(self, metric: str) -> None:
        if metric not in self.metrics:
            raise ValueError(f"metric {metric!r} is not in this sweep; metrics: {', '.join(self.metrics)}")

    def __repr__(self) -> str:
        return f"SweepResult({self.config.strategy}, {len(self.frame)} combinations, {self.skipped} skipped)"


def sweep(
    config: SessionConfig,
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    n_random: int | None = None,
    seed: int = 0,
    symbols: Sequence[str] | None = None,
    bars: Bars = None,
    chunk_size: int = 64,
    progress: bool = True,
    metrics: Sequence[str] = DEFAULT_METRICS,
    cluster: str | Client | None = None,
) -> SweepResult:
    """Backtest ``config`` once per parameter combination and tabulate ``metrics``.

    ``grid`` maps param names to values (cartesian product; params not named keep the config's
    values). ``n_random`` samples that many combinations: from the grid's product if given, else
    uniformly from each declared param's range, reproducibly for a ``seed``. Combinations the
    strategy rejects are skipped and listed in ``invalid``. ``symbols`` overrides the config's
    (shared cash, as in run_backtest); ``bars`` as for run_backtest. ``cluster``: None runs on
    this machine; a Dask scheduler address (``"tcp://host:8786"``) or a ``distributed.Client``
    spreads the chunks over that cluster (same rows; the strategy must be importable there).
    """
    if not isinstance(config, SessionConfig):
        raise TypeError(f"sweep takes a SessionConfig (see workbench.make_config), got {type(config).__name__}")
    if config.legs:
        raise ValueError("sweep varies one strategy's params; this config has legs: sweep one leg as its own config "
                         "(its strategy, params and symbols, no legs), or compare allocations with suggest_allocations")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 (got {chunk_size})")
    unknown = [m for m in metrics if m not in METRIC_KEYS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; known: {', '.join(METRIC_KEYS)}")
    if symbols is not None:
        config = config.replace(symbols=list(symbols))
    from workbench.strategies import registry

    cls = registry.get(config.strategy)
    names, candidates = _candidates(cls, dict(config.params), grid, n_random, seed)
    valid: list[dict[str, Any]] = []
    invalid: list[tuple[dict[str, Any], str]] = []
    for combo in candidates:
        try:
            valid.append(cls.validate({**config.params, **combo}))
        except (ValueError, TypeError) as e:
            invalid.append((combo, str(e)))
    declared = [p.name for p in cls.params]
    rows = np.empty((0, len(METRIC_KEYS)))
    if valid and cluster is not None:
        rows = _run_on_dask(cluster, config, bars_for(config, bars), valid, chunk_size, progress)
    elif valid:
        prep = _Prepared(config, bars_for(config, bars))
        rows = prep.run([cls(**p) for p in valid], chunk_size, progress)
    frame = pd.DataFrame(valid, columns=declared)
    cols = [METRIC_KEYS.index(m) for m in metrics]
    for m, j in zip(metrics, cols):
        frame[m] = rows[:, j]
    if "trade_count" in frame and len(frame):
        frame["trade_count"] = frame["trade_count"].astype(int)
    return SweepResult(config=config, frame=frame, params=names, metrics=list(metrics), invalid=invalid)


def walk_forward(
    config: SessionConfig,
    grid: Mapping[str, Sequence[Any]],
    *,
    splits: int = 4,
    train_frac: float = 0.7,
    metric: str = "sharpe_ratio",
    bars: Bars = None,
    chunk_size: int = 64,
    progress: bool = False,
    cluster: str | Client | None = None,
) -> pd.DataFrame:
    """Rolling in-sample/out-of-sample check: the bars are cut into ``splits`` consecutive windows;
    in each, the grid's best combination by ``metric`` on the first ``train_frac`` is rerun on
    the rest. One row per split: window bounds, chosen params, ``in_sample``, ``out_of_sample``
    and ``gap`` (in - out; large gaps mean overfitting). Indicators warm up again in each part.
    ``cluster`` as for :func:`sweep` (the in-sample grids run there)."""
    if splits < 1:
        raise ValueError(f"splits must be >= 1 (got {splits})")
    if not 0 < train_frac < 1:
        raise ValueError(f"train_frac must be between 0 and 1, e.g. 0.7 (got {train_frac})")
    frames = bars_for(config, bars)
    index = union_index(frames.values())
    width = len(index) // splits
    if width < 4:
        raise ValueError(f"{len(index)} bars are too few for {splits} splits")
    out = []
    for s in range(splits):
        seg = index[s * width : (s + 1) * width]
        cut = max(1, min(int(width * train_frac), width - 1))
        train = (seg[0], seg[cut - 1])
        test = (seg[cut], seg[-1])
        ins = sweep(config, grid, bars=_slice(frames, *train), chunk_size=chunk_size, progress=progress,
                    metrics=(metric,), cluster=cluster)
        if ins.frame.empty:
            raise ValueError(f"no valid combination in the grid ({ins.skipped} rejected): {ins.invalid[0][1]}")
        params = ins.best_params(metric)
        oos = sweep(config, {k: [v] for k, v in params.items()}, bars=_slice(frames, *test), progress=False,
                    metrics=(metric,))
        in_v, out_v = float(ins.best(metric)[metric]), float(oos.frame[metric].iloc[0])
        out.append({"split": s, "train_start": train[0], "train_end": train[1], "test_start": test[0],
                    "test_end": test[1], **{p: params[p] for p in ins.params},
                    "in_sample": in_v, "out_of_sample": out_v, "gap": in_v - out_v})
    return pd.DataFrame(out)


def sensitivity(
    config: SessionConfig,
    param: str,
    values: Sequence[Any],
    *,
    bars: Bars = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    progress: bool = False,
    cluster: str | Client | None = None,
) -> pd.DataFrame:
    """One-at-a-time sensitivity: ``metrics`` as ``param`` takes each of ``values``, every other
    param at the config's value; indexed by ``param`` (rejected values are left out). ``cluster``
    as for :func:`sweep`."""
    res = sweep(config, {param: list(values)}, bars=bars, metrics=metrics, progress=progress, cluster=cluster)
    return res.frame.set_index(param)[list(metrics)]


# ---------------------------------------------------------------------------------------------


def _candidates(
    cls: type[Strategy], base: dict[str, Any], grid: Mapping[str, Sequence[Any]] | None, n_random: int | None, seed: int
) -> tuple[list[str], list[dict[str, Any]]]:
    """(swept param names, raw combinations) for a grid, a random sample of it, or random draws."""
    declared = {p.name: p for p in cls.params}
    if n_random is not None and n_random < 1:
        raise ValueError(f"n_random must be >= 1 (got {n_random})")
    rng = np.random.default_rng(seed)
    if grid is None:
        if n_random is None:
            raise ValueError("give a grid (param -> list of values) or n_random for a random search")
        names = [n for n, p in declared.items()
                 if p.choices or p.type is bool or (p.low is not None and p.high is not None)]
        combos = [{n: _draw(declared[n], rng) for n in names} for _ in range(n_random)]
        return names, combos
    unknown = [k for k in grid if k not in declared]
    if unknown:
        raise ValueError(
            f"strategy {cls.name!r} has no param {', '.join(map(repr, unknown))}; known: {', '.join(declared)}"
        )
    names = list(grid)
    values = [list(grid[k]) if not isinstance(grid[k], (str, bytes)) and isinstance(grid[k], Sequence | np.ndarray)
              else [grid[k]] for k in names]
    total = math.prod(len(v) for v in values)
    if n_random is None or n_random >= total:
        return names, [dict(zip(names, c)) for c in itertools.product(*values)]
    picks = np.sort(rng.choice(total, size=n_random, replace=False))
    shape = [len(v) for v in values]
    combos = []
    for flat in picks:
        idx = np.unravel_index(int(flat), shape)
        combos.append({k: values[j][int(idx[j])] for j, k in enumerate(names)})
    return names, combos


def _draw(p: Any, rng: np.random.Generator) -> Any:
    if p.choices:
        return p.choices[int(rng.integers(len(p.choices)))]
    if p.type is bool:
        return bool(rng.integers(2))
    if p.type is int:
        return int(rng.integers(int(p.low), int(p.high) + 1))
    return float(rng.uniform(p.low, p.high))


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _slice(frames: dict[str, pd.DataFrame], start: pd.Timestamp, end: pd.Timestamp) -> dict[str, pd.DataFrame]:
    return {s: df.loc[start:end] for s, df in frames.items()}


class _Prepared:
    """Kernel inputs shared by every combination: :func:`runner.kernel_inputs`, as run_backtest's."""

    def __init__(self, config: SessionConfig, frames: dict[str, pd.DataFrame]):
        self.inputs = inputs = kernel_inputs(config, frames)
        self.close_filled = inputs.close_filled()
        self.times = inputs.times
        self.allowed = entry_allowed(inputs.index, config.time)
        self.flatten = flatten_at(inputs.index, config.time)
        self.ppy = infer_periods_per_year(inputs.index)
        if not math.isfinite(self.ppy):
            self.ppy = float("nan")
        self.params = kernel_params(depth_config(config) if config.depth is not None else config)  # rule 14
        self.delay = delay_bars(config.latency, config.data.timeframe)  # order latency (rule 13)
        self.sided = config.direction != "long"  # a strategy's own short signals are walked (rule 15)

    def signals(self, strategies: list[Any], out: Signals | None = None) -> Signals:
        """(buys, sells, shorts, covers) (k, n, m) of ``strategies``, written into the first k rows of
        ``out``'s arrays when given (reused buffers: no fresh pages to fault in per chunk). shorts and
        covers are the strategies' own short signals, as run_backtest walks them, or (0, n, m) empty: the
        default short rule."""
        k, n, m = len(strategies), len(self.inputs.index), len(self.inputs.symbols)
        sides = 4 if self.sided and strategies and strategies[0].own_shorts else 2
        if out is None or len(out) < sides:
            out = tuple(np.zeros((k, n, m), dtype=bool) for _ in range(sides))
        arrays = [a[:k] for a in out[:sides]]
        if not all(isinstance(r, slice) for r in self.inputs.rows):  # gaps: rows left untouched
            for a in arrays:
                a[...] = False
        has_bar = ~np.isnan(self.inputs.arr["open"])
        for j, strat in enumerate(strategies):
            self.inputs.signals(strat, arrays[0][j], arrays[1][j])
            if sides == 4:
                arrays[2][j], arrays[3][j] = self.inputs.short_signals(strat)
            for at in range(0, sides, 2) if self.delay else ():  # as run_backtest's walk
                arrays[at][j], arrays[at + 1][j] = delay_signals(arrays[at][j], arrays[at + 1][j], has_bar, self.delay)
        if sides == 2:
            arrays += [np.zeros((0, n, m), dtype=bool)] * 2
        return arrays[0], arrays[1], arrays[2], arrays[3]

    def simulate(self, buys: np.ndarray, sells: np.ndarray, shorts: np.ndarray, covers: np.ndarray) -> np.ndarray:
        a = self.inputs.arr
        return sweep_chunk_nb(self.times, a["open"], a["high"], a["low"], a["close"], a["volume"], self.close_filled,
                              buys, sells, shorts, covers, self.allowed, self.flatten, self.params, self.ppy,
                              numba.get_num_threads())

    def run(self, strategies: list[Any], chunk_size: int, progress: bool) -> np.ndarray:
        """Metric rows of every strategy instance; the next chunk's signals overlap this chunk's kernel."""
        chunks = [strategies[i : i + chunk_size] for i in range(0, len(strategies), chunk_size)]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(strategies), desc="sweep", unit="combo")
        out = []
        # two signal buffers: one is filled while the kernel reads the other
        n, m = len(self.inputs.index), len(self.inputs.symbols)
        size = min(chunk_size, len(strategies))
        sides = 4 if self.sided and strategies and strategies[0].own_shorts else 2
        buffers = [tuple(np.zeros((size, n, m), dtype=bool) for _ in range(sides))
                   for _ in range(min(2, len(chunks)))]
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                pending = None
                for c, chunk in enumerate(chunks):
                    inputs = self.signals(chunk, buffers[c % 2])  # the chunk before last is done
                    if pending is not None:
                        out.append(pending.result())
                        if bar is not None:
                            bar.update(len(out[-1]))
                    pending = pool.submit(self.simulate, *inputs)
                    del inputs
                if pending is not None:
                    out.append(pending.result())
                    if bar is not None:
                        bar.update(len(out[-1]))
        finally:
            if bar is not None:
                bar.close()
        return np.concatenate(out) if out else np.empty((0, len(METRIC_KEYS)))


# --- Dask ------------------------------------------------------------------------------------

_WORKER_PREP: dict[int, tuple[Any, _Prepared]] = {}  # id(scattered data) -> (data, its inputs)


def _dask_chunk(data: tuple[SessionConfig, dict[str, pd.DataFrame]], params: list[dict[str, Any]]) -> np.ndarray:
    """One chunk on a Dask worker: metric rows of ``params``, by the local sweep's path. The
    kernel inputs are built once per worker and scattered dataset (kept with the data)."""
    config, frames = data
    cached = _WORKER_PREP.get(id(data))
    if cached is None or cached[0] is not data:
        _WORKER_PREP.clear()
        cached = _WORKER_PREP[id(data)] = (data, _Prepared(config, frames))
    prep = cached[1]
    from workbench.strategies import registry

    cls = registry.get(config.strategy)
    return prep.simulate(*prep.signals([cls(**p) for p in params]))


def _dask_client(cluster: Any) -> tuple[Client, bool]:
    """(client, whether we opened it) for a scheduler address or an existing Client."""
    try:
        from distributed import Client
    except ImportError as e:  # pragma: no cover - dask ships with the reports extra
        raise ImportError("sweep(cluster=...) needs dask.distributed: pip install 'workbench[reports]'") from e
    if isinstance(cluster, Client):
        return cluster, False
    if not isinstance(cluster, str) or "://" not in cluster:
        raise ValueError(f"cluster must be a Dask scheduler address like 'tcp://127.0.0.1:8786' or a "
                         f"distributed.Client (got {cluster!r}); leave it None to run on this machine")
    try:
        return Client(cluster, timeout="10s"), True
    except (OSError, TimeoutError) as e:
        raise ConnectionError(f"cannot reach the Dask scheduler at {cluster} ({e}); start one "
                              f"(`dask scheduler` + `dask worker {cluster}`) or pass cluster=None") from None


def _run_on_dask(
    cluster: Any, config: SessionConfig, frames: dict[str, pd.DataFrame], valid: list[dict[str, Any]],
    chunk_size: int, progress: bool,
) -> np.ndarray:
    """Metric rows of every combination in ``valid``, one Dask task per chunk, in order."""
    client, owned = _dask_client(cluster)
    bar = None
    try:
        from distributed import as_completed

        data = client.scatter((config, frames), broadcast=True)
        chunks = [valid[i : i + chunk_size] for i in range(0, len(valid), chunk_size)]
        futures = [client.submit(_dask_chunk, data, c, pure=False) for c in chunks]
        position = {f.key: i for i, f in enumerate(futures)}
        out: list[np.ndarray | None] = [None] * len(chunks)
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(valid), desc="sweep (dask)", unit="combo")
        for fut in as_completed(futures):
            i = position[fut.key]
            out[i] = fut.result()
            if bar is not None:
                bar.update(len(chunks[i]))
        return np.concatenate([rows for rows in out if rows is not None])
    finally:
        if bar is not None:
            bar.close()
        if owned:
            client.close()

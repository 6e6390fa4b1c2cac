"""Run a backtest of a SessionConfig: bars -> strategy signals -> execution kernel -> result (vectorbt on demand).

How each config feature is executed (docs/execution-semantics.md; the paper engine follows the
same rules, and the same numba kernels in :mod:`workbench.execution`):

* Signals: ``strategy.signals(bars)`` per symbol. A bar with both entry and exit is dropped; the
  rest are shifted one bar *within that symbol's own bars*: a signal at bar t acts at bar t+1's
  open. Long-only, no pyramiding: an entry needs the symbol flat at the close of bar t, an exit a
  position; at most one order per symbol and bar.
* Fills (:func:`workbench.execution.simulate.fills_nb`, cached numba): buy at open × (1 + s), sell at reference ×
  (1 - s), s = ``slippage.bps``/1e4, plus for model ``volume`` ``slippage.impact`` × quantity /
  bar volume (share capped at 1, sell slippage capped at 99 %). Fees per order: taker × quantity ×
  fill price + ``commission.fixed``.
* Sizing at the fill bar's open: fixed_amount -> quantity = value / open; percent_equity ->
  value × (cash + positions at this bar's open, after the orders already done on this bar) / open;
  fixed_quantity -> value. Caps in order: quantity × open <= ``risk.max_position``; total exposure
  at the open after the order <= ``risk.portfolio_limit``; quantity <= ``volume.max_share`` × bar
  volume (``on_excess`` cap or skip); a bar below ``volume.min_bar_volume`` gets no entry; cost
  (quantity × fill × (1 + taker) + fixed) <= cash, solved exactly under the volume model.
  Dropped entries are not retried. Volume rules and time restrictions gate entries only.
* Stops from the entry fill price, checked from the bar after the entry: stop loss / trailing
  (highest high since the entry bar, inclusive) / take profit; an open beyond a level fills at
  the open, else at the level; stop loss and trailing before take profit; a signal exit or a
  holding-time exit at the open comes first. Holding limit: age at the open >=
  ``risk.max_holding_minutes`` sells at the open.
* Concentration, order rate and circuit breaker (rule 10) act as in sessions: a buy beyond
  ``risk.concentration_limit`` × equity is capped, one beyond ``risk.max_orders_per_minute`` is
  rejected, and a daily-loss, drawdown or rejection-burst breach trips the breaker to its action
  for the rest of the run (``BacktestResult.breaker`` says when and why).
* Time restrictions: entries only at bars whose open time, on ``time.timezone``'s wall clock, is
  on an allowed weekday, inside ``trading_hours`` and outside every blackout.
* Symbols share one cash balance; each bar runs sells, then buys in config symbol order.

Result: :func:`workbench.backtest.result.build_result` replays the fills with vectorbt's own
order, cash and trade rules (:func:`workbench.backtest.booking.book_nb`, a small cached numba
pass, also the sweep's) for equity, cash, exposure, the order and
trade logs and the metrics; the vectorbt portfolio itself is built only when
``BacktestResult.portfolio`` is first accessed, and agrees with them.

vectorbt mapping: the kernel's fills go to ``Portfolio.from_orders`` with ``size`` (buy quantity,
or -inf = sell the whole position), ``price`` = fill price (``slippage=0``, already in the
price), ``fees`` = taker, ``fixed_fees`` = fixed, ``direction='longonly'``, one group with
``cash_sharing=True`` and the kernel's ``call_seq`` (sells first). ``close`` (forward-filled
over a symbol's missing bars) values the portfolio: equity = cash + Σ quantity × close. The
portfolio is indexed by naive UTC times (fast in vectorbt); the result's series are UTC-aware.
``from_signals`` is not used: its simulator cannot be cached by numba (5-7 s compile in every
new process) and its stops differ from the semantics (a stop beats a signal exit due at the same
bar's open; trailing ignores the entry bar's high; a gap above take profit loses to an intrabar
stop loss), and it has no percent-of-equity size.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.backtest.result import BacktestResult, build_result
from workbench.config import SessionConfig, quote_of
from workbench.execution import entry_allowed, flatten_at
from workbench.execution.latency import delay_bars, delay_signals
from workbench.execution.margin import check_funding, funding_per_bar
from workbench.execution.simulate import Fills, fills_nb, kernel_params, layout

if TYPE_CHECKING:
    from vectorbt import Portfolio

__all__ = ["run_backtest", "run_frames", "bars_for", "kernel_inputs", "KernelInputs"]

_COLUMNS = ("open", "high", "low", "close", "volume")


def run_backtest(
    config: SessionConfig, bars: Mapping[str, pd.DataFrame] | pd.DataFrame | None = None, *, progress: bool = False,
    funding: pd.Series | None = None,
) -> BacktestResult:
    """Backtest ``config`` on ``bars`` (symbol -> bars frame; a single frame for a one-symbol config),
    by default ``workbench.data.load_bars`` for each symbol over ``config.start``-``config.end``.
    ``funding``: a perpetual's funding rates indexed by funding time (``workbench.data.funding``), paid
    by the positions held then (execution rule 16); default the config's constant ``margin.funding_rate``."""
    if not isinstance(config, SessionConfig):
        raise TypeError(f"run_backtest takes a SessionConfig (see workbench.make_config), got {type(config).__name__}")
    return run_frames(config, bars_for(config, bars, progress), check_funding(funding))


def run_frames(
    config: SessionConfig, frames: dict[str, pd.DataFrame], funding: pd.Series | None = None,
    inputs: KernelInputs | None = None,
) -> BacktestResult:
    """run_backtest of ``config`` on ``frames`` from :func:`bars_for` (bars in its base currency);
    ``inputs``: their :func:`kernel_inputs` when built already (an A/B's variants share them)."""
    if config.depth is not None:  # a book depth model: the impact calibrated from recorded books (rule 14)
        from workbench.data.books import depth_config

        config = depth_config(config)
    result = _run(config, frames, funding, inputs)
    rates = getattr(frames, "rates", None)  # symbols converted into the base currency (workbench.data.currency)
    if rates:  # the trade log keeps those markets' own prices too
        from workbench.data.currency import with_market_prices

        result.trades = with_market_prices(result.trades, rates)
    return result


def _run(config: SessionConfig, frames: dict[str, pd.DataFrame], funding: pd.Series | None = None,
         inputs: KernelInputs | None = None) -> BacktestResult:
    """The backtest of ``config`` on ``frames`` (bars in its base currency)."""
    if config.legs:  # a multi-strategy session: one column per (leg, symbol)
        from workbench.backtest.legs import run_legs

        return run_legs(config, frames)
    from workbench.strategies import create

    strategy = create(config.strategy, config.params)
    inputs = kernel_inputs(config, frames) if inputs is None else inputs
    index = inputs.index
    buy, sell = inputs.signals(strategy)
    shorts = inputs.short_signals(strategy) if config.direction != "long" and strategy.own_shorts else None
    fills, trip = walk(config, index, inputs.arr, buy, sell, shorts=shorts, funding=funding)
    close = inputs.close_filled()
    symbols = inputs.symbols

    def make_portfolio() -> Portfolio:
        if config.direction != "long" or config.margin is not None:
            raise NotImplementedError("the vectorbt portfolio is built for long, cash-only backtests; this one has "
                                      "shorts or margin: use the result's equity, cash, trades and orders")
        # vectorbt gets naive UTC times: it converts a tz-aware index to Timestamp objects (~1 s per series)
        naive = index.tz_convert("UTC").tz_localize(None)
        return _portfolio(config, pd.DataFrame(close, index=naive, columns=symbols), fills)

    result = build_result(config, frames, index, fills, close, make_portfolio)
    result.breaker = breaker_trip(index, trip)
    return result


def breaker_trip(index: pd.DatetimeIndex, trip: np.ndarray) -> dict[str, Any] | None:
    """The walk's circuit-breaker ``trip`` as {time, reason, state}, or None if it never tripped."""
    from workbench.execution.codes import BREAKER_REASONS, TRADING_STATES

    if trip[0] < 0:
        return None
    out: dict[str, Any] = {"time": index[int(trip[0])], "reason": BREAKER_REASONS[int(trip[1])],
                           "state": TRADING_STATES[int(trip[2])]}
    if len(trip) > 3 and trip[3] >= 0:  # a tail breaker escalated to halted later
        out["escalated"] = {"time": index[int(trip[3])], "reason": BREAKER_REASONS[int(trip[4])],
                            "state": TRADING_STATES[int(trip[5])]}
    return out


@dataclass
class KernelInputs:
    """The per-bar arrays :func:`fills_nb` takes for ``config`` on ``frames``, shared by
    every strategy run on those bars (run_backtest once, a sweep per combination)."""

    symbols: list[str]
    frames: dict[str, pd.DataFrame]
    index: pd.DatetimeIndex  # union of the symbols' bar times
    rows: list[slice | np.ndarray]  # each symbol's bars' rows in ``index``
    arr: dict[str, np.ndarray]  # OHLCV column -> (n, m), NaN where a symbol has no bar

    @property
    def times(self) -> np.ndarray:
        """Bar open times, int64 ns (the walk's ``times``)."""
        return kernel_times(self.index)

    def close_filled(self) -> np.ndarray:
        """Close forward- then back-filled: how vectorbt values the positions."""
        return _fill_close(self.arr["close"])

    def short_signals(self, strategy: Any) -> tuple[np.ndarray, np.ndarray]:
        """(short entries, short exits) (n, m) of a strategy with its own short signals, shifted like
        :meth:`signals` (rule 15)."""
        n, m = len(self.index), len(self.symbols)
        short, cover = np.zeros((n, m), dtype=bool), np.zeros((n, m), dtype=bool)
        for j, sym in enumerate(self.symbols):
            df = self.frames[sym]
            short[self.rows[j], j], cover[self.rows[j], j] = _shifted_signals(strategy.short_signals(df), df.index, sym)
        return short, cover

    def signals(
        self, strategy: Any, buy: np.ndarray | None = None, sell: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(buy, sell) (n, m): ``strategy.signals`` per symbol, shifted by :func:`_shifted_signals`;
        written into ``buy``/``sell`` when given (all False beforehand)."""
        n, m = len(self.index), len(self.symbols)
        if buy is None:
            buy = np.zeros((n, m), dtype=bool)
        if sell is None:
            sell = np.zeros((n, m), dtype=bool)
        for j, sym in enumerate(self.symbols):
            df = self.frames[sym]
            b, s = _shifted_signals(strategy.signals(df), df.index, sym)
            buy[self.rows[j], j], sell[self.rows[j], j] = b, s
        return buy, sell


def union_index(frames: Iterable[pd.DataFrame]) -> pd.DatetimeIndex:
    """The union of the frames' indexes (the first frame's own index when they all share it)."""
    frames = list(frames)
    index = frames[0].index
    for df in frames[1:]:
        if df.index is not index:
            index = index.union(df.index)
    return index


def kernel_inputs(
    config: SessionConfig, frames: Mapping[str, pd.DataFrame], symbols: list[str] | None = None
) -> KernelInputs:
    """The kernel's OHLCV arrays for ``config.symbols`` (or the columns ``symbols``, keys of ``frames``)
    on ``frames`` (see :class:`KernelInputs`)."""
    symbols = list(config.symbols) if symbols is None else symbols
    frames = {sym: frames[sym] for sym in symbols}
    index = union_index(frames.values())
    m, n = len(symbols), len(index)
    full = all(df.index is index for df in frames.values())  # every symbol has every bar: no gaps to mark
    if full and m == 1:  # one symbol: its columns as (n, 1) views, no copy (the kernels only read them)
        df = frames[symbols[0]]
        arr = {c: df[c].to_numpy(dtype=float).reshape(n, 1) for c in _COLUMNS}
        return KernelInputs(symbols, frames, index, [slice(None)], arr)
    arr = {c: np.empty((n, m)) if full else np.full((n, m), np.nan) for c in _COLUMNS}
    rows: list[slice | np.ndarray] = []
    for j, sym in enumerate(symbols):
        df = frames[sym]
        r = slice(None) if df.index is index else index.get_indexer(df.index)
        rows.append(r)
        for c in _COLUMNS:
            arr[c][r, j] = df[c].to_numpy(dtype=float)
    return KernelInputs(symbols, frames, index, rows, arr)


def kernel_times(index: pd.DatetimeIndex) -> np.ndarray:
    """The kernel's ``times``: bar open times as int64 nanoseconds."""
    return index.as_unit("ns").asi8


def _fill_close(close: np.ndarray) -> np.ndarray:
    """``close`` forward-filled down each column, then back-filled (a symbol's bars before its first
    close take that close), as vectorbt values the portfolio."""
    nan = np.isnan(close)
    if not nan.any():
        return close
    n, m = close.shape
    rows = np.where(nan, 0, np.arange(n)[:, None])
    np.maximum.accumulate(rows, axis=0, out=rows)
    out = close[rows, np.arange(m)]
    first = np.argmax(~nan, axis=0)  # first valid row of each column
    lead = np.arange(n)[:, None] < first
    return np.where(lead, close[first, np.arange(m)], out)


def bars_for(
    config: SessionConfig, bars: Mapping[str, pd.DataFrame] | pd.DataFrame | None, progress: bool = False
) -> dict[str, pd.DataFrame]:
    """Each of ``config.symbols``' bars frame over ``config.start``-``config.end``: from ``bars``
    (validated unless already canonical), else ``workbench.data.load_bars``."""
    from workbench.data import load_bars, validate_bars

    symbols = list(config.symbols)
    if isinstance(bars, pd.DataFrame):
        if len(symbols) != 1:
            raise ValueError(f"one bars frame given for {len(symbols)} symbols; pass a dict symbol -> frame")
        bars = {symbols[0]: bars}
    if bars is not None and not isinstance(bars, Mapping):
        raise TypeError(f"bars must map each symbol to a bars frame (got {type(bars).__name__})")
    if bars is not None:
        missing = [s for s in symbols if s not in bars]
        if missing:
            raise ValueError(f"no bars for {', '.join(missing)}; bars were given for {', '.join(map(str, bars))}")
    it = symbols
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(symbols, desc="bars", unit="symbol")
    out: dict[str, pd.DataFrame] = {}
    for sym in it:
        if bars is None:
            df = load_bars(config.data, sym, config.start, config.end)
        else:
            df = bars[sym]
            if not _canonical(df):
                df = validate_bars(df)
            if config.start is not None or config.end is not None:
                df = df.loc[config.start : config.end]
        if df.empty:
            raise ValueError(f"no {sym} bars between {config.start or 'the start'} and {config.end or 'the end'}")
        out[sym] = df
    if any(quote_of(s) != config.currency for s in symbols):  # in the session's base currency, as paper feeds
        from workbench.data.currency import pair_bars, to_base

        given = bars if bars is not None else {}
        return to_base(out, config.currency, lambda pair: given[pair] if pair in given
                       else pair_bars(config.data, pair, config.start, config.end))
    return out


def _canonical(df: object) -> bool:
    """Is ``df`` already what ``validate_bars`` returns (exactly the OHLCV float64 columns, a UTC
    nanosecond index named ``time``, strictly increasing)? A cheap check that skips re-validation."""
    from workbench.data.schema import BARS_COLUMNS

    if not isinstance(df, pd.DataFrame) or tuple(df.columns) != BARS_COLUMNS:
        return False
    idx = df.index
    if not isinstance(idx, pd.DatetimeIndex) or idx.name != "time" or idx.tz is None or str(idx.tz) != "UTC":
        return False
    if idx.dtype != "datetime64[ns, UTC]" or any(dt != np.float64 for dt in df.dtypes):
        return False
    i8 = idx.asi8
    return len(i8) < 2 or bool((i8[1:] > i8[:-1]).all())


def _shifted_signals(
    signals: tuple[pd.Series, pd.Series], index: pd.DatetimeIndex, symbol: str
) -> tuple[np.ndarray, np.ndarray]:
    """(buy, sell) at each bar: the previous bar's entry/exit, bars with both dropped."""
    if all(isinstance(x, pd.Series) and x.index is index and x.dtype == bool for x in signals):
        e, x = signals[0].to_numpy(), signals[1].to_numpy()  # aligned bool already: nothing to check
    else:
        entries, exits = (pd.Series(s) for s in signals)
        entries, exits = (x if x.index is index else x.reindex(index) for x in (entries, exits))
        if entries.isna().any() or exits.isna().any():
            raise ValueError(f"strategy signals for {symbol} do not cover every bar (NaN or misaligned index)")
        e, x = entries.to_numpy(dtype=bool), exits.to_numpy(dtype=bool)
    buy, sell = np.zeros(len(e), dtype=bool), np.zeros(len(e), dtype=bool)
    buy[1:], sell[1:] = (e & ~x)[:-1], (x & ~e)[:-1]
    return buy, sell


def walk(
    config: SessionConfig, index: pd.DatetimeIndex, arr: dict[str, np.ndarray], buy: np.ndarray, sell: np.ndarray,
    *, shorts: tuple[np.ndarray, np.ndarray] | None = None, funding: pd.Series | None = None,
) -> tuple[Fills, np.ndarray]:
    """The walk's fills (:func:`fills_nb`) and breaker trip for one set of signals (delayed by the latency);
    ``shorts``: a strategy's own (short entries, short exits), else the default rule; ``funding``: a funding
    rate series (rule 16)."""
    has_bar, delay = ~np.isnan(arr["open"]), delay_bars(config.latency, config.data.timeframe)
    buy, sell = delay_signals(buy, sell, has_bar, delay)
    p = kernel_params(config)
    times = kernel_times(index)
    if shorts is not None:
        short, cover = delay_signals(shorts[0], shorts[1], has_bar, delay)
        p = p._replace(short_sig=short, cover_sig=cover)
    if funding is not None:
        p = p._replace(funding=funding_per_bar(times, config.margin, funding))
    idx, col, qty, price, ref, reason, trip, steps = fills_nb(
        times, arr["open"], arr["high"], arr["low"], arr["close"], arr["volume"], buy, sell,
        entry_allowed(index, config.time), flatten_at(index, config.time), p,
    )
    return Fills(idx, col, qty, price, ref, reason, steps), trip


def _portfolio(config: SessionConfig, close: pd.DataFrame, fills: Fills) -> Portfolio:
    from workbench.backtest.warmup import ensure_numba_cache

    ensure_numba_cache()  # vectorbt's kernels load from the shared cache too
    import vectorbt as vbt

    n, m = close.shape
    qty, price, _, _, call_seq = layout(n, m, fills)
    grouped = close.shape[1] > 1
    return vbt.Portfolio.from_orders(
        close,
        size=qty,
        price=np.where(np.isnan(price), close.to_numpy(), price),
        fees=config.commission.taker,
        fixed_fees=config.commission.fixed,
        slippage=0.0,
        direction="longonly",
        init_cash=config.initial_balance,
        cash_sharing=grouped,
        group_by=True if grouped else None,
        call_seq=call_seq,
        freq=_freq(close.index, config),
    )


def _freq(index: pd.DatetimeIndex, config: SessionConfig) -> pd.Timedelta:
    """Bar spacing: the median step of the bars, else the configured timeframe."""
    if len(index) > 1:
        return pd.Timedelta(int(np.median(np.diff(index.as_unit("ns").asi8))), unit="ns")
    from workbench.data import timeframe_delta

    return timeframe_delta(config.data.timeframe)

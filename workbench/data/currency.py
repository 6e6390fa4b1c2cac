"""A session's base currency: bars of markets quoted in another currency converted into it, once.

A session trades, values and reports in ``config.currency`` (``base_currency``, else the symbols' common
quote). A market quoted in another currency (``ETH/BTC`` in a USDT session) has its bars converted with
the conversion pair's bars at the same timestamps (``BTC/USDT``, or the inverse ``USDT/BTC`` as
1 / ``BTC/USDT``): each price of a bar (open, high, low, close) × the conversion pair's close of that bar
(its rate; a conversion bar missing at a time takes the last one before). Volume stays in base units.
Everything downstream (fills, fees, the cash ledger, equity, caps, breakers) then sees one currency:
mixed quotes are never summed. Backtests (:func:`workbench.backtest.runner.bars_for`) and replayed paper
sessions (:func:`workbench.engine.feeds.shared_bars`) both call :func:`to_base`, so they see the same bars.
The conversion pair's bars are loaded like any symbol's (sample data, ccxt and its cache; a CSV source holds
one market, so there they must be given: :func:`pair_bars`). The trade log
keeps the market's own prices beside the converted ones (:func:`with_market_prices`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.config import quote_of
from workbench.data.schema import BarsError

if TYPE_CHECKING:
    from workbench.config import DataConfig

__all__ = ["BaseBars", "conversion", "to_base", "pair_bars", "load_in_base", "market_rates", "rate_of",
           "with_market_prices", "MARKET_COLUMNS"]

#: the trade log's columns in the market's own quote currency (beside entry_price / exit_price, converted)
MARKET_COLUMNS = ("market_entry_price", "market_exit_price")
_PRICES = ["open", "high", "low", "close"]
Loader = Callable[[str], pd.DataFrame]


class BaseBars(dict[str, pd.DataFrame]):
    """Bars per symbol in the base currency; ``rates`` holds, for each converted symbol, the rate of each of
    its bars (base currency per unit of its quote)."""

    def __init__(self, frames: Mapping[str, pd.DataFrame], rates: Mapping[str, pd.Series] | None = None):
        super().__init__(frames)
        self.rates: dict[str, pd.Series] = dict(rates or {})


def conversion(quote: str, base: str, load: Loader, known: Iterable[str] = ()) -> tuple[str, pd.Series]:
    """(pair, rate per bar time): base currency per unit of ``quote`` from the bars of ``QUOTE/BASE``, or of
    ``BASE/QUOTE`` inverted; a pair in ``known`` (the session's own symbols) first, else whichever loads."""
    direct, inverse = f"{quote}/{base}", f"{base}/{quote}"
    order = [p for p in (direct, inverse) if p in set(known)] or [direct, inverse]
    errors = []
    for pair in order:
        try:
            close = load(pair)["close"]
        except (BarsError, KeyError, ValueError, OSError) as e:
            errors.append(f"{pair}: {e}")
            continue
        return pair, (1.0 / close if pair == inverse else close).astype(float)
    raise BarsError(f"cannot convert {quote} prices into the base currency {base}: no bars for {direct} or "
                    f"{inverse} ({'; '.join(errors)}); give their bars (the same source as the session's), or "
                    f"set base_currency to {quote}")


def rate_of(rate: pd.Series, index: pd.DatetimeIndex, symbol: str, pair: str) -> np.ndarray:
    """``rate`` at each time of ``index``: the conversion bar at that time, else the last one before."""
    out = rate.reindex(index, method="ffill") if not rate.index.equals(index) else rate
    arr = out.to_numpy(dtype=float)
    bad = ~(arr > 0)
    if bad.any():
        t = index[int(np.argmax(bad))]
        raise BarsError(f"{symbol}: no {pair} bar at or before {t} to convert its prices; load {pair} bars from "
                        f"{index[0]} on (or start the session later)")
    return arr


def to_base(frames: Mapping[str, pd.DataFrame], base: str, load: Loader) -> BaseBars:
    """``frames`` (symbol -> OHLCV) with every symbol not quoted in ``base`` converted into it (see the
    module); ``load(pair)`` gives a conversion pair's bars unless ``frames`` has them. Symbols quoted in
    ``base`` are passed through as they are (the same objects)."""
    out: dict[str, pd.DataFrame] = {}
    rates: dict[str, pd.Series] = {}
    pairs: dict[str, tuple[str, pd.Series]] = {}

    def get(pair: str) -> pd.DataFrame:
        return frames[pair] if pair in frames else load(pair)

    for sym, df in frames.items():
        quote = quote_of(sym)
        if quote == base:
            out[sym] = df
            continue
        if quote not in pairs:
            pairs[quote] = conversion(quote, base, get, frames)
        pair, rate = pairs[quote]
        r = rate_of(rate, df.index, sym, pair)
        conv = df.copy()
        conv[_PRICES] = df[_PRICES].to_numpy(dtype=float) * r[:, None]
        out[sym] = conv
        rates[sym] = pd.Series(r, index=df.index, name=pair)
    return BaseBars(out, rates)


def pair_bars(data: DataConfig, pair: str, start: Any = None, end: Any = None) -> pd.DataFrame:
    """A conversion pair's bars from the session's data source; a CSV source is refused (its one file holds
    one market's bars: converting with them would be silently wrong)."""
    from workbench.data import load_bars

    if data.source == "csv":
        raise BarsError(f"a CSV data source ({data.csv_path}) holds one market's bars, not {pair}'s; pass {pair}'s "
                        f"bars too (run_backtest(config, bars={{..., '{pair}': frame}})) or use sample or ccxt data")
    return load_bars(data, pair, start, end)


def load_in_base(data: DataConfig, symbol: str, base: str | None, start: Any = None, end: Any = None) -> pd.DataFrame:
    """``workbench.data.load_bars(data, symbol, start, end)`` in the currency ``base`` (None: as loaded), its
    conversion pair from the same source over the same range (:func:`pair_bars`)."""
    from workbench.data import load_bars

    df = load_bars(data, symbol, start, end)
    if base is None or quote_of(symbol) == base:
        return df
    return to_base({symbol: df}, base, lambda pair: pair_bars(data, pair, start, end))[symbol]


def market_rates(data: DataConfig, symbols: Iterable[str], base: str, start: Any = None,
                 end: Any = None) -> dict[str, pd.Series]:
    """symbol -> rate per bar time of each of ``symbols`` not quoted in ``base`` (what :func:`with_market_prices`
    takes), the conversion pairs loaded from ``data`` over ``[start, end]``; {} when none needs converting."""
    pairs: dict[str, pd.Series] = {}
    out: dict[str, pd.Series] = {}
    for sym in symbols:
        quote = quote_of(sym)
        if quote == base:
            continue
        if quote not in pairs:
            pairs[quote] = conversion(quote, base, lambda pair: pair_bars(data, pair, start, end), symbols)[1]
        out[sym] = pairs[quote]
    return out


def with_market_prices(trades: pd.DataFrame, rates: Mapping[str, pd.Series]) -> pd.DataFrame:
    """``trades`` (a trade log in the base currency) plus :data:`MARKET_COLUMNS`: each price divided by the
    rate of its bar (entry at the entry bar, exit at the exit bar, an open trade's mark at the last bar);
    the same price where the symbol needed no conversion. A column key ``SYMBOL@leg`` is its symbol's."""
    out = trades.copy()
    entry = out["entry_price"].to_numpy(dtype=float).copy()
    exit_ = out["exit_price"].to_numpy(dtype=float).copy()
    keys = out["symbol"].astype(str).str.split("@").str[0].to_numpy() if len(out) else np.array([], dtype=object)
    for sym, rate in rates.items():
        rows = np.flatnonzero(keys == sym)
        if not len(rows):
            continue
        at_entry = rate.reindex(pd.DatetimeIndex(out["entry_time"].iloc[rows]), method="ffill").to_numpy()
        xt = pd.DatetimeIndex(out["exit_time"].iloc[rows])
        at_exit = np.where(xt.isna(), rate.iloc[-1], rate.reindex(xt.fillna(rate.index[-1]), method="ffill"))
        entry[rows] /= at_entry
        exit_[rows] /= at_exit
    out[MARKET_COLUMNS[0]], out[MARKET_COLUMNS[1]] = entry, exit_
    return out

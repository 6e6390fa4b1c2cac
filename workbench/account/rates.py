"""The rates the account gate converts sessions' figures with: the latest known price of each market.

Sessions report their marks (a symbol's price in the session's base currency is its base asset's price
in that currency: ``BTC/USDT`` at 50,000 in a USDT session makes ``BTC/USDT`` 50,000), and
:meth:`Rates.load` reads the last close of conversion pairs from a data source. A rate from one currency
into another is then :func:`workbench.data.currency.conversion` over these prices: ``QUOTE/BASE``, or
``BASE/QUOTE`` inverted, the one definition of a conversion. No price known for either pair: no rate.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.config import base_of
from workbench.data.currency import Loader, conversion, pair_bars
from workbench.data.schema import BarsError
from workbench.execution.legs import market_symbol

if TYPE_CHECKING:
    from workbench.config import DataConfig


class Rates:
    """The latest known close of each market (``BASE/QUOTE`` -> price), and rates between currencies."""

    def __init__(self, prices: Mapping[str, float] | None = None):
        self._prices: dict[str, float] = {}
        self.set(prices or {})

    def set(self, prices: Mapping[str, float]) -> None:
        """Record the latest prices of markets (``"BTC/USDT": 50_000``); a price <= 0 is ignored."""
        for pair, price in prices.items():
            if price > 0:
                self._prices[pair] = float(price)

    def observe(self, currency: str, marks: Mapping[str, float]) -> None:
        """A session's marks (symbol -> price in its base ``currency``) as prices of the symbols' base assets."""
        self.set({f"{base_of(market_symbol(s))}/{currency}": p for s, p in marks.items()})

    def rate(self, currency: str, into: str) -> float | None:
        """How much of ``into`` one unit of ``currency`` is worth at the latest known price; None if unknown."""
        if currency == into:
            return 1.0
        try:
            return float(conversion(currency, into, self._close)[1].iloc[-1])
        except BarsError:
            return None

    def load(self, currencies: Iterable[str], into: str, load: Loader, *, refresh: bool = False) -> list[str]:
        """Read the conversion pair of each of ``currencies`` into ``into`` with ``load(pair)`` (bars) and keep
        its last close (with ``refresh``; else only where no rate is known); returns one line per currency
        that could not be loaded (its rate stays as it was)."""
        problems = []
        for cur in sorted(set(currencies) - {into}):
            if not refresh and self.rate(cur, into) is not None:
                continue
            try:
                conversion(cur, into, self._keep(load))
            except BarsError:
                problems.append(f"account limits in {into}: no {cur} to {into} rate (no bars of {cur}/{into} or "
                                f"{into}/{cur} in the sessions' data sources); while a session in {cur} holds "
                                "something, its account's entries are refused (account_currency)")
        return problems

    def _close(self, pair: str) -> pd.DataFrame:
        return pd.DataFrame({"close": [self._prices[pair]]})  # KeyError: not known

    def _keep(self, load: Loader) -> Loader:
        def grab(pair: str) -> pd.DataFrame:
            bars = load(pair)
            self.set({pair: float(bars["close"].iloc[-1])})
            return bars
        return grab


def sources_loader(sources: Iterable[tuple[DataConfig, Any]], lookback: timedelta = timedelta(days=2)) -> Loader:
    """A conversion pair's bars up to each ``(data config, end)`` in turn from its source (the sessions'
    own sources, :func:`workbench.data.currency.pair_bars`); the first that has them."""
    from workbench.data import SAMPLE_START

    listed = list(sources)

    def load(pair: str) -> pd.DataFrame:
        errors = []
        for data, end in listed:
            start = pd.Timestamp(end) - lookback
            if data.source == "sample":  # the bundled sample starts at SAMPLE_START
                start = max(start, SAMPLE_START)
            try:
                bars = pair_bars(data, pair, start, end)
            except (BarsError, KeyError, ValueError, OSError) as e:
                errors.append(str(e))
                continue
            if len(bars):
                return bars
        raise BarsError(f"no bars for {pair} in the sessions' data sources ({'; '.join(errors) or 'none'})")
    return load


__all__ = ["Rates", "sources_loader"]

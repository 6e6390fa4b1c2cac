"""Binance USDⓈ-M ``TRAILING_STOP_MARKET`` on the loopback's algo service (perp_algo.py): its parameters and
the trail it follows.

Binance's documented rules (New Algo Order, ``POST /fapi/v1/algoOrder``), as applied here:

* ``callbackRate`` is a percent, 0.1 to 20 (Binance raised the maximum from 10 to 20 on 2026-10-23; outside:
  -1130). ``activatePrice`` is optional (default: the latest price, so the trail starts at once); a ``SELL``'s
  must be above the latest price, a ``BUY``'s below it, else -2021 "Order would immediately trigger.".
  ``closePosition`` is not allowed (-4136); ``quantity`` and ``reduceOnly`` are, as for ``STOP_MARKET``.
* A ``SELL`` triggers when the highest price since it was placed is at or above ``activatePrice`` and the
  latest price is at or below that highest price x (1 - callbackRate); a ``BUY`` when the lowest price since
  it was placed is at or below ``activatePrice`` and the latest price is at or above that lowest x (1 +
  callbackRate). It then fills as a market order (perp_algo.py).

The loopback's prices: an intrabar trade (``LoopbackExchange.trade``) is a jump to its price, and a trail it
crosses triggers at that price. A completed bar is walked from its open (a jump from the price before) along
open, low, high, close if it closed at or above its open, else open, high, low, close, the price moving
continuously between them: a trail crossed on the way triggers at its level, one the open gapped through at
the open.
"""
from __future__ import annotations

from dataclasses import dataclass

from .matching import BinanceError

TRAILING = "TRAILING_STOP_MARKET"
MIN_RATE, MAX_RATE = 0.1, 20.0  # callbackRate bounds, percent


def callback_rate(p: dict[str, str]) -> float:
    """The checked ``callbackRate`` (percent) of a new trailing stop."""
    try:
        rate = float(p["callbackRate"])
    except (KeyError, ValueError):
        raise BinanceError(-1102, "Mandatory parameter 'callbackRate' was not sent, was empty/null, "
                                  "or malformed.") from None
    if not MIN_RATE <= rate <= MAX_RATE:
        raise BinanceError(-1130, "Data sent for parameter 'callbackRate' is not valid.")
    return rate


@dataclass
class Trail:
    """The trail of one trailing stop: ``extreme`` is the highest (``SELL``) or lowest (``BUY``) price since it
    was placed."""

    side: str
    rate: float  # callbackRate / 100
    activate: float
    extreme: float

    @classmethod
    def place(cls, side: str, rate_pct: float, activate: float | None, latest: float) -> Trail:
        """A new trail at the ``latest`` price (-2021 if ``activate`` is on the wrong side of it)."""
        if activate is not None and ((activate <= latest) if side == "SELL" else (activate >= latest)):
            raise BinanceError(-2021, "Order would immediately trigger.")
        return cls(side, rate_pct / 100.0, latest if activate is None else activate, latest)

    @property
    def active(self) -> bool:
        return self.extreme >= self.activate if self.side == "SELL" else self.extreme <= self.activate

    @property
    def level(self) -> float:
        """The price that triggers it now (once active)."""
        return self.extreme * (1.0 - self.rate) if self.side == "SELL" else self.extreme * (1.0 + self.rate)

    def move(self, price: float, *, jump: bool) -> float | None:
        """The price moves to ``price`` (a trade there if ``jump``, else continuously from the last price):
        the price it triggers at, or None."""
        if (price > self.extreme) if self.side == "SELL" else (price < self.extreme):
            self.extreme = price  # a new best: the trail follows (it never triggers on its way there)
            return None
        if self.active and ((price <= self.level) if self.side == "SELL" else (price >= self.level)):
            return price if jump else self.level
        return None

    def bar(self, op: float, high: float, low: float, close: float) -> float | None:
        """Walk a completed bar (see the module docstring): the price it triggers at, or None."""
        at = self.move(op, jump=True)
        for p in ((low, high, close) if close >= op else (high, low, close)):
            if at is not None:
                return at
            at = self.move(p, jump=False)
        return at

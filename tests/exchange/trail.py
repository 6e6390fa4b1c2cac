"""Trailing stops on the loopback exchange: the trail both Binance markets follow (spot ``trailingDelta`` on the
stop types, stops.py; USDⓈ-M ``TRAILING_STOP_MARKET``, perp_algo.py).

A trail tracks the best price for its side, the highest for a ``SELL`` and the lowest for a ``BUY``, and
triggers once the latest price is ``rate`` off it: a ``SELL`` at or below highest x (1 - rate), a ``BUY`` at or
above lowest x (1 + rate). With an activation price it tracks nothing until a price reaches it (at or above
it if ``activate_up``, at or below it otherwise); the first price that does, that level for prices moving
through it, starts the best price. Without one it tracks from the price it was placed at.

The loopback's prices: an intrabar trade (``LoopbackExchange.trade``) is a jump to its price, and a trail it
crosses triggers at that price. A completed bar is walked from its open (a jump from the price before) along
open, low, high, close if it closed at or above its open, else open, high, low, close, the price moving
continuously between them: a trail crossed on the way triggers at its level, one the open gapped through at
the open.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Trail:
    """The trail of one trailing stop; ``best`` is None until it is active."""

    side: str  # BUY / SELL
    rate: float  # a fraction: 0.01 is 1 %
    activate: float | None  # None: active from the start
    activate_up: bool
    best: float | None

    @classmethod
    def place(cls, side: str, rate: float, activate: float | None, latest: float, *,
              activate_up: bool | None = None) -> Trail:
        """A new trail at the ``latest`` price; ``activate_up`` defaults to the side's favourable direction
        (up for a ``SELL``)."""
        up = side == "SELL" if activate_up is None else activate_up
        return cls(side, rate, activate, up, latest if activate is None else None)

    @property
    def active(self) -> bool:
        return self.best is not None

    @property
    def level(self) -> float:
        """The price that triggers it now (once active)."""
        if self.best is None:
            raise ValueError("the trail is not active yet")
        return self.best * (1.0 - self.rate) if self.side == "SELL" else self.best * (1.0 + self.rate)

    def move(self, price: float, *, jump: bool) -> float | None:
        """The price moves to ``price`` (a trade there if ``jump``, else continuously from the last price):
        the price it triggers at, or None."""
        if self.best is None:
            a = self.activate
            assert a is not None
            if not ((price >= a) if self.activate_up else (price <= a)):
                return None
            self.best = price if jump else a  # moving through the activation price: tracking starts there
            if jump:
                return None
        if (price > self.best) if self.side == "SELL" else (price < self.best):
            self.best = price  # a new best: the trail follows (it never triggers on its way there)
            return None
        if (price <= self.level) if self.side == "SELL" else (price >= self.level):
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

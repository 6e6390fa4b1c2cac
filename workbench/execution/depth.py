"""Order-book depth (rule 14 of docs/execution-semantics.md): walking an L2 book, queue positions of resting
limit orders, and the volume-impact coefficient fitted from recorded books.

* :func:`walk_book`: a market order takes the book's levels best first, each at its price, until its
  quantity is filled; its price is the VWAP over what it took. When the book runs out the rest is NOT
  filled: the order fills partially and the remainder expires, as a Binance market order does on an
  exhausted book (a recorded or fetched book shows only its first levels, so deeper liquidity is unknown,
  not free).
* :class:`QueuePosition`: a resting limit order joins the back of its price level; the size shown there when
  it is placed is the queue ahead. Volume traded AT its price first eats the queue ahead, then fills the
  order; a trade THROUGH its price (a buy's limit above the trade price, a sell's below) means the level was
  cleared, so the order fills in full.
* :func:`fit_impact`: backtests have no book, so they keep the volume slippage model (rule 2:
  ``bps``/1e4 + impact × quantity / bar volume) with ``impact`` fitted to what walking recorded books costs
  (least squares through the origin of the walk's slippage beyond ``bps`` against the volume share);
  :func:`impact_samples` makes the points. Without recorded books the configured impact stays.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BookFill", "QueuePosition", "affordable", "fit_impact", "impact_samples", "levels", "mid_price",
           "walk_book"]


def levels(rows: Iterable[Sequence[float]] | np.ndarray, side: str = "asks") -> np.ndarray:
    """A book side as a (k, 2) float array of (price, amount), best first; raises ValueError naming a bad level.
    ccxt's ``order_book['asks']``/``['bids']`` rows (``[price, amount, ...]``) are taken as they are."""
    a = np.asarray([tuple(r[:2]) for r in rows] if not isinstance(rows, np.ndarray) else rows, dtype=float)
    if a.size == 0:
        return np.empty((0, 2))
    if a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"{side}: each level is [price, amount]; got an array of shape {a.shape}")
    a = a[:, :2]
    bad = ~(np.isfinite(a).all(axis=1) & (a[:, 0] > 0) & (a[:, 1] >= 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{side}: level {i} is {a[i].tolist()}; prices must be > 0 and amounts >= 0")
    step = np.diff(a[:, 0])
    if len(step) and ((side == "asks" and (step <= 0).any()) or (side == "bids" and (step >= 0).any())):
        order = "rising" if side == "asks" else "falling"
        raise ValueError(f"{side}: prices must be strictly {order} from the best level (best first)")
    return a


@dataclass(frozen=True)
class BookFill:
    """What a market order took from one side of a book: ``quantity`` filled (<= asked) at VWAP ``price``
    (NaN if nothing), over ``levels`` levels (the last possibly in part); ``exhausted``: the book ran out
    before the order was filled (the rest expired)."""

    quantity: float
    price: float
    levels: int
    exhausted: bool

    @property
    def notional(self) -> float:
        return self.quantity * self.price if self.quantity > 0.0 else 0.0


def walk_book(side_levels: np.ndarray, quantity: float) -> BookFill:
    """A market order of ``quantity`` walking ``side_levels`` (:func:`levels`: asks for a buy, bids for a
    sell), best first. See the module docstring for the rule."""
    if not quantity > 0.0 or not math.isfinite(quantity):
        raise ValueError(f"a market order walks the book for a quantity > 0 (got {quantity!r})")
    left, notional, used = float(quantity), 0.0, 0
    for price, amount in side_levels:
        if left <= 0.0:
            break
        if amount <= 0.0:
            continue
        take = min(left, float(amount))
        notional += take * float(price)
        left -= take
        used += 1
    filled = float(quantity) - left
    if left <= 1e-12 * float(quantity):
        filled, left = float(quantity), 0.0
    return BookFill(filled, notional / filled if filled > 0.0 else math.nan, used, left > 0.0)


def mid_price(bids: np.ndarray, asks: np.ndarray) -> float:
    """The midpoint of the best bid and ask (NaN if a side is empty)."""
    if not len(bids) or not len(asks):
        return math.nan
    return (float(bids[0, 0]) + float(asks[0, 0])) / 2.0


@dataclass
class QueuePosition:
    """A resting limit order's place in its price level's queue (see the module docstring). ``ahead``: the
    size in front of it; ``remaining``: its own unfilled quantity."""

    side: str  # "buy" or "sell"
    price: float
    remaining: float
    ahead: float

    @classmethod
    def join(cls, side: str, price: float, quantity: float, book_levels: np.ndarray) -> QueuePosition:
        """An order of ``quantity`` at ``price`` placed now: the queue ahead is the size the book shows at that
        price on its own side (``book_levels``: bids for a buy, asks for a sell), 0 if no level is there."""
        if side not in ("buy", "sell"):
            raise ValueError(f"side is 'buy' or 'sell' (got {side!r})")
        if not price > 0.0 or not quantity > 0.0:
            raise ValueError(f"a resting order needs price > 0 and quantity > 0 (got {price!r}, {quantity!r})")
        at = book_levels[np.isclose(book_levels[:, 0], price, rtol=1e-12, atol=0.0)] if len(book_levels) else None
        return cls(side, float(price), float(quantity), float(at[0, 1]) if at is not None and len(at) else 0.0)

    def on_trade(self, price: float, quantity: float) -> float:
        """A trade of ``quantity`` at ``price`` printed; returns how much of this order it filled."""
        if self.remaining <= 0.0 or not quantity > 0.0:
            return 0.0
        through = price < self.price if self.side == "buy" else price > self.price
        if through:
            filled = self.remaining
        elif price == self.price:
            eaten = min(self.ahead, quantity)
            self.ahead -= eaten
            filled = min(self.remaining, quantity - eaten)
        else:
            return 0.0
        self.remaining -= filled
        return filled


def impact_samples(
    bids: np.ndarray, asks: np.ndarray, bar_volume: float, shares: Sequence[float] = (0.001, 0.003, 0.01, 0.03, 0.1)
) -> tuple[np.ndarray, np.ndarray]:
    """Points (volume share, slippage fraction) of one book snapshot: for each ``share`` of ``bar_volume`` a
    buy walks the asks and a sell the bids; the slippage is the VWAP's distance from the mid as a fraction
    of it. Orders the book cannot fill (it runs out) give no point."""
    mid = mid_price(bids, asks)
    xs: list[float] = []
    ys: list[float] = []
    if not (bar_volume > 0.0 and mid > 0.0):
        return np.empty(0), np.empty(0)
    for share in shares:
        q = share * bar_volume
        for side, sign in ((asks, 1.0), (bids, -1.0)):
            f = walk_book(side, q)
            if not f.exhausted:
                xs.append(share)
                ys.append(sign * (f.price / mid - 1.0))
    return np.asarray(xs), np.asarray(ys)


def fit_impact(shares: np.ndarray, slippage: np.ndarray, bps: float) -> float:
    """The volume model's ``impact``: least squares through the origin of ``slippage - bps/1e4`` against
    ``shares`` (volume shares), floored at 0. Raises ValueError without a point of positive share."""
    x, y = np.asarray(shares, dtype=float), np.asarray(slippage, dtype=float) - bps / 1e4
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    if not ok.any():
        raise ValueError("no book sample to fit the impact from: record books with `workbench data record`")
    x, y = x[ok], y[ok]
    return max(float(x @ y / (x @ x)), 0.0)


def affordable(side_levels: np.ndarray, quantity: float, cash: float, rate: float, fixed_fee: float) -> float:
    """The largest quantity <= ``quantity`` a buy walking ``side_levels`` (asks) can pay for with ``cash``:
    its notional × (1 + ``rate``) + ``fixed_fee`` <= cash (rule 4's cash cap, with the book's prices)."""
    budget = (cash - fixed_fee) / (1.0 + rate)
    if budget <= 0.0:
        return 0.0
    got = 0.0
    for price, amount in side_levels:
        take = min(float(amount), quantity - got)
        if take <= 0.0:
            break
        if take * price >= budget:
            return got + budget / float(price)
        budget -= take * float(price)
        got += take
    return got

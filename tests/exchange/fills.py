"""How the loopback exchange fills a resting order in parts, and in which asset it takes the fee.

* Partial fills: Binance fills a resting limit order against the liquidity at its price, so a large
  order fills in parts (status PARTIALLY_FILLED, one trade per part) over time. Here a completed bar
  that trades through the limit fills at most ``book.fill_share`` x the bar's volume of it (rounded down
  to the lot step; None, the default: all of it).
* Fee asset: Binance takes the fee in BNB when the account has "pay fees with BNB" (BNB burn) on and
  holds enough BNB for it, at a 25 % discount, converted at BNB's price in the quote asset; otherwise in
  the quote asset (the loopback's default). ``book.bnb_burn`` holds the API keys with it on; the
  exchange needs a ``BNB<quote>`` market to price it.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .matching import Book, ExOrder

BNB = "BNB"
BNB_DISCOUNT = 0.25  # Binance: spot fees paid in BNB are 25 % lower
LOT = 0.00001  # matching.STEP as a float


def part(book: Book, o: ExOrder, row: Any) -> float:
    """How much of resting order ``o`` the completed bar ``row`` (o/h/l/c/v) fills: the rest, capped at
    ``book.fill_share`` x the bar's volume on the lot step."""
    rest = o.quantity - o.executed
    share = getattr(book, "fill_share", None)
    if share is None:
        return rest
    cap = math.floor(share * float(row[4]) / LOT + 1e-9) * LOT
    return round(min(rest, cap), 8)


def fee(book: Book, account: str, quote: str, notional: float, rate: float) -> tuple[float, str]:
    """(fee, asset) of a trade of ``notional`` quote at fee ``rate``: in BNB under the BNB-burn rule above,
    else in ``quote``."""
    in_quote = notional * rate
    market = BNB + quote
    if quote == BNB or account not in getattr(book, "bnb_burn", ()) or market not in book.prices:
        return in_quote, quote
    in_bnb = in_quote * (1.0 - BNB_DISCOUNT) / book.price(market)
    if book.account(account).get(BNB, 0.0) < in_bnb:
        return in_quote, quote  # not enough BNB: Binance takes the fee from the trade's asset
    return in_bnb, BNB

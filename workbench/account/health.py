"""Counterparty risk: a health score per venue from the sessions' own order and feed history.

Over a lookback window (a day by default), the events of the live sessions trading a venue give:
``orders`` sent, ``retries`` (transient network or exchange errors, retried), ``refusals`` (orders
the exchange refused: insufficient balance, filters), ``errors`` (session errors), ``stale``
(stale-feed episodes) and ``skews`` (clock-skew refusals). The score is 100 for a venue that did
everything asked of it, less the share of attempts that needed a retry (errors count twice), less
the share of orders refused, less 10 points per stale-feed episode and per clock skew; floored at
0. A venue with no history scores 100 (nothing known against it). The account policy's
``min_venue_health`` refuses new entries at a venue scoring below it.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from workbench.account.policy import venue_of

KINDS = ("exchange_retry", "order_rejected", "error", "feed_stale", "clock_skew")
HEALTH_COLUMNS = ("venue", "score", "orders", "retries", "refusals", "errors", "stale", "skews")


@dataclass
class Health:
    venue: str
    orders: int = 0
    retries: int = 0
    refusals: int = 0
    errors: int = 0
    stale: int = 0
    skews: int = 0

    @property
    def score(self) -> float:
        attempts = max(self.orders + self.retries, 1)
        s = 100.0 * (1.0 - min(1.0, (self.retries + 2 * self.errors) / attempts))
        s -= 100.0 * min(1.0, self.refusals / max(self.orders, 1))
        s -= 10.0 * (self.stale + self.skews)
        return max(s, 0.0)

    def row(self) -> dict[str, Any]:
        return {**asdict(self), "score": self.score}

    def add(self, kind: str, data: Any) -> None:
        """Count one of the venue's events (``KINDS``)."""
        if kind == "exchange_retry":
            self.retries += 1
        elif kind == "order_rejected" and isinstance(data, dict) and "error" in data:  # the exchange's refusal
            self.refusals += 1
        elif kind == "error":
            self.errors += 1
        elif kind == "feed_stale":
            self.stale += 1
        elif kind == "clock_skew":
            self.skews += 1


def health_frame(healths: Iterable[Health]) -> pd.DataFrame:
    """One row per venue with ``HEALTH_COLUMNS``, worst first."""
    rows = [h.row() for h in healths]
    return pd.DataFrame(rows, columns=list(HEALTH_COLUMNS)).sort_values("score", kind="stable").reset_index(drop=True)


def venue_health(store: Any, now: datetime, lookback: timedelta = timedelta(days=1)) -> dict[str, Health]:
    """The health of every venue the store's live sessions traded within ``lookback`` before ``now``."""
    since = pd.Timestamp(now - lookback)
    out: dict[str, Health] = {}
    live = store.list_sessions(kind="live")
    for sid in live["id"] if len(live) else []:
        config = store.get_session(sid)["config"]
        if config is None:
            continue
        venue = venue_of(config)
        h = out.setdefault(venue, Health(venue))
        events = store.events(sid, kinds=KINDS)
        events = events[pd.to_datetime(events["time"], utc=True) >= since]
        for kind, data in zip(events["kind"], events["data"]):
            h.add(kind, data)
        orders = store.orders(sid)
        if len(orders) and "created_at" in orders:
            h.orders += int((pd.to_datetime(orders["created_at"], utc=True) >= since).sum())
        else:
            h.orders += len(orders)
    return out

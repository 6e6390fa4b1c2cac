"""Why no trades: strategy signals vs orders placed vs fills, with every blocked signal counted by the
rule that blocked it, per hour.

The :class:`~workbench.engine.trader.Trader` counts into a :class:`WhyCounts` as it steps (a dict
increment when a signal acts, nothing on a bar without one) and keeps it in its snapshot, so the counts
are in the runner state and survive a restart. What is counted:

* ``signal``: a strategy signal that could act: an entry signal of a flat symbol, an exit signal of a
  held one (signals are levels: a held symbol's entry signal is not counted);
* ``order``: an order placed for a signal (it passed the risk engine and went to the broker);
* ``fill``: a fill booked (any order's);
* ``blocked:<rule>``: a signal that placed no order, by why: ``entries_off`` (paused, stopping or a
  stale feed), ``order_in_flight`` (an order of the symbol is still at the exchange), ``halted``
  (an exit signal held by the circuit breaker) or the risk rule that rejected it (``max_position``,
  ``cash``, ``trading_hours``, ``max_order_rate``, ... as in its ``order_rejected`` event).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

SIGNAL, ORDER, FILL = "signal", "order", "fill"
BLOCKED = "blocked:"
ENTRIES_OFF, IN_FLIGHT, HALTED = "entries_off", "order_in_flight", "halted"
#: the width of a time bucket, seconds
BUCKET = 3600


class WhyCounts:
    """Counts by (hour bucket, key); ``add`` takes unix seconds. JSON-able through :meth:`snapshot`."""

    __slots__ = ("counts", "placed")

    def __init__(self, counts: dict[tuple[int, str], int] | None = None):
        self.counts: dict[tuple[int, str], int] = dict(counts or {})
        self.placed = 0  # orders placed by this runner (the session times the bars that placed one)

    def add(self, stamp: int, key: str) -> None:
        k = (stamp - stamp % BUCKET, key)
        c = self.counts
        c[k] = c.get(k, 0) + 1
        if key == ORDER:
            self.placed += 1

    def blocked(self, stamp: int, rule: str) -> None:
        self.add(stamp, BLOCKED + rule)

    def snapshot(self) -> list[list[Any]]:
        return [[b, k, n] for (b, k), n in sorted(self.counts.items())]

    @classmethod
    def restore(cls, rows: Iterable[Iterable[Any]] | None) -> WhyCounts:
        out = cls()
        for b, k, n in rows or ():
            out.counts[(int(b), str(k))] = int(n)
        return out


def why_frame(counts: WhyCounts | Iterable[Iterable[Any]] | None) -> pd.DataFrame:
    """The counts over time: one row per hour (a UTC ``time`` index), columns ``signal``, ``order``,
    ``fill`` then one per blocking rule (``blocked:<rule>``), zeros where nothing was counted."""
    rows = counts.snapshot() if isinstance(counts, WhyCounts) else [list(r) for r in counts or ()]
    if not rows:
        return pd.DataFrame(columns=[SIGNAL, ORDER, FILL], index=pd.DatetimeIndex([], tz="UTC", name="time"),
                            dtype=int)
    long = pd.DataFrame(rows, columns=["time", "key", "n"])
    wide = long.pivot_table(index="time", columns="key", values="n", aggfunc="sum", fill_value=0)
    wide.index = pd.to_datetime(wide.index, unit="s", utc=True).rename("time")
    blocked = sorted(c for c in wide.columns if c.startswith(BLOCKED))
    wide = wide.reindex(columns=[SIGNAL, ORDER, FILL, *blocked], fill_value=0).astype(int)
    wide.columns.name = None
    return wide


def why_summary(counts: WhyCounts | Iterable[Iterable[Any]] | None) -> dict[str, Any]:
    """Totals: ``signals``, ``orders``, ``fills`` and ``blocked`` (rule -> count, most first)."""
    frame = why_frame(counts)
    total = frame.sum()
    blocked = {c.removeprefix(BLOCKED): int(total[c]) for c in frame.columns if c.startswith(BLOCKED)}
    return {"signals": int(total.get(SIGNAL, 0)), "orders": int(total.get(ORDER, 0)),
            "fills": int(total.get(FILL, 0)),
            "blocked": dict(sorted(blocked.items(), key=lambda kv: (-kv[1], kv[0])))}


def session_counts(store: Any, session_id: str) -> WhyCounts | None:
    """The counters in the session's runner state (None: no runner state, e.g. a backtest, or a runner
    state written before the counters existed)."""
    state = store.load_runner_state(session_id)
    if not state or "why" not in state:
        return None
    return WhyCounts.restore(state["why"])


def explain(summary: dict[str, Any]) -> str:
    """One line answering "why no trades" from :func:`why_summary`."""
    s, o, f, blocked = summary["signals"], summary["orders"], summary["fills"], summary["blocked"]
    if not s:
        return "the strategy gave no signal that could act (no entry while flat, no exit while holding)"
    text = f"{s} signals, {o} orders placed, {f} fills"
    if blocked:
        text += "; blocked: " + ", ".join(f"{k} {v}" for k, v in blocked.items())
    return text


__all__ = ["BLOCKED", "BUCKET", "FILL", "ORDER", "SIGNAL", "WhyCounts", "explain", "session_counts", "why_frame",
           "why_summary"]

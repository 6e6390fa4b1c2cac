"""The session log: a session's events (the store's ``events`` rows) with a level, filtered and exported.

Events carry a kind, not a level; :func:`level_of` gives each one (one table, :data:`ERROR_KINDS` and
:data:`WARNING_KINDS`; a state change to ``failed`` is an error). :func:`session_log` reads and filters,
:func:`export` writes CSV or JSON.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pandas as pd

LEVELS = ("info", "warning", "error")
ERROR_KINDS = frozenset({"error", "lease_lost", "order_mismatch", "balance_mismatch", "order_unknown"})
WARNING_KINDS = frozenset({
    "order_rejected", "order_canceled", "orders_canceled", "exchange_retry", "feed_stale", "circuit_breaker_tripped",
    "clock_skew", "entry_paused", "late_fills", "budget_exceeded", "alert", "handed_back", "risk_override", "waiver",
    "storage",
})
COLUMNS = ("time", "level", "kind", "actor", "message", "data", "id")
FORMATS = ("table", "csv", "json")


def level_of(kind: str, data: Any = None) -> str:
    """The level of an event: "error", "warning" or "info"."""
    if kind in ERROR_KINDS or (kind == "state" and isinstance(data, dict) and data.get("to") == "failed"):
        return "error"
    return "warning" if kind in WARNING_KINDS else "info"


def _time(value: Any, name: str) -> pd.Timestamp:
    try:
        t = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ValueError(f"{name}: {value!r} is not a time; use ISO 8601, e.g. 2024-01-08T10:00 "
                         "(UTC unless it names a zone)") from None
    if t is pd.NaT:
        raise ValueError(f"{name}: {value!r} is not a time; use ISO 8601, e.g. 2024-01-08T10:00")
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def filter_log(events: pd.DataFrame, *, kind: str | Iterable[str] | None = None, level: str | None = None,
               text: str | None = None, since: Any = None, until: Any = None) -> pd.DataFrame:
    """``events`` (as ``Store.events`` returns them) as a log (:data:`COLUMNS`, oldest first), only:
    of ``kind`` (one or several), at ``level`` or above, whose kind, message or data contain ``text``
    (case-insensitive), from ``since`` (inclusive) to ``until`` (exclusive)."""
    if level is not None and level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; use one of {', '.join(LEVELS)}")
    out = events.copy()
    if "data" not in out.columns:
        out["data"] = None
    out["level"] = [level_of(k, d) for k, d in zip(out["kind"], out["data"])]
    keep = pd.Series(True, index=out.index)
    if kind is not None:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        keep &= out["kind"].isin(kinds)
    if level is not None:
        keep &= out["level"].map(LEVELS.index) >= LEVELS.index(level)
    if since is not None:
        keep &= out["time"] >= _time(since, "since")
    if until is not None:
        keep &= out["time"] < _time(until, "until")
    if text:
        needle = text.lower()
        hay = (out["kind"].astype(str) + " " + out["message"].astype(str) + " "
               + out["data"].map(lambda d: "" if d is None else json.dumps(d, default=str)))
        keep &= hay.str.lower().str.contains(needle, regex=False)
    return out.loc[keep, [c for c in COLUMNS if c in out.columns]].reset_index(drop=True)


def session_log(store: Any, session_id: str, **filters: Any) -> pd.DataFrame:
    """The session's log (:func:`filter_log` over its events); unknown id: the store's NotFoundError."""
    store.get_session(session_id)
    return filter_log(store.events(session_id), **filters)


def export(log: pd.DataFrame, fmt: str) -> str:
    """``log`` as CSV (``data`` as JSON text) or as a JSON list of records (times ISO 8601)."""
    if fmt not in ("csv", "json"):
        raise ValueError(f"unknown export format {fmt!r}; use csv or json")
    out = log.copy()
    out["time"] = [t.isoformat() for t in out["time"]]
    if fmt == "json":
        return json.dumps(out.to_dict(orient="records"), default=str, indent=1)
    out["data"] = [None if d is None else json.dumps(d, default=str) for d in out["data"]]
    return str(out.to_csv(index=False))


__all__ = ["COLUMNS", "ERROR_KINDS", "FORMATS", "LEVELS", "WARNING_KINDS", "export", "filter_log", "level_of",
           "session_log"]

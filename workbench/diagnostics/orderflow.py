"""The order flow monitor: each order's lifecycle with the time of each step and the latencies between.

Steps (:data:`STEPS`): ``created`` (the order's ``created_at``: its bar's open time for the engine's orders,
so a live order's created-to-sent latency includes the bar's length),
``sent`` and ``acknowledged`` (the exchange broker records them as events :data:`SENT` and :data:`ACKED`
when it sends an order and when the exchange answers; the paper broker's simulated exchange takes an
order at its bar, so for an order without those events both are its creation), ``partly_filled``
(its first fill, if that did not fill it all), ``filled`` (its last fill, if it ended filled),
``canceled`` / ``rejected`` (the event saying so; for a simulated order its bar's time). Orders the
risk engine rejected never reach the broker or the orders table: they are read from their
``order_rejected`` events (created and rejected at their bar, with the rule).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

SENT, ACKED = "order_sent", "order_acknowledged"  # the exchange broker's step events (data: client_id, at)
STEPS = ("created", "sent", "acknowledged", "partly_filled", "filled", "canceled", "rejected")
#: latency columns: name -> (from step, to step); "done" is whichever of filled/canceled/rejected ended it
LATENCIES = {"send_latency": ("created", "sent"), "ack_latency": ("sent", "acknowledged"),
             "fill_latency": ("acknowledged", "first_fill"), "total_latency": ("created", "done")}
COLUMNS = ("client_id", "symbol", "side", "reason", "quantity", "filled_quantity", "status", "rule",
           *STEPS, *LATENCIES)


def step_event(order: Any, kind: str, now: datetime) -> tuple[str, str, dict[str, Any]]:
    """The (kind, message, data) of a step event for ``order`` at wall time ``now`` (the broker records it)."""
    verb = "sent" if kind == SENT else "acknowledged"
    return (kind, f"{order.side.value} {order.quantity:g} {order.symbol} {verb} ({order.client_id})",
            {"client_id": order.client_id, "exchange_id": order.exchange_id, "at": now.isoformat()})


def _event_time(row: Any) -> pd.Timestamp:
    data = row["data"] if isinstance(row["data"], dict) else {}
    at = data.get("at")
    return pd.Timestamp(at) if at else pd.Timestamp(row["time"])


def order_flow(orders: pd.DataFrame, fills: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """One row per order (:data:`COLUMNS`, in creation order): step times (NaT where a step did not
    happen) and latencies (timedeltas) from the store's orders, fills and events frames."""
    by_kind: dict[str, dict[str, pd.Timestamp]] = {k: {} for k in (SENT, ACKED, "order_canceled", "order_rejected")}
    risk_rejects: list[dict[str, Any]] = []
    known = set(orders["client_id"]) if len(orders) else set()
    for _, ev in events[events["kind"].isin(list(by_kind))].iterrows() if len(events) else ():
        data = ev["data"] if isinstance(ev["data"], dict) else {}
        cid = data.get("client_id")
        if cid is None:
            continue
        by_kind[ev["kind"]].setdefault(cid, _event_time(ev))
        if ev["kind"] == "order_rejected" and "rule" in data and cid not in known:
            t = pd.Timestamp(data.get("time") or ev["time"])
            risk_rejects.append({"client_id": cid, "symbol": data.get("symbol"), "side": data.get("side"),
                                 "reason": cid.split(":")[1] if cid.count(":") == 2 else "",
                                 "quantity": data.get("quantity"), "filled_quantity": 0.0, "status": "rejected",
                                 "rule": data["rule"], "created": t, "rejected": t})
    fill_times = fills.groupby("client_id")["time"] if len(fills) else None
    first_qty = fills.groupby("client_id")["quantity"].first() if len(fills) else pd.Series(dtype=float)
    rows: list[dict[str, Any]] = []
    for o in orders.to_dict("records"):
        cid = o["client_id"]
        created = pd.Timestamp(o["created_at"])
        simulated = cid not in by_kind[SENT] and cid not in by_kind[ACKED] and not o.get("exchange_id")
        times = fill_times.get_group(cid) if fill_times is not None and cid in fill_times.groups else None
        first = last = pd.NaT
        if times is not None:
            first, last = pd.Timestamp(times.min()), pd.Timestamp(times.max())
        row = {"client_id": cid, "symbol": o["symbol"], "side": o["side"], "reason": o["reason"],
               "quantity": o["quantity"], "filled_quantity": o["filled_quantity"], "status": o["status"], "rule": "",
               "created": created,
               "sent": created if simulated else by_kind[SENT].get(cid, pd.NaT),
               "acknowledged": created if simulated else by_kind[ACKED].get(cid, pd.NaT),
               "partly_filled": first if times is not None and first_qty[cid] < o["quantity"] * (1 - 1e-9) else pd.NaT,
               "filled": last if o["status"] == "filled" else pd.NaT, "first_fill": first}
        for status in ("canceled", "rejected"):
            ended = pd.NaT
            if o["status"] == status:
                ended = (last if times is not None else created) if simulated else \
                    by_kind[f"order_{status}"].get(cid, pd.Timestamp(o["updated_at"]))
            row[status] = ended
        rows.append(row)
    for r in risk_rejects:
        rows.append({**r, "sent": pd.NaT, "acknowledged": pd.NaT, "partly_filled": pd.NaT, "filled": pd.NaT,
                     "canceled": pd.NaT, "first_fill": pd.NaT})
    if not rows:
        return pd.DataFrame(columns=list(COLUMNS))
    out = pd.DataFrame(rows)
    for c in (*STEPS, "first_fill"):
        out[c] = pd.to_datetime(out[c], utc=True)
    out["done"] = out["filled"].fillna(out["canceled"]).fillna(out["rejected"])
    for name, (a, b) in LATENCIES.items():
        out[name] = out[b] - out[a]
    out = out.sort_values("created", kind="stable").reset_index(drop=True)
    return out[list(COLUMNS)]


def session_order_flow(store: Any, session_id: str) -> pd.DataFrame:
    """:func:`order_flow` of a stored session."""
    store.get_session(session_id)
    return order_flow(store.orders(session_id), store.fills(session_id), store.events(session_id))


def latency_summary(flow: pd.DataFrame) -> pd.DataFrame:
    """Per latency column: count, median, 95th percentile and max, in seconds."""
    rows = []
    for name in LATENCIES:
        s = flow[name].dropna().dt.total_seconds() if len(flow) else pd.Series(dtype=float)
        rows.append({"latency": name, "count": int(len(s)), "median_s": s.median() if len(s) else None,
                     "p95_s": s.quantile(0.95) if len(s) else None, "max_s": s.max() if len(s) else None})
    return pd.DataFrame(rows)


__all__ = ["ACKED", "COLUMNS", "LATENCIES", "SENT", "STEPS", "latency_summary", "order_flow",
           "session_order_flow", "step_event"]

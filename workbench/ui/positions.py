"""The detail view's "P&L and limits" panel: realized/unrealized P&L and risk/reward, the open
positions' ages against ``max_holding_minutes``, and how close each circuit-breaker limit is.

The numbers come from the ledger's trade list (a :class:`~workbench.engine.handle.Snapshot`'s
``trades``, rebuilt from the stored fills for a session run elsewhere) and from the risk engine's
state (:func:`workbench.ui.console.risk_checkpoint`); this module only sums and lays them out.
"""
from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd

from workbench.config import SessionConfig
from workbench.metrics import format_metric
from workbench.ui.common import fmt_num, risk_badge

PCT = lambda v: fmt_num(v, ".2%")  # noqa: E731
CENTS = lambda v: f"{'-' if v < 0 else '+'}${abs(v):,.2f}"  # noqa: E731
NEAR = 0.8  # a limit used to this fraction or more is shown in orange, at 1 or more in red


def pnl_split(trades: pd.DataFrame) -> tuple[float, float]:
    """(realized, unrealized) P&L: the ledger's P&L of the closed trades, and of the open ones (marked
    at the last price, less their entry fees)."""
    if trades.empty:
        return 0.0, 0.0
    is_open = trades["status"].astype(str) == "open"
    pnl = pd.to_numeric(trades["pnl"], errors="coerce").fillna(0.0)
    return float(pnl[~is_open].sum()), float(pnl[is_open].sum())


def position_ages(trades: pd.DataFrame, now: pd.Timestamp, max_minutes: float | None) -> pd.DataFrame:
    """Per open trade: symbol, entry time, age in minutes at ``now`` (the session's clock: its last
    bar), the limit and the share of it used (NaN without a limit)."""
    cols = ["symbol", "entry_time", "age_minutes", "limit_minutes", "usage"]
    if trades.empty:
        return pd.DataFrame(columns=cols)
    held = trades[trades["status"].astype(str) == "open"]
    rows = []
    for t in held.itertuples(index=False):
        entry = pd.Timestamp(t.entry_time)
        entry = entry.tz_localize("UTC") if entry.tzinfo is None else entry
        age = max((now - entry).total_seconds() / 60.0, 0.0)
        limit = math.nan if max_minutes is None else float(max_minutes)
        rows.append({"symbol": t.symbol, "entry_time": entry, "age_minutes": age, "limit_minutes": limit,
                     "usage": age / limit if limit == limit else math.nan})
    return pd.DataFrame(rows, columns=cols)


def breaker_status(risk: dict[str, Any], config: SessionConfig | None) -> pd.DataFrame:
    """Per circuit-breaker limit of the config: the value now (from the risk engine's peak and
    start-of-UTC-day equity), the limit and the share of it used (1 or more trips the breaker)."""
    cols = ["limit", "now", "limit_value", "usage"]
    if config is None:
        return pd.DataFrame(columns=cols)
    cb = config.risk.circuit_breaker
    last, day_start, peak = (float(risk[k]) if risk.get(k) is not None else math.nan
                             for k in ("last_equity", "day_start", "peak"))
    daily = max(1.0 - last / day_start, 0.0) if day_start > 0 else math.nan
    drawdown = max(1.0 - last / peak, 0.0) if peak > 0 else math.nan
    rows = []
    for name, now, limit in (("daily loss", daily, cb.max_daily_loss), ("drawdown", drawdown, cb.max_drawdown)):
        if limit is not None:
            rows.append({"limit": name, "now": now, "limit_value": float(limit),
                         "usage": now / limit if now == now else math.nan})
    return pd.DataFrame(rows, columns=cols)


def _usage(v: float) -> str:
    if v != v:
        return "—"
    color = "#c62828" if v >= 1.0 else "#ef6c00" if v >= NEAR else "#2e7d32"
    return f"<span class='wb-usage' style='color:{color};font-weight:600'>{v:.0%}</span>"


def _rows_html(frame: pd.DataFrame, cells: list[tuple[str, Any]], css: str, empty: str) -> str:
    """A small table whose cells are HTML (``frame_table`` escapes its cells, so coloured usage cannot go there)."""
    if frame.empty:
        return f"<i class='{css}' style='color:#777'>{html.escape(empty)}</i>"
    head = "".join(f"<th style='padding:2px 8px;text-align:left;border-bottom:1px solid #ccc'>{h}</th>"
                   for h, _ in cells)
    body = "".join("<tr>" + "".join(f"<td style='padding:1px 8px'>{fn(r)}</td>" for _, fn in cells) + "</tr>"
                   for r in frame.to_dict("records"))
    return (f"<table class='{css}' style='border-collapse:collapse;font-size:90%'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def limits_html(trades: pd.DataFrame, metrics: dict[str, Any], risk: dict[str, Any], config: SessionConfig | None,
                now: pd.Timestamp) -> str:
    """The panel: P&L split and risk/reward, position ages, breaker thresholds (stable classes
    ``wb-realized``, ``wb-unrealized``, ``wb-risk-reward``, ``wb-ages-table``, ``wb-breakers-table``)."""
    realized, unrealized = pnl_split(trades)
    rr = metrics.get("risk_reward")
    rr_text = format_metric("risk_reward", rr) if rr is not None and rr == rr else "n/a (needs a win and a loss)"
    n_open = int((trades["status"].astype(str) == "open").sum()) if not trades.empty else 0
    n_closed = len(trades) - n_open
    top = (f"<div class='wb-pnl-split' style='font-size:95%'>Realized P&amp;L <b class='wb-realized'>"
           f"{CENTS(realized)}</b> ({n_closed} closed) · Unrealized <b class='wb-unrealized'>"
           f"{CENTS(unrealized)}</b> ({n_open} open) · Risk/reward (avg win / avg loss) "
           f"<b class='wb-risk-reward'>{html.escape(rr_text)}</b></div>")
    max_minutes = config.risk.max_holding_minutes if config is not None else None
    ages = position_ages(trades, now, max_minutes)
    ages_html = _rows_html(ages, [
        ("Symbol", lambda r: html.escape(str(r["symbol"]))),
        ("Opened", lambda r: f"{r['entry_time']:%Y-%m-%d %H:%M}"),
        ("Age", lambda r: f"{r['age_minutes']:,.0f} min"),
        ("Max holding", lambda r: "no limit" if r["limit_minutes"] != r["limit_minutes"]
         else f"{r['limit_minutes']:,.0f} min"),
        ("Used", lambda r: _usage(r["usage"]))], "wb-ages-table", "no open positions")
    breakers = breaker_status(risk, config)
    state = risk_badge(str(risk.get("state") or ""))
    breakers_html = _rows_html(breakers, [
        ("Breaker", lambda r: html.escape(r["limit"])), ("Now", lambda r: PCT(r["now"]) or "—"),
        ("Trips at", lambda r: PCT(r["limit_value"])), ("Used", lambda r: _usage(r["usage"]))],
        "wb-breakers-table", "no daily-loss or drawdown breaker configured")
    return (f"{top}<b style='display:block;margin-top:6px'>Position ages</b>{ages_html}"
            f"<b style='display:block;margin-top:6px'>Circuit breaker {state}</b>{breakers_html}")

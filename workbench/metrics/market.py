"""The market side of a session (issue 15), for the report's "Market" section and the detail view: base
currency and converted markets, direction, leverage, order latency and fill model, trades and P&L by side,
liquidations, and funding and interest totals. Each row only where the config or the trade log has it
(the trade log's ``side``, ``funding``, ``interest`` and ``liquidation`` exits come with shorts and margin).
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from workbench.config import SessionConfig, quote_of

__all__ = ["market_rows", "market_table"]


def _money(v: float, currency: str) -> str:
    return f"{v:,.2f} {currency}"


def market_rows(config: SessionConfig, trades: pd.DataFrame) -> list[tuple[str, str]]:
    """(label, value) rows: the settings that differ from long-only spot in one quote, then what the trades
    did with them; empty for a plain long-only spot session."""
    cur = config.currency
    rows: list[tuple[str, str]] = []
    converted = [s for s in config.symbols if quote_of(s) != cur]
    if converted:
        rows.append(("Base currency", cur))
        rows.append(("Converted markets", ", ".join(f"{s} ({quote_of(s)} → {cur})" for s in converted)))
    direction = config.direction
    if direction != "long":
        rows.append(("Direction", {"short": "short only", "both": "long and short"}.get(direction, direction)))
    margin = config.margin
    if margin is not None:
        rows.append(("Leverage", f"{margin.leverage:g}×"))
    latency = config.latency
    if latency is not None:
        rows.append(("Order latency", f"{latency.ms:g} ms" if latency.ms is not None else f"{latency.bars} bar(s)"))
    depth = config.depth
    if depth is not None:
        rows.append(("Fill model", "order book" if depth.model == "book" else "volume impact"))
    if "side" in trades.columns and (direction != "long" or (trades["side"] == "short").any()):
        for side in ("long", "short"):
            part = trades[trades["side"] == side]
            rows.append((f"{side.capitalize()} trades", f"{len(part):,} · P&L {_money(float(part['pnl'].sum()), cur)}"))
    if margin is not None or (trades.get("exit_reason", pd.Series(dtype=object)) == "liquidation").any():
        n = int((trades["exit_reason"] == "liquidation").sum()) if "exit_reason" in trades.columns else 0
        rows.append(("Liquidations", f"{n:,}"))
    for col, label in (("funding", "Funding (paid < 0)"), ("interest", "Borrow interest (paid < 0)")):
        if col in trades.columns and (margin is not None or trades[col].fillna(0).ne(0).any()):
            rows.append((label, _money(float(trades[col].fillna(0).sum()), cur)))
    return rows


def market_table(result: Any) -> pd.DataFrame:
    """:func:`market_rows` of a backtest result (its ``config`` and ``trades``) as ``item -> value``
    (no rows for long-only spot in one quote)."""
    rows = market_rows(result.config, result.trades)
    return pd.DataFrame({"value": [v for _, v in rows]}, index=pd.Index([k for k, _ in rows], name="item"))


"""Plain-text rendering of the session history table (the guide's "Session History")."""
from __future__ import annotations

import math

import pandas as pd

HEADERS = ("Date", "Strategy", "Type", "P&L", "Return", "Trades", "State", "ID")


def _money(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{'-' if round(x) < 0 else '+'}${abs(x):,.0f}"


def _percent(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x * 100:+.1f}%".replace("-0.0%", "+0.0%")


def _label(name: str) -> str:
    return str(name).replace("_", " ").title()


def format_history(df: pd.DataFrame) -> str:
    """Render :meth:`Store.history` as an aligned text table, e.g. ``2025-09-25  Momentum  Paper  -$340  -3.4%  18``."""
    missing = [c for c in ("date", "strategy", "kind", "pnl", "return", "trades") if c not in df.columns]
    if missing:
        raise ValueError(f"not a history frame: missing column(s) {missing}")
    if df.empty:
        return "no sessions"
    rows = [
        (
            pd.Timestamp(r["date"]).strftime("%Y-%m-%d"),
            _label(r["strategy"]),
            _label(r["kind"]),
            _money(None if pd.isna(r["pnl"]) else float(r["pnl"])),
            _percent(None if pd.isna(r["return"]) else float(r["return"])),
            "n/a" if pd.isna(r["trades"]) else str(int(r["trades"])),
            str(r.get("state", "")),
            str(r.get("id", "")),
        )
        for _, r in df.iterrows()
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(HEADERS)]
    right = {3, 4, 5}

    def line(cells: tuple[str, ...]) -> str:
        padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return "  ".join(padded).rstrip()

    return "\n".join([line(HEADERS), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)])

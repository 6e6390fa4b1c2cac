"""Gap risk measured from the data: where the feed or the exchange stopped, and what the price did across.

A gap is a time between two consecutive bars longer than the bar interval (exchange downtime,
maintenance, a feed outage, a market that closes). Across it a stop cannot fill at its level: it
fills at the first price after the gap (execution semantics, rule 5), so what a position can lose
over a gap is its value times the gap's adverse move. :func:`gap_table` lists the gaps with their
moves, :func:`gap_summary` says which are largest and whether weekends or some hours gap more, and
:func:`gap_exposure` puts held positions against the worst drop seen across a gap.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from workbench.diagnostics.validator import gaps

GAP_COLUMNS = ("after", "before", "duration", "missing", "move")


def gap_table(bars: pd.DataFrame, timeframe: str | pd.Timedelta) -> pd.DataFrame:
    """One row per gap: ``after``/``before`` (the bars around it), ``duration``, ``missing`` bars, and
    ``move``: the next bar's open over the last close before the gap, less 1 (-0.04 = 4 % lower)."""
    g = gaps(bars, timeframe)
    if g.empty:
        return pd.DataFrame(columns=list(GAP_COLUMNS))
    frame = bars[~bars.index.duplicated(keep="last")].sort_index()
    close = frame["close"].reindex(g["after"]).to_numpy(dtype=float)
    opens = frame["open"].reindex(g["before"]).to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        move = np.where(close > 0, opens / close - 1.0, np.nan)
    return pd.DataFrame({"after": g["after"], "before": g["before"], "duration": g["before"] - g["after"],
                         "missing": g["missing"], "move": move})


def gap_summary(table: pd.DataFrame, top: int = 5) -> dict[str, pd.DataFrame]:
    """The ``top`` longest gaps, the ``top`` largest moves across one, and the gaps by weekday of their
    start (count, mean absolute move, worst drop): the weekend and maintenance effect."""
    if table.empty:
        empty = pd.DataFrame(columns=list(GAP_COLUMNS))
        return {"longest": empty, "largest_moves": empty,
                "by_weekday": pd.DataFrame(columns=["weekday", "gaps", "mean_abs_move", "worst_drop"])}
    t = table.assign(abs_move=table["move"].abs())
    day = pd.DatetimeIndex(t["after"]).day_name()
    by = t.groupby(day).agg(gaps=("move", "size"), mean_abs_move=("abs_move", "mean"), worst_drop=("move", "min"))
    order = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    by = by.reindex([d for d in order if d in by.index]).rename_axis("weekday").reset_index()
    return {"longest": t.nlargest(top, "duration")[list(GAP_COLUMNS)],
            "largest_moves": t.nlargest(top, "abs_move")[list(GAP_COLUMNS)], "by_weekday": by}


def gap_exposure(values: Mapping[str, float], bars: Mapping[str, pd.DataFrame],
                 timeframe: str | pd.Timedelta) -> pd.DataFrame:
    """Per held symbol: its ``value``, the number of ``gaps`` in its bars, the ``worst_drop`` across one
    (a fraction, <= 0) and ``gap_loss``: what the position would lose over that gap again."""
    rows = []
    for symbol, value in values.items():
        b = bars.get(symbol)
        table = gap_table(b, timeframe) if b is not None and len(b) > 1 else pd.DataFrame(columns=list(GAP_COLUMNS))
        worst = float(min(table["move"].min(), 0.0)) if len(table) else 0.0
        rows.append({"symbol": symbol, "value": float(value), "gaps": len(table), "worst_drop": worst,
                     "gap_loss": float(value) * -worst})
    return pd.DataFrame(rows, columns=["symbol", "value", "gaps", "worst_drop", "gap_loss"])

"""The fidelity twin of a paper or live session: its config backtested on the bars it actually saw, and
how far the session strayed from it (the guide's "ensure paper results predict live performance").

:func:`fidelity` reads the session from the store, loads its symbols' bars from ``config.start`` up to
the last bar it processed (its runner checkpoint, else its newest equity point; a config without a
start: from its first equity point): the live bars the session was handed, as its feed stored them
(:mod:`workbench.store.session_bars`), else from the session's own data source (the replayed sample or
CSV data, or the exchange's candles through the bars cache), backtests the stored config on them
and matches the two trade lists by symbol and entry time:

* ``matched``: both traded; ``entry_bps``/``exit_bps`` are the session's fill price against the
  twin's, in basis points of the twin's (positive: the session paid or got more);
* ``missing``: the twin traded, the session did not; ``extra``: the session traded, the twin did not;
* the **P&L gap** is the session's equity minus the twin's at that last bar (same starting balance),
  ``trade_pnl_gap`` the same over the matched trades' P&L.

It costs one backtest, so views recompute it on demand (a refresh) and while the session runs. It
also records the session's market regime (:mod:`workbench.metrics.regime`) when the store has none
(a live session's bars are only fetched here).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.domain import SessionKind

if TYPE_CHECKING:
    from workbench.backtest.result import BacktestResult
    from workbench.store import Store

__all__ = ["FIDELITY_COLUMNS", "Fidelity", "fidelity", "fidelity_summary", "compare_trades"]

FIDELITY_COLUMNS: tuple[str, ...] = (
    "symbol", "entry_time", "match", "session_entry", "twin_entry", "entry_bps", "session_exit", "twin_exit",
    "exit_bps", "session_pnl", "twin_pnl", "pnl_gap",
)
_KEY = ["symbol", "entry_time"]


@dataclass
class Fidelity:
    """A session against its twin: ``trades`` (:data:`FIDELITY_COLUMNS`, one row per trade of either),
    ``summary`` (counts, mean price differences, P&L gap) and the twin's backtest ``twin``."""

    session_id: str
    upto: pd.Timestamp
    trades: pd.DataFrame
    summary: dict[str, Any]
    twin: BacktestResult | None = field(default=None, repr=False)

    @property
    def identical(self) -> bool:
        """No missing or extra trade, every fill at the twin's price, no P&L gap (within 1e-6 of the equity)."""
        s = self.summary
        tol = 1e-6 * max(abs(s["twin_equity"]), 1.0)
        prices = self.trades[["entry_bps", "exit_bps"]].abs().max().max() if len(self.trades) else 0.0
        return (s["missing"] == 0 and s["extra"] == 0 and abs(s["pnl_gap"]) <= tol
                and not (np.isfinite(prices) and prices > 1e-6))

    def text(self) -> str:
        """One line for a view or a report."""
        s = self.summary
        return (f"twin up to {self.upto:%Y-%m-%d %H:%M} UTC: {s['matched']} trades matched, {s['missing']} missing, "
                f"{s['extra']} extra; entry {_num(s['entry_bps'])} bps, exit {_num(s['exit_bps'])} bps "
                f"from the twin's prices; P&L gap {s['pnl_gap']:+,.2f} (session {s['session_pnl']:+,.2f}, "
                f"twin {s['twin_pnl']:+,.2f})")


def _num(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:+.2f}"


def compare_trades(session: pd.DataFrame, twin: pd.DataFrame) -> pd.DataFrame:
    """The two trade logs (``TRADE_COLUMNS``) matched by symbol and entry time: :data:`FIDELITY_COLUMNS`,
    in entry time order."""
    def side(tr: pd.DataFrame, who: str) -> pd.DataFrame:
        out = pd.DataFrame({"symbol": tr["symbol"].astype(str).to_numpy(),
                            "entry_time": pd.to_datetime(tr["entry_time"], utc=True).to_numpy()})
        out["entry_time"] = pd.to_datetime(out["entry_time"], utc=True)
        for col, source in (("entry", "entry_price"), ("exit", "exit_price"), ("pnl", "pnl")):
            out[f"{who}_{col}"] = pd.to_numeric(tr[source], errors="coerce").to_numpy()
        out[f"_{who}"] = True
        return out

    both = side(session, "session").merge(side(twin, "twin"), on=_KEY, how="outer", sort=False)
    ours, theirs = both.pop("_session").eq(True), both.pop("_twin").eq(True)
    both["match"] = np.where(ours & theirs, "matched", np.where(ours, "extra", "missing"))
    with np.errstate(invalid="ignore", divide="ignore"):
        both["entry_bps"] = (both["session_entry"] / both["twin_entry"] - 1.0) * 1e4
        both["exit_bps"] = (both["session_exit"] / both["twin_exit"] - 1.0) * 1e4
    both["pnl_gap"] = both["session_pnl"] - both["twin_pnl"]
    both = both.sort_values(_KEY, kind="stable").reset_index(drop=True)
    return both[list(FIDELITY_COLUMNS)]


def _session_trades(store: Store, session_id: str, row: Mapping[str, Any], marks: dict[str, float]) -> pd.DataFrame:
    """The session's trades: as saved when it ended, else rebuilt from its fills so far (open ones
    valued at ``marks``, the last closes)."""
    from workbench.domain import TRADE_COLUMNS, SessionState

    if SessionState(row["state"]).is_final:
        saved = store.trades(session_id)
        if len(saved) or not len(store.fills(session_id)):
            return saved
    from workbench.execution.ledger import Portfolio

    saved = (store.load_runner_state(session_id) or {}).get("portfolio")  # its carrying costs (not fills)
    pf = Portfolio.replay_stored(float(row["initial_balance"]), store.fills(session_id), store.orders(session_id),
                                 saved)
    pf.mark(marks)
    return pd.DataFrame(pf.trade_log(include_open=True), columns=list(TRADE_COLUMNS))


def _last_bar(store: Store, session_id: str) -> pd.Timestamp | None:
    """The last bar the session processed: its runner checkpoint's, else its newest equity point's."""
    last = (store.load_runner_state(session_id) or {}).get("last_bar")
    if last is None:
        curve = store.equity(session_id, last=1)
        last = curve.index[-1] if len(curve) else None
    if last is None:
        return None
    ts = pd.Timestamp(last)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def fidelity(session_id: str, store: Store | None = None, *,
             bars: Mapping[str, pd.DataFrame] | None = None) -> Fidelity:
    """The fidelity twin of paper or live session ``session_id`` (see the module docstring); ``bars``
    (symbol -> frame) instead of the session's data source, e.g. in a notebook that has them."""
    from workbench.backtest import run_backtest
    from workbench.metrics.regime import regime_columns
    from workbench.store import Store

    store = store if store is not None else Store()
    row = store.get_session(session_id)
    config = row.get("config")
    if config is None:
        raise ValueError(f"session {session_id}: its stored config does not load ({row.get('config_error')})")
    if config.kind not in (SessionKind.PAPER, SessionKind.LIVE):
        raise ValueError(f"session {session_id} is a {config.kind.value}; a fidelity twin is for paper and live "
                         "sessions (a backtest is its own twin)")
    upto = _last_bar(store, session_id)
    if upto is None:
        raise ValueError(f"session {session_id} has processed no bar yet; its twin needs at least one")
    start = config.start
    if start is None:  # open-ended: from the first bar it valued (its first equity point)
        first = store.equity(session_id, last=None)
        start = first.index[0].to_pydatetime() if len(first) else None
    twin_config = config.model_copy(update={"start": start, "end": upto.to_pydatetime()})
    frames = {s: (bars[s] if bars is not None else _seen_bars(store, session_id, config, s, start, upto))
              for s in config.symbols}
    twin = run_backtest(twin_config, frames)
    marks = {s: float(f["close"].iloc[-1]) for s, f in twin.bars.items() if len(f)}
    trades = compare_trades(_session_trades(store, session_id, row, marks), twin.trades)
    curve = store.equity(session_id, last=1)
    if len(curve) and curve.index[-1] > upto:  # a running session's equity can be ahead of its checkpoint
        curve = store.equity(session_id)["equity"].loc[:upto].to_frame()
    initial = float(row["initial_balance"])
    session_equity = float(curve["equity"].iloc[-1]) if len(curve) else initial
    twin_equity = float(twin.equity.iloc[-1])
    matched = trades[trades["match"] == "matched"]
    summary: dict[str, Any] = {
        "matched": int(len(matched)), "missing": int((trades["match"] == "missing").sum()),
        "extra": int((trades["match"] == "extra").sum()),
        "entry_bps": float(matched["entry_bps"].mean()) if len(matched) else math.nan,
        "exit_bps": float(matched["exit_bps"].mean()) if matched["exit_bps"].notna().any() else math.nan,
        "session_pnl": session_equity - initial, "twin_pnl": twin_equity - initial,
        "pnl_gap": session_equity - twin_equity, "trade_pnl_gap": float(matched["pnl_gap"].sum()),
        "session_equity": session_equity, "twin_equity": twin_equity,
    }
    if not row.get("regime"):
        cols = regime_columns(twin.bars)
        if cols:
            store.update_session(session_id, **cols)
    return Fidelity(session_id, upto, trades, summary, twin)


def _seen_bars(store: Store, session_id: str, config: Any, symbol: str, start: Any, upto: pd.Timestamp
               ) -> pd.DataFrame:
    """The bars of ``symbol`` the session saw: those its live feed stored, else its data source's."""
    from workbench.data import load_bars
    from workbench.store.session_bars import session_bars

    kept = session_bars(store, session_id, symbol, start, upto)
    return kept if len(kept) else load_bars(config.data, symbol, start, upto)


def fidelity_summary(result: Fidelity) -> dict[str, Any]:
    """``result.summary`` plus the session, the last bar and ``identical``, JSON-ready (NaN -> None)."""
    out: dict[str, Any] = {"session_id": result.session_id, "upto": result.upto.isoformat(),
                           "identical": result.identical}
    for k, v in result.summary.items():
        out[k] = None if isinstance(v, float) and not math.isfinite(v) else v
    return out


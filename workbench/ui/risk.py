"""Risk dashboard: total exposure, the account policy's limits with their usage, sector and venue
breakdowns, per-symbol concentration, correlation of held symbols, liquidity, volatility exposure,
per-session limit usage and every session's circuit breaker, over all active sessions. The numbers come from
:func:`workbench.engine.exposure.risk_report`; this module only lays them out."""
from __future__ import annotations

import html
from typing import Any

import ipywidgets as W
import pandas as pd

from workbench.engine.exposure import RiskReport, risk_report
from workbench.store import Store
from workbench.ui.common import Ticker, button, fmt_num, fmt_time, frame_table, message, open_store

PCT = lambda v: fmt_num(v, ".1%")  # noqa: E731
MONEY = lambda v: fmt_num(v, ",.2f")  # noqa: E731


def _indexed(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    return frame.rename_axis(name).reset_index()


def correlation_html(corr: pd.DataFrame) -> str:
    """A correlation matrix as an HTML table shaded by value."""
    if corr.empty:
        return "<i style='color:#777'>needs two or more held symbols</i>"
    head = "".join(f"<th style='padding:2px 8px'>{html.escape(str(c))}</th>" for c in corr.columns)
    rows = []
    for sym, r in corr.iterrows():
        cells = []
        for v in r:
            shade = "" if v != v else f"background:rgba({'214,39,40' if v > 0 else '31,119,180'},{abs(v) * 0.6:.2f})"
            cells.append(f"<td style='padding:2px 8px;text-align:right;{shade}'>{fmt_num(v, '.2f')}</td>")
        head = f"<th style='padding:2px 8px;text-align:left'>{html.escape(str(sym))}</th>"
        rows.append(f"<tr>{head}{''.join(cells)}</tr>")
    return f"<table style='border-collapse:collapse;font-size:90%'><tr><th></th>{head}</tr>{''.join(rows)}</table>"


class RiskView:
    """Risk dashboard; display ``view.widget``. ``report`` is the last RiskReport."""

    ticker: Ticker

    def __init__(self, store: Store | str | None = None, *, refresh: float = 5.0, window: int = 60):
        self.store = open_store(store)
        self.window = window
        self.report: RiskReport | None = None
        names = ("summary", "accounts", "sectors", "venues", "concentration", "correlation", "liquidity", "volatility",
                 "limits", "breakers", "gaps", "events")
        self.parts = {n: W.HTML() for n in names}
        for n, w in self.parts.items():
            w.add_class(f"wb-risk-{n}")
        self.message = W.HTML()
        self.message.add_class("wb-risk-message")
        self.refresh_button = button("Refresh", "wb-btn-risk-refresh", icon="refresh")
        self.refresh_button.on_click(lambda _: self.ticker.tick())
        sec = lambda t: W.HTML(f"<b style='display:block;margin-top:8px'>{t}</b>")  # noqa: E731
        p = self.parts
        self.widget = W.VBox([
            W.HBox([W.HTML("<h3 style='margin:4px 12px 4px 0'>Portfolio Risk</h3>"), self.refresh_button]),
            p["summary"], self.message,
            sec("Account limits (risk policy)"), p["accounts"],
            W.HBox([W.VBox([sec("Exposure by sector"), p["sectors"]]),
                    W.VBox([sec("Exposure by venue"), p["venues"]], layout={"margin": "0 0 0 24px"})]),
            W.HBox([W.VBox([sec("Concentration by symbol"), p["concentration"]]),
                    W.VBox([sec("Correlation of held symbols (bar returns)"), p["correlation"]],
                           layout={"margin": "0 0 0 24px"})]),
            W.HBox([W.VBox([sec(f"Liquidity (position vs mean volume of the last {window} bars)"), p["liquidity"]]),
                    W.VBox([sec("Volatility exposure (one-sigma day)"), p["volatility"]],
                           layout={"margin": "0 0 0 24px"})]),
            sec("Limit usage per session"), p["limits"],
            sec("Circuit breakers"), p["breakers"],
            sec("Gap exposure (worst drop across a gap in the loaded bars: a stop fills after the gap)"), p["gaps"],
            sec("Event windows ahead (no new entries inside them)"), p["events"],
        ], layout={"border": "1px solid #ddd", "padding": "8px"})
        self.widget.add_class("wb-risk")
        self.ticker = Ticker(self.refresh, refresh, on_error=lambda e: self._show(f"refresh failed: {e}"))
        self.refresh()
        self.ticker.start()

    def refresh(self) -> None:
        """Recompute the report and redraw."""
        r = self.report = risk_report(self.store, window=self.window)
        p = self.parts
        share = r.total_exposure / r.total_equity if r.total_equity > 0 else float("nan")
        n_sessions = r.positions["session_id"].nunique()
        p["summary"].value = (
            f"<div style='font-size:110%'>Total exposure <b class='wb-total-exposure'>${r.total_exposure:,.2f}</b>"
            f" of equity ${r.total_equity:,.2f} ({PCT(share) or 'n/a'}) in {len(r.concentration)} symbol(s) "
            f"held by {n_sessions} session(s)</div>")
        p["concentration"].value = frame_table(
            _indexed(r.concentration, "symbol"),
            [("symbol", "Symbol", str), ("value", "Value", MONEY), ("share_of_exposure", "Of exposure", PCT),
             ("share_of_equity", "Of equity", PCT)], "wb-risk-concentration-table", empty="nothing held")
        p["correlation"].value = correlation_html(r.correlation)
        p["liquidity"].value = frame_table(
            _indexed(r.liquidity, "symbol"),
            [("symbol", "Symbol", str), ("quantity", "Held", fmt_num), ("avg_volume", "Mean bar volume", fmt_num),
             ("share", "Held / bar volume", PCT)], "wb-risk-liquidity-table", empty="nothing held")
        p["volatility"].value = frame_table(
            _indexed(r.volatility, "symbol"),
            [("symbol", "Symbol", str), ("value", "Value", MONEY), ("volatility", "Daily vol", PCT),
             ("daily_move", "1σ day", MONEY)], "wb-risk-volatility-table", empty="nothing held")
        p["limits"].value = frame_table(
            r.limits, [("session_id", "Session", str), ("limit", "Limit", str), ("used", "Used", fmt_num),
                       ("limit_value", "Limit value", fmt_num), ("usage", "Usage", PCT)],
            "wb-risk-limits-table", empty="no position limits set on the active sessions")
        p["accounts"].value = frame_table(
            r.accounts, [("account", "Account", str), ("rule", "Rule", str), ("key", "Of", str),
                         ("limit", "Limit", MONEY), ("used", "Used", MONEY), ("share", "Usage", PCT),
                         ("currency", "Currency", str)],
            "wb-risk-accounts-table", empty="no account-wide limits: write them in the risk policy file "
            "(risk-policy.yaml in the workbench home)")
        p["sectors"].value = frame_table(
            r.sectors, [("sector", "Sector", str), ("value", "Value", MONEY),
                        ("share_of_exposure", "Of exposure", PCT)],
            "wb-risk-sectors-table", empty="nothing held")
        p["venues"].value = frame_table(
            r.venues, [("account", "Account", str), ("venue", "Venue", str), ("value", "Value", MONEY),
                       ("health", "Health (0-100)", lambda v: fmt_num(v, ".0f"))],
            "wb-risk-venues-table", empty="no active sessions")
        p["breakers"].value = frame_table(
            r.breakers, [("session_id", "Session", str), ("state", "State", str), ("breaker", "Breaker", str),
                         ("day_pnl", "Day P&L", MONEY), ("drawdown", "Drawdown", PCT)],
            "wb-risk-breakers-table", empty="no active sessions")
        p["gaps"].value = frame_table(
            r.gaps, [("symbol", "Symbol", str), ("value", "Value", MONEY), ("gaps", "Gaps", fmt_num),
                     ("worst_drop", "Worst drop", PCT), ("gap_loss", "Loss if repeated", MONEY)],
            "wb-risk-gaps-table", empty="nothing held, or no bars loaded")
        p["events"].value = frame_table(
            r.events, [("name", "Event", str), ("start", "Starts", fmt_time), ("end", "Ends", fmt_time),
                       ("now", "Under way", lambda v: "yes" if v else ""), ("sessions", "Sessions", str)],
            "wb-risk-events-table", empty="no event windows ahead in the active sessions' configs")
        self._show("; ".join(r.problems), "error")

    def _show(self, text: str, kind: str = "error") -> None:
        self.message.value = message(text, kind)

    def close(self) -> None:
        self.ticker.stop()
        self.widget.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def risk(store: Store | str | None = None, **kwargs: Any) -> RiskView:
    """The risk dashboard (displays itself in Jupyter)."""
    return RiskView(store, **kwargs)

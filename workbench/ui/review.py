"""The "Trade review" tab of the session detail view: excursions, timing, P&L against holding time and
win/loss attribution (by symbol, hour of day, exit reason and market regime) of the session's trades.

The numbers are :mod:`workbench.review`'s; this module only lays them out. :func:`attach_review` adds
the tab to a detail view's tabs and builds it the first time it is selected (the detail page stays fast);
its Refresh button reviews the trades so far again (a running session's). No numba, vectorbt or ccxt.
"""
from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as W
import pandas as pd
import plotly.graph_objects as go

from workbench.review import (
    ATTRIBUTION_KEYS,
    attribution,
    excursion_figure,
    excursion_summary,
    pnl_vs_holding_figure,
    review_trades,
)
from workbench.ui.charts import figure_widget
from workbench.ui.common import button, fmt_num, fmt_time, frame_table, lazy_tab, message

TITLE = "Trade review"
Bars = dict[str, pd.DataFrame]


def _PCT(v: Any) -> str:
    return fmt_num(v, ".2%")


def _MONEY(v: Any) -> str:
    return fmt_num(v, ",.2f")


def _RATIO(v: Any) -> str:
    return fmt_num(v, ".2f")


BY_LABELS = {"symbol": "Symbol", "hour": "Hour of day", "exit_reason": "Exit reason", "regime": "Market regime"}
SUMMARY_LABELS = {"mae_pct": ("MAE (% of entry)", _PCT), "mfe_pct": ("MFE (% of entry)", _PCT),
                  "entry_timing": ("Entry timing (1 = bought at the low)", _RATIO),
                  "exit_timing": ("Exit timing (1 = sold at the high)", _RATIO),
                  "capture": ("Capture (share of the range kept)", _RATIO),
                  "holding_hours": ("Holding time (h)", _RATIO)}
Columns = list[tuple[str, str, Callable[[Any], str]]]
TRADE_COLUMNS: Columns = [
    ("symbol", "Symbol", str), ("entry_time", "Entry", fmt_time), ("exit_time", "Exit", fmt_time),
    ("pnl", "P&L", _MONEY), ("mae_pct", "MAE", _PCT), ("mfe_pct", "MFE", _PCT),
    ("entry_timing", "Entry timing", _RATIO), ("exit_timing", "Exit timing", _RATIO), ("capture", "Capture", _RATIO),
    ("hour", "Hour", str), ("regime", "Regime", str), ("exit_reason", "Reason", lambda v: v or "")]


def _attribution_columns(by: str) -> Columns:
    return [(by, BY_LABELS[by], str), ("trades", "Trades", str), ("wins", "Wins", str), ("win_rate", "Win rate", _PCT),
            ("pnl", "P&L", _MONEY), ("avg_pnl", "Avg P&L", _MONEY), ("avg_return", "Avg return", _PCT),
            ("profit_factor", "Profit factor", _RATIO)]


class TradeReview:
    """The review of the trades ``trades()`` returns over the bars ``bars(symbols, upto)`` loads; display
    ``widget``. ``timezone``: the session's, for the hour of day."""

    def __init__(self, trades: Callable[[], pd.DataFrame], bars: Callable[[list[str], pd.Timestamp], Bars], *,
                 timezone: str = "UTC"):
        self._trades, self._load, self.timezone = trades, bars, timezone
        self._bars: Bars = {}
        self.reviewed = pd.DataFrame()
        self.status = W.HTML()
        self.summary_html = W.HTML()
        self.attribution_html = W.HTML()
        self.trades_html = W.HTML()
        self.by = W.ToggleButtons(options=[(BY_LABELS[k], k) for k in ATTRIBUTION_KEYS], value="symbol",
                                  description="By", style={"button_width": "110px"})
        self.by.add_class("wb-review-by")
        self.by.observe(lambda _ch: self._attribution(), names="value")
        self.refresh_button = button("Refresh", "wb-review-refresh", icon="refresh")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.holding_fig: go.FigureWidget | None = None  # built with the first trades
        self.mae_fig: go.FigureWidget | None = None
        self.figures = figs = W.HBox([], layout={"flex_flow": "row wrap"})
        for w, css in ((self.summary_html, "wb-review-summary"), (self.attribution_html, "wb-review-attribution"),
                       (self.trades_html, "wb-review-trades"), (figs, "wb-review-figures")):
            w.add_class(css)
        self.widget = W.VBox([W.HBox([self.refresh_button, self.status]), W.HTML("<b>Excursions and timing</b>"),
                              self.summary_html, W.HTML("<b>Wins and losses by</b>"), self.by,
                              self.attribution_html, figs, W.HTML("<b>Trade by trade</b> (newest first)"),
                              W.VBox([self.trades_html], layout={"max_height": "320px", "overflow": "auto"})])
        self.widget.add_class("wb-review")
        self.refresh()

    def _bars_for(self, trades: pd.DataFrame) -> tuple[Bars, str]:
        symbols = sorted(set(trades["symbol"]))
        upto = pd.to_datetime(pd.concat([trades["entry_time"], trades["exit_time"]]), utc=True).max()
        stale = [s for s in symbols if s not in self._bars or self._bars[s].index[-1] < upto]
        problem = ""
        if stale:
            try:
                self._bars.update(self._load(stale, upto))
            except Exception as e:  # no bars: the attribution still works, the excursions stay blank
                why = str(e).splitlines()[0] if str(e) else type(e).__name__
                problem = (f"no bars for {', '.join(stale)} ({why}): excursions, timing and regime need bar highs "
                           "and lows")
        return self._bars, problem

    def refresh(self) -> None:
        """Review the trades so far again (and load the bars they need)."""
        trades = self._trades()
        if trades is None or not len(trades) or "entry_time" not in trades.columns:
            self.status.value = message("no trades yet: the review appears with the first trade", "info")
            return
        bars, problem = self._bars_for(trades)
        self.reviewed = review_trades(trades, bars, timezone=self.timezone)
        closed = int((self.reviewed["status"] == "closed").sum()) if "status" in self.reviewed else len(trades)
        self.status.value = message(problem, "error") if problem else message(
            f"{len(trades)} trades ({closed} closed) · hours in {html.escape(self.timezone)}")
        summary = excursion_summary(self.reviewed)
        rows = [{"measure": SUMMARY_LABELS[k][0], **{c: SUMMARY_LABELS[k][1](v) for c, v in summary.loc[k].items()}}
                for k in summary.index]
        self.summary_html.value = frame_table(rows, [("measure", "", str), ("winners", "Winners", str),
                                                     ("losers", "Losers", str), ("all", "All", str)],
                                              "wb-review-summary-table")
        self._attribution()
        self._figures(pnl_vs_holding_figure(self.reviewed), excursion_figure(self.reviewed))
        newest = self.reviewed.sort_values("entry_time", ascending=False).head(100)
        self.trades_html.value = frame_table(newest, TRADE_COLUMNS, "wb-review-trades-table")

    def _attribution(self) -> None:
        if self.reviewed.empty:
            return
        by = self.by.value
        table = attribution(self.reviewed, by).reset_index()
        self.attribution_html.value = frame_table(table, _attribution_columns(by), "wb-review-attribution-table",
                                                  empty="no closed trades yet")

    def _figures(self, holding: go.Figure, mae: go.Figure) -> None:
        old = self.figures.children
        for fig in (holding, mae):
            fig.update_layout(width=520)
        self.holding_fig, self.mae_fig = figure_widget(holding), figure_widget(mae)
        self.figures.children = (self.holding_fig, self.mae_fig)
        for w in old:
            w.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def view_bars(view: Any) -> Callable[[list[str], pd.Timestamp], Bars]:
    """A bar loader for a detail view's session: its configured data over its range (to ``upto`` when open-ended)."""
    def load(symbols: list[str], upto: pd.Timestamp) -> Bars:
        from workbench.data.currency import load_in_base

        config = view.config
        if config is None:
            raise ValueError("the session's config no longer validates")
        end = config.end if config.end is not None else upto
        return {s: load_in_base(config.data, s, config.currency, config.start, end) for s in symbols}  # as its trades
    return load


def attach_review(tabs: W.Tab, view: Any) -> W.VBox:
    """Add the "Trade review" tab to a detail view's ``tabs``; its content is built when first selected."""
    def make() -> W.Widget:
        config = view.config
        tz = config.time.timezone if config is not None else "UTC"
        view.review = TradeReview(lambda: getattr(view, "trades", None), view_bars(view), timezone=tz)
        return view.review.widget

    view.review = None
    return lazy_tab(tabs, TITLE, "wb-review-tab", make, "trade review")

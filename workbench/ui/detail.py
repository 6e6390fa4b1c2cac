"""Session detail: performance and risk metrics, trade history, event log, and live charts of
equity/drawdown and price with fills, updated while the session runs; the P&L split, position ages
and breaker usage (:mod:`workbench.ui.positions`). While a session runs, here or elsewhere, its
trades so far come from the handle's snapshot (the ledger's replay of the stored fills).

A :class:`~workbench.ui.common.Ticker` on the kernel's loop reads only what is new in the store
every ``refresh`` seconds (equity points after the last one seen, fills after the last count) and
pushes it into bounded :class:`~workbench.ui.livechart.LiveChart` windows; the tables are redrawn
every ``tables_every`` ticks. ``close()`` stops all of it.
"""
from __future__ import annotations

import html
import math
from array import array
from collections.abc import Callable
from typing import Any

import ipywidgets as W
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.domain import SessionState
from workbench.engine.handle import SessionHandle, handle_for
from workbench.execution.legs import market_symbol
from workbench.metrics import METRIC_LABELS, compute_metrics, drawdown_series, empty_trades, format_metric
from workbench.metrics.market import market_rows
from workbench.store import Store
from workbench.ui.clone import LineagePanel
from workbench.ui.common import (
    RISK_COLORS,
    RISK_LABELS,
    RISK_STATE_SHOWN,
    Ticker,
    fmt_num,
    fmt_time,
    frame_table,
    message,
    open_store,
    state_badge,
)
from workbench.ui.console import risk_checkpoint
from workbench.ui.diagnostics import attach_diagnostics
from workbench.ui.fidelity import attach_fidelity
from workbench.ui.legs import attach_legs
from workbench.ui.livechart import LiveChart
from workbench.ui.positions import limits_html
from workbench.ui.review import attach_review

PERFORMANCE = ("pnl", "total_return", "annualized_return", "sharpe_ratio", "sortino_ratio", "win_rate",
               "profit_factor", "avg_win", "avg_loss", "risk_reward", "trade_count", "avg_trade_duration_hours",
               "exposure")
RISK = ("max_drawdown", "volatility", "value_at_risk_1d", "expected_shortfall_1d", "value_at_risk",
        "expected_shortfall", "calmar_ratio", "worst_trade")
EQ, DD, PRICE, BUYS, SELLS = 0, 1, 0, 1, 2
AHEAD = 2000  # bars the price chart keeps past the newest equity point (_load_prices)
Columns = list[tuple[str, str, Callable[[Any], str]]]
TRADE_COLUMNS: Columns = [
    ("symbol", "Symbol", str), ("entry_time", "Entry", fmt_time), ("exit_time", "Exit", fmt_time),
    ("entry_price", "Entry price", fmt_num), ("exit_price", "Exit price", fmt_num), ("quantity", "Qty", fmt_num),
    ("pnl", "P&L", lambda v: fmt_num(v, ",.2f")), ("return_pct", "Return", lambda v: fmt_num(v, ".2%")),
    ("commission", "Commission", lambda v: fmt_num(v, ",.2f")), ("slippage", "Slippage", lambda v: fmt_num(v, ",.2f")),
    ("exit_reason", "Reason", lambda v: v or ""), ("status", "Status", str)]
#: the trade log's shorts, margin and currency columns, shown where it has them
MARKET_TRADE_COLUMNS: Columns = [
    ("side", "Side", str), ("market_entry_price", "Market entry", fmt_num),
    ("market_exit_price", "Market exit", fmt_num),
    ("funding", "Funding", lambda v: fmt_num(v, ",.2f")), ("interest", "Interest", lambda v: fmt_num(v, ",.2f"))]
FILL_COLUMNS: Columns = [("time", "Time", fmt_time), ("symbol", "Symbol", str), ("side", "Side", str),
                ("quantity", "Qty", fmt_num), ("price", "Price", fmt_num),
                ("commission", "Commission", lambda v: fmt_num(v, ",.2f")),
                ("slippage", "Slippage", lambda v: fmt_num(v, ",.2f"))]
RISK_STATE_LABELS = {"running": "normal (orders allowed)", "reducing": "reduce only (no new exposure)",
                     "halted": "halted (no new orders)"}
EVENT_COLUMNS: Columns = [("time", "Time", fmt_time), ("kind", "Kind", str), ("actor", "Who", str),
                          ("message", "Message", str)]


def _metrics_html(metrics: dict[str, Any], keys: tuple[str, ...], css: str) -> str:
    rows = [(METRIC_LABELS[k][0], format_metric(k, metrics[k])) for k in keys if k in metrics]
    if not rows:
        return f"<i class='{css}' style='color:#777'>not enough data yet</i>"
    cells = "".join(f"<tr><td style='padding:1px 12px 1px 2px;color:#555'>{html.escape(a)}</td>"
                    f"<td style='padding:1px 4px'>{html.escape(b)}</td></tr>" for a, b in rows)
    return f"<table class='{css}' style='font-size:92%'>{cells}</table>"


class DetailView:
    """Detail of one session; display ``view.widget``. ``equity_chart``/``price_chart`` are LiveCharts.

    ``defer`` (seconds): the first read runs that long later on the kernel's loop, as the ticker's first tick,
    so a page is sent with the view's frame before its data (None, or no running loop: read at once)."""

    def __init__(self, session_id: str, store: Store | str | None = None, session: Any = None, *,
                 refresh: float = 0.5, window: int = 500, tables_every: int = 4, symbol: str | None = None,
                 handle: SessionHandle | None = None, defer: float | None = None):
        self.store = open_store(store if store is not None or session is None else session.store)
        self.session_id, self.session = session_id, session
        self.handle = handle or handle_for(session_id, self.store,
                                           {session_id: session} if session is not None else None)
        self.tables_every = max(int(tables_every), 1)
        row = self.store.get_session(session_id)
        self.row = row
        self.config = row["config"]
        self.initial = float(row["initial_balance"])
        self.symbol = symbol or (row["symbols"][0] if row["symbols"] else None)
        self.header = W.HTML()
        self.clone_panel = LineagePanel(self.store)  # Clone, Promote and the lineage line
        self.problem = W.HTML()
        self.performance = W.HTML()
        self.risk_html = W.HTML()
        self.trades_html = W.HTML()
        self.events_html = W.HTML()
        for w, css in ((self.performance, "wb-performance"), (self.risk_html, "wb-risk-metrics"),
                       (self.trades_html, "wb-trades"), (self.events_html, "wb-events")):
            w.add_class(css)
        eq = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04)
        eq.add_trace(go.Scatter(x=[], y=[], name="equity", line=dict(color="#1f77b4")), row=1, col=1)
        eq.add_trace(go.Scatter(x=[], y=[], name="drawdown %", fill="tozeroy", line=dict(color="#d62728")),
                     row=2, col=1)
        eq.update_layout(title="Equity and drawdown", showlegend=False, height=360,
                         margin=dict(l=50, r=20, t=40, b=30), uirevision="keep")
        eq.update_yaxes(title_text="equity", tickformat=",.7~g", row=1, col=1)  # 10,000.5, not 10.0005k
        eq.update_yaxes(title_text="drawdown", ticksuffix="%", tickformat=".2~f", rangemode="tozero", row=2, col=1)
        pr = go.Figure([go.Scatter(x=[], y=[], name=self.symbol or "price", line=dict(color="#444", width=1)),
                        go.Scatter(x=[], y=[], mode="markers", name="buy",
                                   marker=dict(symbol="triangle-up", color="green", size=10)),
                        go.Scatter(x=[], y=[], mode="markers", name="sell", text=[],
                                   marker=dict(symbol="triangle-down", color="red", size=10),
                                   hovertemplate="%{text}: %{y}<extra></extra>")])
        pr.update_layout(title=f"{self.symbol}: price and fills", height=300, margin=dict(l=50, r=20, t=40, b=30),
                         uirevision="keep", legend=dict(orientation="h", x=1, xanchor="right", y=1.02,
                                                        yanchor="bottom"))
        pr.update_yaxes(tickformat=",.7~g")
        interval = max(refresh / 2, 0.25)
        self.equity_chart = LiveChart(eq, window, min_interval=interval)
        self.price_chart = LiveChart(pr, window, min_interval=interval)
        self.equity_box = W.VBox([self.equity_chart.fig])
        self.equity_box.add_class("wb-equity-chart")
        self.symbol_picker = W.Dropdown(options=list(row["symbols"]), value=self.symbol, description="Symbol",
                                        layout={"width": "260px"})
        self.symbol_picker.add_class("wb-price-symbol")
        self.symbol_picker.observe(lambda ch: self.show_symbol(ch["new"]), names="value")
        if len(row["symbols"]) < 2:
            self.symbol_picker.layout.display = "none"
        self.price_box = W.VBox([self.symbol_picker, self.price_chart.fig])
        self.price_box.add_class("wb-price-chart")
        tabs = W.Tab([W.VBox([self.trades_html], layout={"max_height": "320px", "overflow": "auto"}),
                      W.VBox([self.events_html], layout={"max_height": "320px", "overflow": "auto"})])
        tabs.set_title(0, "Trade history")
        tabs.set_title(1, "Event log")
        attach_review(tabs, self)  # "Trade review": built when first selected
        attach_diagnostics(tabs, self)  # "Diagnostics": built when first selected
        attach_fidelity(tabs, self)  # "Fidelity twin" (paper and live): built when first selected
        attach_legs(tabs, self)  # "Legs" (sessions with legs): built when first selected
        metrics = W.HBox([W.VBox([W.HTML("<b>Performance</b>"), self.performance], layout={"margin": "0 24px 0 0"}),
                          W.VBox([W.HTML("<b>Risk</b>"), self.risk_html])], layout={"flex_flow": "row wrap"})
        self.limits = W.HTML()
        self.limits.add_class("wb-pnl-limits")
        self.widget = W.VBox([self.header, self.clone_panel.widget, self.problem, metrics, self.limits,
                              self.equity_box, self.price_box, tabs],
                             layout={"border": "1px solid #ddd", "padding": "8px"})
        self.widget.add_class("wb-detail")
        # incremental read state
        self._last_t: pd.Timestamp | None = None
        self._peak = self.initial
        self._times = array("q")  # the whole curve, compact (8 bytes a value), for live metrics
        self._values = array("d")
        self._exposure = math.nan
        self._fills_seen = 0
        self._bars: pd.Series | None = None  # closes around the chart's window (_load_prices)
        self._bars_more = False  # the source has bars after the last of _bars
        self._bars_error: str | None = None
        self._rates: dict[str, pd.Series] | None = None  # converted markets' rates: their trades' own prices
        self._price_t: pd.Timestamp | None = None
        self._ticks = 0
        self.state = row["state"]
        self.ticker = Ticker(self.refresh, refresh, on_error=lambda e: self._problem(f"refresh failed: {e}"))
        if defer is None or not self.ticker.start(first=defer):
            self.refresh()
            self.ticker.start()

    # ---- reading ----------------------------------------------------------------------------
    def follow(self, handle: SessionHandle) -> None:
        """Show the session through ``handle`` from now on (a resumed run: its new runner)."""
        self.handle = handle
        self.session = getattr(handle, "session", None)

    def refresh(self) -> None:
        """Read what is new, push it to the charts (throttled) and, every few ticks, redraw the tables."""
        row = self.store.get_session(self.session_id)
        self.row, self.state = row, row["state"]
        first = self._last_t is None
        new = self.store.equity(self.session_id, since=self._last_t)
        if len(new):
            self._add_equity(new, first)
        self._add_fills()
        final = SessionState(self.state).is_final
        if first or final:  # promotable once it has finished
            self.clone_panel.show(self.session_id, row)
        self.equity_chart.flush(force=first or final)
        self.price_chart.flush(force=first or final)
        if first or final or self._ticks % self.tables_every == 0:
            self._tables(row)
        self._ticks += 1
        if not self._bars_error and self.problem.value:
            self.problem.value = ""  # this refresh went through: clear an earlier failure
        if final and self.ticker.running and self._ticks > 1:
            self.ticker.stop()  # nothing more will come

    def _add_equity(self, new: pd.DataFrame, first: bool) -> None:
        eq = new["equity"]
        if first:
            dd = drawdown_series(eq, self.initial)
        else:
            peak = np.maximum.accumulate(np.concatenate([[self._peak], eq.to_numpy()]))[1:]
            dd = pd.Series(1.0 - eq.to_numpy() / peak, index=eq.index)
        self._peak = max(self._peak, float(eq.max()))
        self._last_t = eq.index[-1]
        self._times.frombytes(np.ascontiguousarray(eq.index.as_unit("ns").asi8, dtype=np.int64).tobytes())
        self._values.frombytes(np.ascontiguousarray(eq.to_numpy(), dtype=np.float64).tobytes())
        self._exposure = float(new["exposure"].iloc[-1])
        tail = slice(-self.equity_chart.window, None)
        xs = eq.index[tail].to_pydatetime()
        self.equity_chart.push(EQ, xs, eq.to_numpy()[tail])
        self.equity_chart.push(DD, xs, (-100.0 * dd.to_numpy())[tail])
        self._add_prices(eq.index[-1])

    def _add_prices(self, upto: pd.Timestamp) -> None:
        if self.symbol is None or self.config is None or self._bars_error:
            return
        if self._bars is None or (self._bars_more and upto > self._bars.index[-1]):
            try:
                self._bars = self._load_prices(upto)
            except Exception as e:
                self._bars_error = str(e)
                self._problem(f"price chart: no bars for {self.symbol} ({e})")
                return
        bars = self._bars
        lo = 0 if self._price_t is None else int(bars.index.searchsorted(self._price_t, side="right"))
        hi = int(bars.index.searchsorted(upto, side="right"))
        lo = max(lo, hi - self.price_chart.window)
        if hi > lo:
            chunk = bars.iloc[lo:hi]
            self.price_chart.push(PRICE, chunk.index.to_pydatetime(), chunk.to_numpy())
            self._price_t = chunk.index[-1]

    def _load_prices(self, upto: pd.Timestamp) -> pd.Series:
        """The closes the price chart can draw: ``window`` bars up to ``upto`` and :data:`AHEAD` after it (a
        running replay reaches them; past them they are loaded again), in the session's base currency as its
        fills are. Copies: the loaded frame and the sample generator's cached path (~10 MB a symbol for 90 days
        of 1m bars) are let go at once."""
        from workbench.data.currency import load_in_base

        c = self.config
        assert c is not None and self.symbol is not None  # _add_prices draws no prices without them
        frame = load_in_base(c.data, self.symbol, c.currency, c.start, c.end)
        first = max(int(frame.index.searchsorted(upto, side="right")) - self.price_chart.window, 0)
        last = first + self.price_chart.window + AHEAD
        self._bars_more = last < len(frame)
        closes = pd.Series(frame["close"].to_numpy()[first:last].copy(), index=frame.index[first:last].copy(deep=True))
        del frame
        if c.data.source == "sample":
            from workbench.data.sample import clear_cache

            clear_cache()
        return closes

    def show_symbol(self, symbol: str) -> None:
        """Draw ``symbol``'s price and fills (one of the session's symbols) in the price chart."""
        if symbol not in self.row["symbols"]:
            self._problem(f"{symbol!r} is not traded by this session; pick one of {', '.join(self.row['symbols'])}")
            return
        if self.symbol_picker.value != symbol:
            self.symbol_picker.value = symbol  # its observer comes back here
            return
        if symbol == self.symbol and self._bars is not None:
            return
        self.symbol, self._bars, self._bars_error, self._price_t = symbol, None, None, None
        self.price_chart.clear()
        with self.price_chart.fig.batch_update():
            self.price_chart.fig.layout.title.text = f"{symbol}: price and fills"
            self.price_chart.fig.data[PRICE].name = symbol
        if self._last_t is not None:
            self._add_prices(self._last_t)
        self._push_fills(self.store.fills(self.session_id))
        self.price_chart.flush(force=True)

    def _add_fills(self) -> None:
        new = self.store.fills(self.session_id, skip=self._fills_seen)
        self._fills_seen += len(new)
        self._push_fills(new)

    def _push_fills(self, fills: pd.DataFrame) -> None:
        new = fills[fills["symbol"].map(market_symbol) == self.symbol]  # legs' fills (SYMBOL@leg) too
        if len(new):
            buys, sells = new[new["side"] == "buy"], new[new["side"] == "sell"]
            self.price_chart.push(BUYS, buys["time"].dt.to_pydatetime(), buys["price"])
            self.price_chart.push(SELLS, sells["time"].dt.to_pydatetime(), sells["price"],
                                  texts=[f"sell {q:g}" for q in sells["quantity"]])

    def _tables(self, row: dict[str, Any]) -> None:
        orphan = "" if row.get("heartbeat_at") is not None or row["state"] != "orphaned" else " (no runner)"
        risk = risk_checkpoint(self.store, self.session_id, self.session) if row["state"] in RISK_STATE_SHOWN else {}
        state = str(risk.get("state") or "")
        self.header.value = (f"<h3 style='margin:4px 0'>{html.escape(row['name'] or row['strategy'])} "
                             f"<small><code>{html.escape(self.session_id)}</code> · {html.escape(row['kind'])} · "
                             f"{html.escape(', '.join(row['symbols']))} · "
                             f"<span class='wb-state'>{state_badge(row['state'], risk_state=state)}</span>"
                             f"{orphan}</small></h3>")
        trades = self._with_market_prices(self._trades(row))
        metrics = dict(row.get("metrics") or {})
        if not metrics and len(self._values) >= 2:
            # copies: a numpy view would pin the arrays' buffers and block the next append
            index = pd.DatetimeIndex(np.array(self._times, dtype=np.int64).view("M8[ns]")).tz_localize("UTC")
            curve = pd.Series(np.array(self._values, dtype=np.float64), index=index)
            metrics = compute_metrics(curve, trades if "duration" in trades.columns else empty_trades(), self.initial)
        self.metrics = metrics
        self.performance.value = _metrics_html(metrics, PERFORMANCE, "wb-performance-table")
        risk_rows = _metrics_html(metrics, RISK, "wb-risk-table")
        extra = [("Exposure now", "n/a" if self._exposure != self._exposure else f"${self._exposure:,.2f}"),
                 *(market_rows(self.config, trades) if self.config is not None else [])]  # issue 15's rows
        rows = [(a, b, "") for a, b in extra]
        if state:  # the risk engine's RUNNING/REDUCING/HALTED means something only while the session trades
            label = RISK_LABELS.get(state, state)
            rows.append(("Risk state", RISK_STATE_LABELS.get(state, state),
                         f";color:{RISK_COLORS.get(label, '#555')};font-weight:600' class='wb-risk-{label}"))
        self.risk_html.value = risk_rows + "".join(
            f"<div style='font-size:92%{css}'><span style='color:#555;font-weight:normal'>{html.escape(a)}:</span> "
            f"{html.escape(b)}</div>" for a, b, css in rows)
        if row["kind"] != "backtest":
            now = self._last_t if self._last_t is not None else pd.Timestamp.now(tz="UTC")
            self.limits.value = limits_html(trades, metrics, risk or self._risk(row), self.config, now)
        if len(trades):
            columns = TRADE_COLUMNS + [c for c in MARKET_TRADE_COLUMNS if c[0] in trades.columns]
            self.trades_html.value = frame_table(trades.iloc[::-1].head(100), columns, "wb-trades-table")
        else:
            fills = self.store.fills(self.session_id)
            note = ("no fills yet" if fills.empty else
                    "trades are listed when the session ends; until then its fills, newest first:")
            self.trades_html.value = (f"<div style='color:#777;font-style:italic;margin:2px 0 6px'>{note}</div>"
                                      + ("" if fills.empty else
                                         frame_table(fills.iloc[::-1].head(100), FILL_COLUMNS, "wb-fills-table")))
        events = self.store.events(self.session_id, limit=50).iloc[::-1]
        self.events_html.value = frame_table(events, EVENT_COLUMNS, "wb-events-table", empty="no events")
        self.trades = trades

    def _trades(self, row: dict[str, Any]) -> pd.DataFrame:
        """Trades so far (open ones too) while a session runs, here or elsewhere (the handle's snapshot:
        rebuilt from the stored fills by the ledger for a remote one); the stored trade list once it ended."""
        if not SessionState(row["state"]).is_final:
            return self.handle.snapshot().trades
        return self.store.trades(self.session_id)

    def _with_market_prices(self, trades: pd.DataFrame) -> pd.DataFrame:
        """``trades`` plus the converted markets' own prices (docs/currencies.md), the rates loaded once."""
        from workbench.data.currency import market_rates, with_market_prices

        c = self.config
        if self._rates is None:
            try:
                self._rates = {} if c is None else market_rates(c.data, c.symbols, c.currency, c.start, c.end)
            except Exception as e:  # no conversion bars: the trades keep their base-currency prices only
                self._rates = {}
                self._problem(f"market prices: {e}")
        return with_market_prices(trades, self._rates) if self._rates and len(trades) else trades

    def _risk(self, row: dict[str, Any]) -> dict[str, Any]:
        """The risk engine's last peak and start-of-day equity of a session not trading now (no trading
        state: it means something only while the session trades)."""
        if row["kind"] == "backtest":
            return {}
        return {k: v for k, v in risk_checkpoint(self.store, self.session_id, self.session).items() if k != "state"}

    def _problem(self, text: str) -> None:
        self.problem.value = message(text, "error")

    # ---- lifecycle ----------------------------------------------------------------------------
    @property
    def updates(self) -> int:
        """Chart updates sent so far (both charts)."""
        return self.equity_chart.updates + self.price_chart.updates

    def close(self) -> None:
        """Stop updating and close the widgets."""
        self.ticker.stop()
        self.equity_chart.close()
        self.price_chart.close()
        self.widget.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def detail(session_id: str, store: Store | str | None = None, session: Any = None, **kwargs: Any) -> DetailView:
    """The detail view of ``session_id`` (displays itself in Jupyter)."""
    return DetailView(session_id, store, session, **kwargs)

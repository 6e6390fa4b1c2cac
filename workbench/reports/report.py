"""The report a notebook shows: :func:`prepare` builds and validates its config, :class:`Report` runs the
backtest and returns each section ready to display (one cell, one call).

Bad input raises :class:`ReportParameterError`, whose message is one line saying what to fix; in a
notebook IPython shows just that line (``_render_traceback_``), not a traceback.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.config import ConfigError, SessionConfig, make_config
from workbench.reports import sections
from workbench.reports.display import ReportFigure, Summary, reset_plotlyjs
from workbench.reports.flags import SETTINGS, UsageError, apply_settings

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

    from workbench.backtest.result import BacktestResult

#: prepare() arguments that change a saved session's or template's config when not None
OVERRIDES: tuple[str, ...] = ("strategy", "params", "symbols", "start", "end", "initial_balance", *SETTINGS)
SUMMARY_KEYS: tuple[str, ...] = ("total_return", "sharpe_ratio", "max_drawdown", "trade_count")


class ReportParameterError(ValueError):
    """A report parameter cannot be used; the message is one line naming it and how to fix it."""

    def _render_traceback_(self) -> list[str]:  # IPython shows these lines instead of a traceback
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]


def one_line(err: ConfigError) -> str:
    """A ConfigError's problems as one line: ``field: message (got value); ...``."""
    parts = []
    for f, v, msg in err.problems:
        got = "" if repr(v) in msg or v is None else f" (got {v!r})"
        parts.append(f"{msg}{got}" if f in ("<config>", "strategy") else f"{f}: {msg}{got}")
    return "; ".join(parts)


def _base_config(session_id: str | None, template: str | None, db_url: str | None) -> tuple[dict[str, Any], str]:
    if session_id is None and template is None:
        return {}, "parameters"
    if session_id is not None and template is not None:
        raise ReportParameterError("give session_id or template, not both")
    from workbench.store import Store, StoreError

    try:
        with Store(db_url) as store:
            if template is not None:
                return store.get_template(template).to_dict(), f"template {template!r}"
            assert session_id is not None  # one of the two is given (checked above)
            row = store.get_session(session_id)
    except (StoreError, ValueError, OSError) as e:
        raise ReportParameterError(str(e).splitlines()[0]) from None
    if row["config"] is None:
        raise ReportParameterError(f"session {session_id!r} has a config that no longer validates: "
                                   + row.get("config_error", "").replace("\n", " "))
    return row["config"].to_dict(), f"session {session_id!r}"


def _params(params: dict[str, Any] | str | None) -> dict[str, Any] | None:
    if params is None or isinstance(params, dict):
        return params
    if isinstance(params, str):
        try:
            out = json.loads(params) if params.strip() else {}
        except json.JSONDecodeError as e:
            raise ReportParameterError(f"params: not valid JSON ({e.msg}); "
                                       'give a dict such as {"window": 30}') from None
        if isinstance(out, dict):
            return out
    raise ReportParameterError(f"params must be a dict or a JSON object string, got {params!r}")


def _symbols(symbols: Sequence[str] | str | None) -> list[str] | None:
    if isinstance(symbols, str):
        return [s.strip() for s in symbols.split(",") if s.strip()]
    return None if symbols is None else list(symbols)


def prepare(
    strategy: str | None = None,
    params: dict[str, Any] | str | None = None,
    symbols: Sequence[str] | str | None = None,
    start: Any = None,
    end: Any = None,
    initial_balance: float | None = None,
    fee: float | None = None,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    trailing_stop: float | None = None,
    session_id: str | None = None,
    template: str | None = None,
    db_url: str | None = None,
    data: str | None = None,
    timeframe: str | None = None,
    sizing: str | dict[str, Any] | None = None,
    slippage_bps: float | None = None,
    timezone: str | None = None,
    blackout: Sequence[str] | str | None = None,
    events: str | None = None,
    base_currency: str | None = None,
) -> Report:
    """A validated :class:`Report`. The config comes from the arguments, or from a saved session
    (``session_id``) or template (``template``) in the store at ``db_url``, which the arguments that
    are not None then change. The settings are ``workbench backtest``'s flags
    (:func:`workbench.reports.flags.apply_settings`): ``fee`` sets taker and maker commission;
    ``stop_loss``, ``take_profit`` and ``trailing_stop`` are fractions; ``data`` a CSV file run at its own
    interval unless ``timeframe`` is coarser; ``sizing`` ``"MODE:VALUE"``; ``blackout`` ``"HH:MM-HH:MM"``
    windows in ``timezone``; ``events`` an event calendar file (.ics or .csv); ``base_currency`` the currency of
    cash and P&L (docs/currencies.md). Raises
    :class:`ReportParameterError` (one line) on bad input."""
    fields, source = _base_config(session_id, template, db_url)
    params_ = _params(params)
    if strategy is not None:
        if strategy != fields.get("strategy"):
            fields["params"] = {}  # a saved config's params belong to its own strategy
        fields["strategy"] = strategy
    if params_ is not None:
        fields["params"] = params_
    for key, value in (("symbols", _symbols(symbols)), ("start", start), ("end", end),
                       ("initial_balance", initial_balance)):
        if value is not None:
            fields[key] = value
    settings = {"data": data, "timeframe": timeframe, "fee": fee, "stop_loss": stop_loss, "take_profit": take_profit,
                "trailing_stop": trailing_stop, "sizing": sizing, "slippage_bps": slippage_bps, "timezone": timezone,
                "blackout": blackout, "events": events, "base_currency": base_currency}
    fields["kind"] = "backtest"
    try:
        config = make_config(**apply_settings(fields, settings))
    except ConfigError as e:
        raise ReportParameterError(one_line(e)) from e  # the cause: `workbench report` names the flags
    except (UsageError, OSError) as e:  # a sizing or window that cannot be read, a CSV file
        raise ReportParameterError(str(e).splitlines()[0]) from None
    reset_plotlyjs()  # a fresh run of the notebook embeds plotly.js with its first figure again
    return Report(config=config, source=source)


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


class Group:
    """Several outputs shown one after another by a single call (e.g. two figures and a table)."""

    def __init__(self, *items: Any):
        self.items = items

    def _ipython_display_(self) -> None:
        from IPython.display import display

        for item in self.items:
            display(item)

    def __repr__(self) -> str:
        return "\n".join(repr(i) for i in self.items)


def _styled(df: pd.DataFrame, formats: dict[str, str] | str | None = None, caption: str | None = None) -> Styler:
    st = df.style.format(formats, na_rep="n/a") if formats else df.style
    st = st.set_table_styles([{"selector": "td", "props": "text-align: right; font-family: monospace;"},
                              {"selector": "caption", "props": "caption-side: top; font-weight: bold;"}])
    return st.set_caption(caption) if caption else st


@dataclass
class Report:
    """A backtest report: ``config``, where it came from (``source``) and, after :meth:`run`, ``result``."""

    config: SessionConfig
    source: str = "parameters"
    result: BacktestResult | None = field(default=None, repr=False)

    def run(self, bars: Any = None) -> Summary:
        """Run the backtest (on ``bars`` if given, else the configured data) and summarise it."""
        from workbench.backtest import run_backtest

        try:
            self.result = run_backtest(self.config, bars)
        except (ValueError, OSError) as e:  # data ranges, files: say what to fix, in one line
            raise ReportParameterError(str(e).splitlines()[0] if str(e) else type(e).__name__) from e
        return self.summary()

    def _res(self) -> BacktestResult:
        if self.result is None:
            self.run()
        assert self.result is not None
        return self.result

    def summary(self) -> Summary:
        """One line for people, plus the key metrics as JSON (collected by ``run_report``)."""
        r, c = self._res(), self.config
        idx = r.equity.index
        m = r.metrics
        text = (
            f"{c.strategy} on {', '.join(c.symbols)}, {idx[0]:%Y-%m-%d %H:%M} to {idx[-1]:%Y-%m-%d %H:%M} UTC "
            f"({len(idx):,} bars, from {self.source}): "
            + ", ".join(f"{sections.METRIC_LABELS[k][0]} {sections.format_metric(k, m[k])}" for k in SUMMARY_KEYS)
        )
        data = {
            "strategy": c.strategy, "symbols": list(c.symbols), "source": self.source,
            "start": idx[0].isoformat(), "end": idx[-1].isoformat(),
            "metrics": {k: _jsonable(v) for k, v in m.items()},
        }
        return Summary(text, data)

    def show_headline(self) -> Styler:
        """The verdict: headline metrics beside buy-and-hold's return (the equity and drawdown figure follows)."""
        return _styled(sections.headline_table(self._res()), caption="Verdict: headline metrics")

    def show_config(self) -> Styler:
        """Every setting; the report's appendix."""
        return _styled(sections.config_table(self._res()), caption="Configuration")

    def show_metrics(self) -> Styler:
        return _styled(sections.metrics_table(self._res()), caption="Performance, risk and trade metrics")

    def show_equity(self) -> ReportFigure:
        return ReportFigure(sections.equity_figure(self._res()))

    def show_monthly_returns(self) -> ReportFigure:
        return ReportFigure(sections.monthly_returns_figure(self._res()))

    def show_trade_analysis(self) -> Group:
        r = self._res()
        return Group(ReportFigure(sections.pnl_distribution_figure(r)),
                     ReportFigure(sections.holding_period_figure(r)), self.show_slippage())

    def show_trade_review(self) -> Group:
        """Excursions, timing and win/loss attribution tables, then P&L against holding time and MAE."""
        r = self._res()
        money, pct, ratio = "{:,.2f}", "{:.2%}", "{:.2f}"
        fmt = {"trades": "{:,.0f}", "wins": "{:,.0f}", "win_rate": pct, "pnl": money, "avg_pnl": money,
               "avg_return": pct, "profit_factor": ratio}
        tables = sections.trade_review_tables(r)
        summary = tables.pop("Excursions and timing")
        items: list[Any] = [_styled(summary, "{:.3f}", caption="Excursions and timing (averages of closed trades)")]
        items += [_styled(t, fmt, caption=caption) for caption, t in tables.items()]
        return Group(*items, *(ReportFigure(f) for f in sections.trade_review_figures(r)))

    def show_legs(self) -> Any:
        """Multi-strategy configs: per leg allocation, trades and P&L (summing to the session's), and each
        leg's P&L over time; a one-line note for a single-strategy config."""
        r = self._res()
        if not r.config.legs:
            return Summary("single strategy: no legs", {"legs": []})
        from workbench.reports.legs import legs_figure, legs_table

        money = "{:,.2f}"
        fmt = {"allocation": "{:.0%}", "pnl": money, "realized_pnl": money, "fees": money, "win_rate": "{:.0%}",
               "total_return": "{:.2%}", "sharpe_ratio": "{:.2f}", "max_drawdown": "{:.2%}"}
        return Group(_styled(legs_table(r), fmt, caption="Legs"), ReportFigure(legs_figure(r)))

    def show_market(self) -> Any:
        """Base currency, direction, leverage, latency, fill model, trades and P&L by side, liquidations,
        funding and interest (``metrics.market``); a one-line note for long-only spot in one quote."""
        from workbench.metrics.market import market_table

        table = market_table(self._res())
        if table.empty:
            return Summary("long-only spot in one quote currency, no margin, latency or depth model", {"market": {}})
        return _styled(table, caption="Market: currency, sides, margin and execution")

    def show_regimes(self) -> Styler:
        """Performance by market regime: each day labelled from its bars (``sections.regime_table``)."""
        fmt = {"periods": "{:,.0f}", "return": "{:.2%}", "pnl": "{:,.2f}", "trades": "{:,.0f}", "win_rate": "{:.0%}"}
        return _styled(sections.regime_table(self._res()), fmt, caption="Performance by market regime (days)")

    def show_slippage(self) -> Styler:
        money, pct = "{:,.2f}", "{:.3%}"
        fmt = {"trades": "{:,.0f}", "notional": money, "total_slippage": money, "avg_slippage": money,
               "total_commission": money, "avg_commission": money, "slippage_pct": pct, "cost_pct": pct}
        return _styled(sections.slippage_table(self._res()), fmt, caption="Slippage and commission review")

    def show_benchmark(self) -> Group:
        r = self._res()
        table = sections.format_benchmark(sections.benchmark_table(r))
        return Group(ReportFigure(sections.benchmark_figure(r)), _styled(table, caption="Strategy vs buy-and-hold"))

    def show_data_quality(self) -> Styler:
        return _styled(sections.quality_table(self._res()), caption="Data quality per symbol")

    def show_provenance(self) -> Styler:
        st = _styled(sections.provenance_table(self._res()), caption="Provenance")
        return st.set_table_styles([{"selector": "td", "props": "text-align: left; font-family: monospace; "
                                     "word-break: break-all; max-width: 60em;"}], overwrite=False)

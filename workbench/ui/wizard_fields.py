"""The wizard's pages and their fields: the steps, the choices, and one :class:`FormField` per config
field (how it is read, written, shown in the review and where its errors go). :class:`WizardFields`
is the part of :class:`workbench.ui.wizard.Wizard` that builds them.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Any
from zoneinfo import available_timezones

import ipywidgets as W

from workbench.config import TIMEFRAMES
from workbench.strategies.presets import PRESET_NAMES, preset
from workbench.ui import forms as F
from workbench.ui.forms import FormField
from workbench.ui.wizard_market import execution_rows, trading_rows

STEPS = ("Session type", "Strategy", "Trading", "Risk", "Execution", "Review")
TYPE, STRATEGY, TRADING, RISK, EXECUTION, REVIEW = range(len(STEPS))
KINDS = (("Backtesting", "backtest"), ("Paper Trading", "paper"), ("Live Trading", "live"))
SIZING = (("Percent of equity", "percent_equity"), ("Fixed amount", "fixed_amount"),
          ("Fixed quantity", "fixed_quantity"))
SIZING_UNITS = {"percent_equity": "% of equity", "fixed_amount": "quote currency per entry",
                "fixed_quantity": "base units per entry"}
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
RUN_IN = (("Run in this kernel", "kernel"), ("Request from workbench host", "host"))
SUMMARY = "<config>"  # problems that name no field of the form


def _show_pct(v: Any) -> str:
    return "off" if v is None else f"{F.fmt_pct(v)} %"


def _show_num(v: Any) -> str:
    return "off" if v is None else f"{v:,.10g}"


class WizardFields:
    """Builds the pages and registers their fields (``fields``: config fields in reading order,
    ``others``: fields outside the config such as arming)."""

    fields: dict[str, FormField]
    others: dict[str, FormField]
    params: dict[str, FormField]
    _catalog: dict[str, dict[str, Any]]
    _dates: dict[str, datetime | None]
    arming: Any
    _on_kind: Callable[[str], None]
    _on_strategy: Callable[[str], None]
    create: Callable[[], Any]
    run_preflight: Callable[[], Any]

    # ---- field factories -------------------------------------------------------------------
    def _add(self, f: FormField, group: dict[str, FormField] | None = None) -> FormField:
        (self.fields if group is None else group)[f.key] = f
        return f

    def _value_field(self, key: str, label: str, step: int, widget: W.ValueWidget, **kw: Any) -> FormField:
        def write(v: Any) -> None:
            widget.value = v
        if hasattr(widget, "_options_labels"):  # a selection: the review shows the option's label
            kw.setdefault("show", lambda v: dict(zip(widget._options_values, widget._options_labels)).get(v, str(v)))
        return self._add(FormField(key, label, step, [widget], lambda: widget.value, write, **kw))

    def _number(self, key: str, label: str, step: int, *, percent: bool = False, **kw: Any) -> FormField:
        """A required number; ``percent`` shows 5 for a config value of 0.05."""
        w = F.number(label)

        def write(v: Any) -> None:
            w.value = F.frac_to_pct(v) if percent else v
        read = (lambda: F.pct_to_frac(w.value)) if percent else (lambda: float(w.value))
        kw.setdefault("show", _show_pct if percent else _show_num)
        if percent:
            kw.setdefault("unit", "%")
            kw["translate"] = F.percentify
        return self._add(FormField(key, label, step, [w], read, write, **kw))

    def _optional(self, key: str, label: str, step: int, *, percent: bool = False, integer: bool = False,
                  **kw: Any) -> FormField:
        """An optional number typed as text: empty or 0 means off (None)."""
        w = F.text(label, placeholder="off")

        def write(v: Any) -> None:
            w.value = F.fmt_pct(v) if percent else F.fmt_number(v)
        if percent:
            kw.setdefault("unit", "%")
            kw["translate"] = F.percentify
        def read() -> float | int | None:
            return F.parse_number(w.value, percent=percent, integer=integer)
        return self._add(FormField(key, label, step, [w], read, write,
                                   show=_show_pct if percent else _show_num, **kw))

    # ---- pages -----------------------------------------------------------------------------
    def _page_type(self) -> W.Widget:
        kind = W.ToggleButtons(options=list(KINDS), description="Session type", style=F.LABEL_STYLE)
        kind.observe(lambda ch: self._on_kind(ch["new"]), names="value")
        fk = self._value_field("kind", "Session type", TYPE, kind)
        name = F.text("Name", placeholder="optional, e.g. btc-momentum-jan")
        name.layout.width = "460px"  # the hint fits
        fn = self._value_field("name", "Name", TYPE, name, show=lambda v: v or "—")
        self._allow_live = W.Checkbox(description="allow live trading", indent=False, layout={"width": "170px"})
        self._confirm = W.Text(placeholder="exchange:account, e.g. binance:main", layout={"width": "300px"},
                               tooltip="type the exchange and account name to confirm")

        def write_arming(v: Any) -> None:
            self._allow_live.value, self._confirm.value = bool(v.get("allow_live")), v.get("confirmation", "")
        arm = self._add(FormField("arming", "Live arming", TYPE, [self._allow_live, self._confirm],
                                  lambda: self.arming, write_arming), self.others)
        account = self._value_field("live.account", "Account", TYPE, F.text("Account", placeholder="main"),
                                    help="its keys: WORKBENCH_<EXCHANGE>_<ACCOUNT>_API_KEY or the keyring")
        sandbox = self._value_field("live.sandbox", "Sandbox", TYPE,
                                    W.Checkbox(description="the exchange's testnet (sandbox)", indent=True,
                                               style=F.LABEL_STYLE), show=lambda v: "testnet" if v else "no")
        self._live_fields = [account, sandbox]
        self._arming_panel = W.VBox([
            W.HTML("<div style='color:#b71c1c'><b>Live trading uses real money.</b> Tick the box and type the "
                   "exchange and account name (e.g. <code>binance:main</code>) to arm this session.</div>"),
            account.row, sandbox.row, arm.row],
            layout={"border": "1px solid #e57373", "padding": "4px 8px", "margin": "6px 0"})
        return W.VBox([fk.row, fn.row, self._arming_panel])

    def _page_strategy(self) -> W.Widget:
        dd = F.dropdown("Strategy", [(c["title"] or c["name"], c["name"]) for c in self._catalog.values()])
        self.preset = F.dropdown("Preset", [("(none)", ""), *[(f"{n} market", n) for n in PRESET_NAMES]],
                                 tooltip="fill the parameters and stops for a market condition")
        self.preset.add_class("wb-wizard-preset")
        self.preset.observe(lambda ch: self.apply_preset(ch["new"]), names="value")
        dd.observe(lambda _: setattr(self.preset, "value", ""), names="value")  # a new strategy: its defaults
        self._description = W.HTML()
        self._params_box = W.VBox()
        holder = self._add(FormField("params", "Parameters", STRATEGY, [], lambda: None, lambda v: None),
                           self.others)
        self._params_holder = holder
        dd.observe(lambda ch: self._on_strategy(ch["new"]), names="value")
        fs = self._value_field("strategy", "Strategy", STRATEGY, dd)
        self._on_strategy(dd.value)
        return W.VBox([fs.row, self.preset, self._description, W.HTML("<b>Parameters</b>"), self._params_box])

    def apply_preset(self, name: str) -> None:
        """Fill the strategy's params, its stops (and for volatile markets the sizing) from its built-in
        preset ``name`` (:mod:`workbench.strategies.presets`); the other fields keep what they hold."""
        if not name:
            return
        strategy = self.fields["strategy"]
        try:
            fields = preset(strategy.read(), name)
        except ValueError as e:  # a strategy without built-in presets
            strategy.set_error(str(e))
            return
        strategy.set_error(None)
        for key, value in fields["params"].items():
            if key in self.params:
                self.params[key].write(value)
        for group in ("risk", "sizing"):  # sizing: the mode before the value it is read in
            for key, value in fields.get(group, {}).items():
                self.fields[f"{group}.{key}"].write(value)

    def _page_trading(self) -> W.Widget:
        sym = F.text("Symbols", placeholder="BTC/USDT, ETH/USDT")

        def write_sym(v: Any) -> None:
            sym.value = ", ".join(v)
        rows = [self._add(FormField("symbols", "Symbols", TRADING, [sym], lambda: F.parse_symbols(sym.value),
                                    write_sym, show=", ".join,
                                    help="comma separated; a perpetual: BASE/QUOTE:SETTLE, e.g. BTC/USDT:USDT")),
                self._number("initial_balance", "Initial balance", TRADING, unit="quote currency")]
        mode = F.dropdown("Position sizing", SIZING)
        rows.append(self._value_field("sizing.mode", "Position sizing", TRADING, mode))
        value = F.number("Size")

        def pct() -> bool:
            return mode.value == "percent_equity"

        def write_size(v: Any) -> None:
            value.value = F.frac_to_pct(v) if pct() else v

        def translate_size(msg: str) -> str:
            return "give a percent of equity above 0 and at most 100" if pct() and "fraction" in msg else (
                F.percentify(msg) if pct() else msg)
        size = self._add(FormField("sizing.value", "Size", TRADING, [value],
                                   lambda: F.pct_to_frac(value.value) if pct() else float(value.value), write_size,
                                   show=_show_num, translate=translate_size, unit=SIZING_UNITS[mode.value]))
        size.show = lambda v: f"{F.fmt_pct(v)} %" if pct() else _show_num(v)
        mode.observe(lambda ch: size.set_unit(SIZING_UNITS[ch["new"]]), names="value")
        rows += [size,
                 self._number("commission.taker", "Taker fee", TRADING, percent=True, help="market orders"),
                 self._number("commission.maker", "Maker fee", TRADING, percent=True, help="resting limit orders"),
                 self._number("commission.fixed", "Fixed fee per order", TRADING, unit="quote currency"),
                 *trading_rows(self, TRADING)]
        src = F.dropdown("Data source",
                         [("Bundled sample", "sample"), ("CSV file", "csv"), ("Exchange (ccxt)", "ccxt")])
        rows.append(self._value_field("data.source", "Data source", TRADING, src))
        self._live_data = self._value_field(
            "data.live", "Live data", TRADING, W.Checkbox(description="trade on the exchange's live candles",
                                                         indent=True, style=F.LABEL_STYLE),
            help="paper: needs data source Exchange (ccxt)", show=lambda v: "yes" if v else "no (replay)")
        rows.append(self._live_data)
        rows.append(self._value_field("data.exchange", "Exchange", TRADING, F.text("Exchange", "binance")))
        rows.append(self._value_field("data.timeframe", "Timeframe", TRADING, F.dropdown("Timeframe", TIMEFRAMES)))
        csv = F.text("CSV file", placeholder="path/to/bars.csv")

        def write_csv(v: Any) -> None:
            csv.value = v or ""
        csv_field = self._add(FormField("data.csv_path", "CSV file", TRADING, [csv],
                                        lambda: csv.value.strip() or None, write_csv, show=lambda v: v or "—"))
        rows.append(csv_field)
        src.observe(lambda ch: csv_field.set_visible(ch["new"] == "csv"), names="value")
        csv_field.set_visible(src.value == "csv")
        self._date_fields = [self._date("start", "Start date", "empty: from the first bar"),
                             self._date("end", "End date", "00:00 UTC, exclusive; empty: to the last bar")]
        return W.VBox([f.row for f in rows + self._date_fields])

    def _date(self, key: str, label: str, help: str) -> FormField:
        picker = W.DatePicker(description=label, style=F.LABEL_STYLE)

        def write(v: Any) -> None:
            dt = datetime.fromisoformat(v) if isinstance(v, str) else v
            self._dates[key] = dt
            picker.value = dt.date() if dt else None

        def read() -> str | None:
            d: date | None = picker.value
            if d is None:
                return None
            loaded = self._dates.get(key)
            if loaded is not None and loaded.date() == d:  # keep a loaded time of day
                return loaded.isoformat()
            return datetime(d.year, d.month, d.day, tzinfo=timezone.utc).isoformat()
        return self._add(FormField(key, label, TRADING, [picker], read, write, help=help,
                                   show=lambda v: v[:16].replace("T", " ") if v else "all data"))

    def _page_risk(self) -> W.Widget:
        rows = [
            self._optional("risk.max_position", "Max position per symbol", RISK, unit="quote currency"),
            self._optional("risk.portfolio_limit", "Portfolio limit", RISK, unit="quote currency",
                           help="total exposure"),
            self._optional("risk.concentration_limit", "Max equity share per symbol", RISK, percent=True),
            self._optional("risk.stop_loss", "Stop loss", RISK, percent=True, help="below entry"),
            self._optional("risk.take_profit", "Take profit", RISK, percent=True, help="above entry"),
            self._optional("risk.trailing_stop", "Trailing stop", RISK, percent=True,
                           help="below the high since entry"),
            self._optional("risk.max_holding_minutes", "Max holding time", RISK, unit="minutes"),
            self._optional("risk.max_orders_per_minute", "Max orders per minute", RISK, integer=True),
            self._optional("risk.circuit_breaker.max_daily_loss", "Circuit breaker: daily loss", RISK, percent=True,
                           help="of start-of-day equity"),
            self._optional("risk.circuit_breaker.max_drawdown", "Circuit breaker: drawdown", RISK, percent=True,
                           help="below peak equity"),
            self._value_field("risk.circuit_breaker.action", "Circuit breaker action", RISK,
                              F.dropdown("Breaker action", [("Halt trading", "halted"), ("Reduce only", "reducing")])),
        ]
        return W.VBox([W.HTML("<i>Empty or 0 means off.</i>"), *[f.row for f in rows]])

    def _page_execution(self) -> W.Widget:
        model = F.dropdown("Slippage model", [("Fixed (bps)", "fixed"), ("Volume impact", "volume")])
        rows = [self._value_field("slippage.model", "Slippage model", EXECUTION, model),
                self._number("slippage.bps", "Fixed slippage", EXECUTION, unit="bps"),
                self._number("slippage.impact", "Volume impact", EXECUTION, help="× order share of bar volume")]
        model.observe(lambda ch: rows[2].set_visible(ch["new"] == "volume"), names="value")
        rows[2].set_visible(model.value == "volume")
        rows += [self._number("volume.min_bar_volume", "Min bar volume", EXECUTION, unit="base units"),
                 self._number("volume.max_share", "Max share of bar volume", EXECUTION, percent=True),
                 self._value_field("volume.on_excess", "Above max share", EXECUTION,
                                   F.dropdown("Above max share",
                                              [("Cap the fill", "cap"), ("Skip the fill", "skip")])),
                 *execution_rows(self, EXECUTION)]
        start = F.text("Trading hours", placeholder="09:30")
        end = W.Text(description="to", placeholder="16:00", style={"description_width": "30px"},
                     layout={"width": "120px"})
        start.layout = {"width": "280px"}

        def write_hours(v: Any) -> None:
            start.value, end.value = (v["start"], v["end"]) if v else ("", "")
        rows.append(self._add(FormField(
            "time.trading_hours", "Trading hours", EXECUTION, [start, end],
            lambda: F.parse_window(start.value, end.value), write_hours, help="HH:MM; empty: all day",
            show=lambda v: F.fmt_windows([v]) if v else "all day")))
        blk = F.text("Blackout windows", placeholder="12:00-12:30, 20:00-21:00")
        blk.layout.width = "460px"

        def write_blk(v: Any) -> None:
            blk.value = F.fmt_windows(v)
        rows.append(self._add(FormField("time.blackouts", "Blackout windows", EXECUTION, [blk],
                                        lambda: F.parse_windows(blk.value), write_blk,
                                        show=lambda v: F.fmt_windows(v) or "none")))
        tz = W.Combobox(description="Time zone", options=sorted(available_timezones()), ensure_option=False,
                        style=F.LABEL_STYLE, layout=F.INPUT_LAYOUT)
        rows.append(self._add(FormField("time.timezone", "Time zone", EXECUTION, [tz], lambda: tz.value.strip(),
                                        lambda v: setattr(tz, "value", v))))
        days = [W.Checkbox(description=d, indent=False, layout={"width": "58px"}) for d in WEEKDAYS]

        def write_days(v: Any) -> None:
            for i, cb in enumerate(days):
                cb.value = i in v
        rows.append(self._add(FormField("time.weekdays", "Trading days", EXECUTION,
                                        [W.HTML("<div style='text-align:right'>Trading days</div>",  # lined up with the
                                                 layout={"width": "190px", "margin": "0 8px 0 0"}), *days],  # labels
                                        lambda: [i for i, cb in enumerate(days) if cb.value], write_days,
                                        show=lambda v: ", ".join(WEEKDAYS[i] for i in v))))
        return W.VBox([f.row for f in rows])

    def _page_review(self) -> W.Widget:
        self.review = W.HTML()
        self.run_in = W.RadioButtons(options=list(RUN_IN), description="Run", style=F.LABEL_STYLE)
        self.create_button = W.Button(description="Create", icon="check", button_style="success")
        self.create_button.on_click(lambda _: self.create())
        self.create_button.add_class("wb-wizard-create")
        self.run_in.add_class("wb-wizard-run-in")
        self.status = W.HTML()
        self.status.add_class("wb-wizard-status")
        self.output = W.Output()  # for callbacks: progress bars, results
        self.result = W.VBox()  # the launcher's progress bar and outcome
        self.result.add_class("wb-wizard-result")
        return W.VBox([self.review, self._page_preflight(), self.run_in, W.HBox([self.create_button, self.status]),
                       self.result, self.output])

    def _page_preflight(self) -> W.Widget:
        """Live only: the pre-flight waivers, a button to run the checks and their results (Create runs
        them too and is refused while one fails)."""
        waivers = [self._value_field(f"live.{key}", label, REVIEW, F.text(label, placeholder="no waiver"),
                                     help=help, show=lambda v: v or "none")
                   for key, label, help in (("waive_stops", "Waive stops", "a reason to run without a stop"),
                                            ("waive_rehearsal", "Waive rehearsal",
                                             "a reason to skip the 30-day backtest + paper check"))]
        self._live_fields += waivers
        button = W.Button(description="Run pre-flight", icon="plane")
        button.add_class("wb-wizard-preflight-run")
        button.on_click(lambda _: self.run_preflight())
        self.preflight_view = W.HTML()
        self.preflight_view.add_class("wb-wizard-preflight")
        self._preflight_panel = W.VBox([
            W.HTML("<b>Pre-flight</b> <i>(key, account, markets, sizing, stops, recent backtest and paper run; "
                   "Create runs it if needed and is refused while a check fails)</i>"),
            *(w.row for w in waivers), button, self.preflight_view],
            layout={"border": "1px solid #90a4ae", "padding": "4px 8px", "margin": "6px 0"})
        return self._preflight_panel

"""Session creation wizard: type, strategy, trading, risk, execution, review.

The view only reads widgets into a dict of SessionConfig fields, calls ``make_config`` and shows
each ``ConfigError`` problem beside the field it names. It never runs a session: ``on_create``
callbacks get ``(config, options)`` and do that (options: ``arming`` and ``run_in``).
"""
from __future__ import annotations

import copy
import html
import logging
import re
from datetime import date, datetime, timezone
from typing import Any, Callable
from zoneinfo import available_timezones

import ipywidgets as W

from workbench.config import TIMEFRAMES, ConfigError, SessionConfig, make_config
from workbench.strategies import registry
from workbench.ui import forms as F
from workbench.ui.forms import FormField, ParseError

log = logging.getLogger(__name__)

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

Options = dict[str, Any]
CreateCallback = Callable[[SessionConfig, Options], Any]
ArmingRule = Callable[[str, str, dict[str, Any]], "str | None"]


def default_arming_rule(kind: str, exchange: str, arming: dict[str, Any]) -> str | None:
    """The engine's arming rule (:func:`workbench.engine.live.arming_problem`) for the form's kind and exchange."""
    from workbench.engine.live import arming_problem

    return arming_problem({"kind": kind, "data": {"exchange": exchange or "binance"}}, arming)


def _show_pct(v: Any) -> str:
    return "off" if v is None else f"{F.fmt_pct(v)} %"


def _show_num(v: Any) -> str:
    return "off" if v is None else f"{v:,.10g}"


def _code_spans(text: str) -> str:
    """``text`` as HTML with its `backticked` names in <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


class Wizard:
    """The session creation wizard; display ``wizard.widget`` (or the wizard itself) in Jupyter.

    ``config`` is the last created SessionConfig (None before Create); ``errors`` maps field keys
    (dotted config paths, ``'arming'``, ``'<config>'``) to the messages currently shown.
    """

    def __init__(self, config: SessionConfig | None = None, *, arming_rule: ArmingRule = default_arming_rule,
                 store: Any = None, launch: bool = False, run_in: str = "kernel",
                 session_kwargs: dict[str, Any] | None = None):
        self.config: SessionConfig | None = None
        self.errors: dict[str, str] = {}
        self.step = TYPE
        self._callbacks: list[CreateCallback] = []
        self._arming_rule = arming_rule
        self._catalog = {c["name"]: c for c in registry.catalog()}
        self.fields: dict[str, FormField] = {}  # config fields, in reading order
        self.params: dict[str, FormField] = {}  # the current strategy's parameters
        self.others: dict[str, FormField] = {}  # not in the config: arming, the params error holder
        self._aliases = {"sizing": "sizing.value", "time": "time.timezone", "risk": "risk.max_position",
                         "volume": "volume.max_share", "data": "data.source", "slippage": "slippage.bps",
                         "commission": "commission.taker",
                         "risk.circuit_breaker": "risk.circuit_breaker.max_daily_loss"}
        self._base: dict[str, Any] = {}
        self._dates: dict[str, datetime | None] = {}
        pages = [self._page_type(), self._page_strategy(), self._page_trading(), self._page_risk(),
                 self._page_execution(), self._page_review()]
        self.title = W.HTML("<h3 style='margin:4px 0'>Create New Trading Session</h3>")
        self.indicator = W.HTML()
        self.summary = W.HTML()
        self.stack = W.Stack(pages, selected_index=0)
        self.back_button = W.Button(description="Back", icon="arrow-left")
        self.next_button = W.Button(description="Next", icon="arrow-right", button_style="primary")
        self.back_button.on_click(lambda _: self.back())
        self.back_button.add_class("wb-wizard-back")
        self.next_button.add_class("wb-wizard-next")
        self.summary.add_class("wb-wizard-summary")
        self.indicator.add_class("wb-wizard-steps")
        self.next_button.on_click(lambda _: self.next())
        self.widget = W.VBox([self.title, self.indicator, self.summary, self.stack,
                              W.HBox([self.back_button, self.next_button])],
                             layout={"border": "1px solid #ddd", "padding": "8px"})
        self.widget.add_class("wb-wizard")
        if run_in not in ("kernel", "host"):
            raise ValueError(f"run_in must be 'kernel' or 'host', got {run_in!r}")
        self.run_in.value = run_in
        self.launcher = None
        if launch or store is not None:  # "Create" runs/starts the session (see workbench.ui.launch)
            from workbench.ui.launch import Launcher

            self.launcher = Launcher(store, self.result, session_kwargs=session_kwargs)
            self.on_create(self.launcher)
        self.load_config(config or make_config())
        self.goto(TYPE)

    # ---- public API -----------------------------------------------------------------
    def on_create(self, callback: CreateCallback) -> CreateCallback:
        """Call ``callback(config, options)`` on each successful Create; usable as a decorator."""
        self._callbacks.append(callback)
        return callback

    def load_config(self, config: SessionConfig) -> None:
        """Prefill every widget from ``config`` (templates, "start from a template")."""
        data = config.to_dict()
        self._base = copy.deepcopy(data)
        for f in list(self.fields.values()):  # "strategy" regenerates the param fields
            f.write(F.get_path(data, f.key))
        for name, f in self.params.items():
            if name in data["params"]:
                f.write(data["params"][name])
        self._on_kind(data["kind"])
        self._show_errors({})

    def build(self) -> tuple[SessionConfig | None, dict[str, str]]:
        """Read the widgets and validate: (config or None, {field key: message}). Shows nothing."""
        data, problems = self._collect()
        cfg = None
        try:
            cfg = make_config(**data)
        except ConfigError as e:
            for field, _value, msg in e.problems:
                key, text = self._locate(field, msg)
                problems.setdefault(key, []).append(text)
        arming_msg = self._arming_rule(data.get("kind", ""), F.get_path(data, "data.exchange") or "",
                                       self.arming)
        if arming_msg:
            problems.setdefault("arming", []).append(arming_msg)
        errors = {k: "; ".join(dict.fromkeys(v)) for k, v in problems.items()}
        return (None if errors else cfg), errors

    def validate(self) -> SessionConfig | None:
        """``build`` and show each message beside its field plus a summary; the config or None."""
        cfg, errors = self.build()
        self._show_errors(errors)
        return cfg

    def next(self) -> bool:
        """Validate and go to the next step, unless the current step has errors."""
        self.validate()
        if any(self._step_of(k) == self.step for k in self.errors):
            return False
        self.goto(self.step + 1)
        return True

    def back(self) -> None:
        self.goto(self.step - 1)

    def goto(self, step: int) -> None:
        self.step = max(TYPE, min(REVIEW, step))
        self.stack.selected_index = self.step
        self.back_button.disabled = self.step == TYPE
        self.next_button.disabled = self.step == REVIEW
        self.create_button.disabled = False
        self.indicator.value = " › ".join(
            f"<b style='color:#1565c0'>{i + 1}. {s}</b>" if i == self.step
            else f"<span style='color:{'#333' if i < self.step else '#999'}'>{i + 1}. {s}</span>"
            for i, s in enumerate(STEPS))
        if self.step == REVIEW:
            self._render_review()

    def create(self) -> SessionConfig | None:
        """Validate everything; on success set ``config`` and call the callbacks, else go to the first bad step."""
        cfg = self.validate()
        if cfg is None:
            self.goto(min(self._step_of(k) for k in self.errors))
            self.status.value = ""
            return None
        options: Options = {"arming": self.arming,
                            "run_in": "kernel" if cfg.kind.value == "backtest" else self.run_in.value}
        self.config = cfg
        self.create_button.disabled = True  # one click, one session; navigating re-enables it
        # with a launcher its note says what happened to the session; without one, say the config is made
        self.status.value = "" if self.launcher is not None else (
            f"<span style='color:#2e7d32'>✔ {cfg.kind.value} session {html.escape(cfg.name or cfg.strategy)} "
            "created</span>")
        for cb in self._callbacks:
            try:
                cb(cfg, options)
            except Exception as e:  # a callback's failure is shown, not raised into the widget loop
                log.exception("wizard create callback failed")
                self.status.value = f"<span style='color:{F.ERROR_COLOR}'>create failed: {html.escape(str(e))}</span>"
        return cfg

    @property
    def arming(self) -> dict[str, Any]:
        """What the user entered to arm live trading: ``{'allow_live': bool, 'confirmation': str}``."""
        return {"allow_live": bool(self._allow_live.value), "confirmation": self._confirm.value.strip()}

    def field(self, key: str) -> FormField:
        """The form field for a dotted config key, ``'params.<name>'``, ``'arming'`` or ``'params'``."""
        if key.startswith("params."):
            return self.params[key.split(".", 1)[1]]
        return self.fields.get(key) or self.others[key]

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # ---- reading and errors -------------------------------------------------------------
    def _collect(self) -> tuple[dict[str, Any], dict[str, list[str]]]:
        data = copy.deepcopy(self._base)
        problems: dict[str, list[str]] = {}
        for f in [*self.fields.values(), *self.params.values()]:
            try:
                F.set_path(data, f.key, f.read())
            except ParseError as e:
                problems.setdefault(f.key, []).append(str(e))
        data["params"] = {k: v for k, v in (data.get("params") or {}).items() if k in self.params}
        if data.get("kind") != "backtest":
            data["start"] = data["end"] = None
        return data, problems

    def _locate(self, dotted: str, msg: str) -> tuple[str, str]:
        if dotted == "params":
            m = re.search(r"param '(\w+)'", msg)
            return (f"params.{m.group(1)}" if m and m.group(1) in self.params else "params"), msg
        key, rest = F.resolve(dotted, [*self.fields, *self._aliases])
        if key is None:
            return SUMMARY, (msg if dotted == SUMMARY else f"{dotted}: {msg}")
        key = self._aliases.get(key, key)
        text = self.field(key).translate(msg)
        return key, (f"{rest}: {text}" if rest else text)

    def _step_of(self, key: str) -> int:
        return REVIEW if key == SUMMARY else self.field(key).step

    def _show_errors(self, errors: dict[str, str]) -> None:
        self.errors = errors
        for f in [*self.fields.values(), *self.params.values(), *self.others.values()]:
            f.set_error(errors.get(f.key))
        if not errors:
            self.summary.value = ""
            return
        items = "".join(
            f"<li>{STEPS[self._step_of(k)]} › "
            f"{html.escape(self.field(k).label if k != SUMMARY else 'config')}: {html.escape(m)}</li>"
            for k, m in sorted(errors.items(), key=lambda kv: self._step_of(kv[0])))
        self.summary.value = (f"<div style='color:{F.ERROR_COLOR};border:1px solid {F.ERROR_COLOR};"
                              f"padding:4px 8px;margin:4px 0'>Please fix {len(errors)} problem(s):"
                              f"<ul style='margin:2px 0'>{items}</ul></div>")

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
        self._arming_panel = W.VBox([
            W.HTML("<div style='color:#b71c1c'><b>Live trading uses real money.</b> Tick the box and type the "
                   "exchange and account name (e.g. <code>binance:main</code>) to arm this session.</div>"),
            arm.row], layout={"border": "1px solid #e57373", "padding": "4px 8px", "margin": "6px 0"})
        return W.VBox([fk.row, fn.row, self._arming_panel])

    def _page_strategy(self) -> W.Widget:
        dd = F.dropdown("Strategy", [(c["title"] or c["name"], c["name"]) for c in self._catalog.values()])
        self._description = W.HTML()
        self._params_box = W.VBox()
        holder = self._add(FormField("params", "Parameters", STRATEGY, [], lambda: None, lambda v: None),
                           self.others)
        self._params_holder = holder
        dd.observe(lambda ch: self._on_strategy(ch["new"]), names="value")
        fs = self._value_field("strategy", "Strategy", STRATEGY, dd)
        self._on_strategy(dd.value)
        return W.VBox([fs.row, self._description, W.HTML("<b>Parameters</b>"), self._params_box])

    def _page_trading(self) -> W.Widget:
        sym = F.text("Symbols", placeholder="BTC/USDT, ETH/USDT")

        def write_sym(v: Any) -> None:
            sym.value = ", ".join(v)
        rows = [self._add(FormField("symbols", "Symbols", TRADING, [sym], lambda: F.parse_symbols(sym.value),
                                    write_sym, show=", ".join, help="comma separated")),
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
                 self._number("commission.fixed", "Fixed fee per order", TRADING, unit="quote currency")]
        src = F.dropdown("Data source",
                         [("Bundled sample", "sample"), ("CSV file", "csv"), ("Exchange (ccxt)", "ccxt")])
        rows.append(self._value_field("data.source", "Data source", TRADING, src))
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
                                              [("Cap the fill", "cap"), ("Skip the fill", "skip")]))]
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
        return W.VBox([self.review, self.run_in, W.HBox([self.create_button, self.status]), self.result,
                       self.output])

    # ---- reactions -------------------------------------------------------------------------
    def _on_kind(self, kind: str) -> None:
        self._arming_panel.layout.display = None if kind == "live" else "none"
        for f in getattr(self, "_date_fields", []):
            f.set_visible(kind == "backtest")
        if hasattr(self, "run_in"):
            self.run_in.layout.display = "none" if kind == "backtest" else None

    def _on_strategy(self, name: str) -> None:
        entry = self._catalog[name]
        self._description.value = (f"<div style='margin:4px 0 8px 8px;color:#444;max-width:720px;line-height:1.5'>"
                                   f"<b>Description:</b> {_code_spans(entry['description'])}</div>")
        self.params = {}
        for p in entry["params"]:
            w = F.param_widget(p)

            def write(v: Any, w: W.ValueWidget = w) -> None:
                w.value = v
            self.params[p.name] = FormField(f"params.{p.name}", p.name, STRATEGY, [w],
                                            (lambda w=w: w.value), write, help=p.description)
        self._params_box.children = [*(f.row for f in self.params.values()), self._params_holder.row]

    def _render_review(self) -> None:
        cfg = self.validate()
        kind = self.fields["kind"].read()
        self.run_in.layout.display = "none" if kind == "backtest" else None
        if cfg is None:
            self.review.value = "<i>Fix the problems listed above, then come back to create the session.</i>"
            return
        data = cfg.to_dict()
        rows: list[tuple[str, str, str]] = []
        for f in self.fields.values():
            if f.visible:
                rows.append((STEPS[f.step], f.label, f.show(F.get_path(data, f.key))))
            if f.key == "strategy":
                rows += [(STEPS[STRATEGY], f"· {k}", str(v)) for k, v in data["params"].items()]
        rows.sort(key=lambda r: STEPS.index(r[0]))  # stable: keeps the form's order within a step
        self.review.value = F.html_table(rows)


def wizard(config: SessionConfig | None = None, store: Any = None, **kwargs: Any) -> Wizard:
    """A session creation wizard, prefilled from ``config`` when given (displays itself in Jupyter).

    "Create" runs a backtest (progress bar, result) or starts a paper session in this kernel or
    requests it from ``workbench host`` (``run_in``); pass ``launch=False`` for callbacks only."""
    kwargs.setdefault("launch", True)
    return Wizard(config, store=store, **kwargs)

"""Session creation wizard: type, strategy, trading, risk, execution, review.

The view only reads widgets into a dict of SessionConfig fields, calls ``make_config`` and shows
each ``ConfigError`` problem beside the field it names. It never runs a session: ``on_create``
callbacks get ``(config, options)`` and do that (options: ``arming`` and ``run_in``). The pages and
their fields are built by :class:`~workbench.ui.wizard_fields.WizardFields`.

A live session's type step has its account, sandbox switch and arming; its review shows the
pre-flight checks (:mod:`workbench.engine.preflight`, waivers beside them, a button to run them);
Create runs them again and creates nothing while one fails.
"""
from __future__ import annotations

import copy
import html
import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import ipywidgets as W

from workbench.config import ConfigError, SessionConfig, make_config
from workbench.strategies import registry
from workbench.ui import forms as F
from workbench.ui.forms import FormField, ParseError
from workbench.ui.wizard_fields import (  # noqa: F401  (the steps are part of this module's API)
    EXECUTION,
    KINDS,
    REVIEW,
    RISK,
    RUN_IN,
    SIZING,
    STEPS,
    STRATEGY,
    SUMMARY,
    TRADING,
    TYPE,
    WizardFields,
)

log = logging.getLogger(__name__)

Options = dict[str, Any]
CreateCallback = Callable[[SessionConfig, Options], Any]
ArmingRule = Callable[[dict[str, Any], dict[str, Any]], "str | None"]
PreflightRun = Callable[[SessionConfig], list[Any]]  # config -> workbench.engine.preflight.Check list


def default_arming_rule(form: dict[str, Any], arming: dict[str, Any]) -> str | None:
    """The engine's arming rule (:func:`workbench.engine.live.arming_problem`) for the form's values
    (kind, exchange, account)."""
    from workbench.engine.live import arming_problem

    return arming_problem(form, arming)


def _code_spans(text: str) -> str:
    """``text`` as HTML with its `backticked` names in <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


class Wizard(WizardFields):
    """The session creation wizard; display ``wizard.widget`` (or the wizard itself) in Jupyter.

    ``config`` is the last created SessionConfig (None before Create); ``errors`` maps field keys
    (dotted config paths, ``'arming'``, ``'<config>'``) to the messages currently shown.
    """

    def __init__(self, config: SessionConfig | None = None, *, arming_rule: ArmingRule = default_arming_rule,
                 store: Any = None, launch: bool = False, run_in: str = "kernel",
                 session_kwargs: dict[str, Any] | None = None, preflight: PreflightRun | None = None):
        """``preflight``: runs the live checks for a config (default: :func:`workbench.engine.preflight.preflight`
        against the exchange, with ``store`` (default: the default store) for the rehearsal check)."""
        self.config: SessionConfig | None = None
        self.errors: dict[str, str] = {}
        self._preflight = preflight or self._default_preflight
        self._store: Any = store
        self.preflight_checks: list[Any] | None = None  # the last pre-flight's checks
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
        from workbench.ui.wizard_legs import LegsEditor

        self.legs = LegsEditor(self._catalog, self.others, STRATEGY)  # the legs of a multi-strategy session
        pages[STRATEGY].children = (*pages[STRATEGY].children, self.legs.widget)
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
        self.legs.load(data.get("legs") or [])
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
        arming_msg = self._arming_rule(data, self.arming)
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
        """Validate everything; on success set ``config`` and call the callbacks, else go to the first bad step.
        A live config is created only if its pre-flight, run here, has no failing check."""
        cfg = self.validate()
        if cfg is None:
            self.goto(min(self._step_of(k) for k in self.errors))
            self.status.value = ""
            return None
        if cfg.kind.value == "live":
            checks = self.run_preflight()  # now: the account, the market and the store may have changed
            bad = [c for c in checks or [] if c.status == "fail"]
            if checks is None or bad:
                self.goto(REVIEW)
                why = ", ".join(c.name for c in bad) or "it did not run"
                self.status.value = (f"<span style='color:{F.ERROR_COLOR}'>not created: pre-flight failed "
                                     f"({html.escape(why)}); fix it (or waive it) and run the pre-flight again</span>")
                self.create_button.disabled = True
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

    def run_preflight(self) -> list[Any] | None:
        """Run the pre-flight checks for the form's config and show them; None (and the form's problems
        shown) if the form is not a valid config yet."""
        cfg = self.validate()
        if cfg is None:
            self.preflight_view.value = "<i>Fix the problems listed above first.</i>"
            return None
        try:
            checks = self._preflight(cfg)
        except Exception as e:  # shown, not raised into the widget loop
            log.exception("pre-flight failed")
            from workbench.secrets import redact

            self.preflight_view.value = (f"<span style='color:{F.ERROR_COLOR}'>pre-flight could not run: "
                                         f"{html.escape(redact(str(e)))}</span>")
            return None
        self.preflight_checks = checks
        self.preflight_view.value = F.status_table((c.status, c.name, c.detail, c.todo) for c in checks)
        self.create_button.disabled = any(c.status == "fail" for c in checks)
        return checks

    def _default_preflight(self, config: SessionConfig) -> list[Any]:
        from workbench.engine.preflight import preflight
        from workbench.ui.common import open_store

        if self.launcher is not None:
            return preflight(config, self.launcher.store)
        self._store = open_store(self._store)  # on first use, as the launcher opens it
        return preflight(config, self._store)

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
        self.legs.fill(data, problems)
        if data.get("kind") != "backtest":
            data["start"] = data["end"] = None
        return data, problems

    def _locate(self, dotted: str, msg: str) -> tuple[str, str]:
        if dotted in ("strategy", "params") and self.legs.rows:  # with legs: the first leg's, checked there
            return f"legs.0.{dotted}", msg
        if dotted == "params":
            m = re.search(r"param '(\w+)'", msg)
            return (f"params.{m.group(1)}" if m and m.group(1) in self.params else "params"), msg
        key, rest = F.resolve(dotted, [*self.fields, *self._aliases, *(k for k in self.others if k.startswith("legs"))])
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

    # ---- reactions -------------------------------------------------------------------------
    def _on_kind(self, kind: str) -> None:
        self._arming_panel.layout.display = None if kind == "live" else "none"
        for f in getattr(self, "_live_fields", []):
            f.set_visible(kind == "live")
        if hasattr(self, "_live_data"):
            self._live_data.set_visible(kind == "paper")
        if hasattr(self, "_preflight_panel"):
            self._preflight_panel.layout.display = None if kind == "live" else "none"
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

            def read(w: W.ValueWidget = w) -> Any:
                return w.value
            self.params[p.name] = FormField(f"params.{p.name}", p.name, STRATEGY, [w], read, write,
                                            help=p.description)
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
                rows += [(STEPS[STRATEGY], f"leg {name}", text) for name, text in self.legs.summary()]
        rows.sort(key=lambda r: STEPS.index(r[0]))  # stable: keeps the form's order within a step
        self.review.value = F.html_table(rows)


def wizard(config: SessionConfig | None = None, store: Any = None, **kwargs: Any) -> Wizard:
    """A session creation wizard, prefilled from ``config`` when given (displays itself in Jupyter).

    "Create" runs a backtest (progress bar, result) or starts a paper session in this kernel or
    requests it from ``workbench host`` (``run_in``); pass ``launch=False`` for callbacks only."""
    kwargs.setdefault("launch", True)
    return Wizard(config, store=store, **kwargs)

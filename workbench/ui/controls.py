"""The session control panel: the guide's basic, emergency and risk controls as buttons.

The panel acts on a :class:`~workbench.engine.handle.SessionHandle`: with a local session the
control is applied at once; otherwise it is queued as a store command for whichever process runs
the session and the runner's applied/rejected answer shows when it comes. Which buttons are enabled
is the handle's (:meth:`~workbench.engine.handle.SessionHandle.controls`: the commands table plus
"resume run" for an orphaned session), never the panel's. Restart is the handle's: a new run of the same
config and kind (locally started, or requested from ``workbench host``; a live session needs its
exchange:account typed again). Resume run, shown only for an orphaned session, carries the run on from
its last checkpoint with its portfolio (in this kernel for a local session, else by ``workbench host``;
re-armed as restart is). Errors are shown as a message in the panel, never raised.
"""
from __future__ import annotations

import html
import logging
from collections.abc import Callable
from typing import Any

import ipywidgets as W

from workbench.engine.commands import OVERRIDABLE
from workbench.engine.handle import SessionHandle, handle_for
from workbench.store import Store
from workbench.strategies import registry
from workbench.ui import forms as F
from workbench.ui.common import RISK_STATE_SHOWN, Ticker, button, message, open_store, state_badge
from workbench.ui.console import risk_checkpoint

log = logging.getLogger(__name__)
PERCENT_LIMITS = frozenset({"concentration_limit", "stop_loss", "take_profit", "trailing_stop"})


class ControlPanel:
    """Controls of one session; display ``panel.widget``. ``buttons`` maps control names to buttons."""

    def __init__(self, session_id: str, store: Store | str | None = None, session: Any = None, *,
                 refresh: float = 1.0, actor: str = "dashboard",
                 on_restart: Callable[[str, Any], None] | None = None, handle: SessionHandle | None = None,
                 on_resume: Callable[[SessionHandle], None] | None = None):
        self.store = open_store(store if store is not None or session is None else session.store)
        self.session_id, self.session, self.actor = session_id, session, actor
        if handle is None:  # NotFoundError for a bad id, before any widget
            handle = handle_for(session_id, self.store, {session_id: session} if session is not None else None,
                                actor=actor)
        self.handle = handle
        if handle.local and self.session is None:
            self.session = getattr(handle, "session", None)
        self.on_restart, self.on_resume = on_restart, on_resume
        self.pending: dict[int, str] = {}  # command id -> name, waiting for the runner
        self.results: list[dict[str, Any]] = []  # finished commands shown, newest last
        self.restarted: Any = None  # the new Session (local) or id (requested) after a restart
        row = self.store.get_session(session_id)  # NotFoundError for a bad id, before any widget
        self.config = row["config"]
        self.state = row["state"]
        self.title = W.HTML(f"<h4 style='margin:4px 0'>Session controls — {html.escape(row['strategy'])} "
                            f"<code>{html.escape(session_id)}</code></h4>")
        self.state_html = W.HTML()
        self.state_html.add_class("wb-state")
        self.message = W.HTML()
        self.message.add_class("wb-control-message")
        b = self.buttons = {
            "pause": button("Pause", "wb-btn-pause", icon="pause"),
            "resume": button("Resume", "wb-btn-resume", icon="play"),
            "stop": button("Stop", "wb-btn-stop", icon="stop"),
            "restart": button("Restart", "wb-btn-restart", icon="refresh"),
            "resume_run": button("Resume run", "wb-btn-resume-run", icon="play-circle", width="120px",
                                 tooltip="carry the orphaned run on from its last checkpoint, positions kept"),
            "kill": button("Kill", "wb-btn-kill", icon="times", style="danger"),
            "close_all": button("Close All Positions", "wb-btn-close-all", width="180px"),
            "cancel_all": button("Cancel All Orders", "wb-btn-cancel-all", width="180px"),
            "trip_breaker": button("Trip Circuit Breaker", "wb-btn-trip-breaker", style="warning", width="180px"),
            "reset_breaker": button("Reset Circuit Breaker", "wb-btn-reset-breaker", width="180px"),
            "scale_sizing": button("Reduce Position Size by 50%", "wb-btn-reduce-size", width="230px"),
            "tighten_stops": button("Tighten Stops by 2%", "wb-btn-tighten-stops", width="180px"),
        }
        self.kill_confirm = button("Yes, kill it", "wb-btn-kill-confirm", style="danger")
        self.kill_cancel = button("Cancel", "wb-btn-kill-cancel")
        self.kill_box = W.HBox([W.HTML("<b>Kill ends the session now and may leave positions open.</b>"),
                                self.kill_confirm, self.kill_cancel], layout={"display": "none"})
        live = self.config is not None and self.config.kind.value == "live"
        self.restart_confirm = W.Text(description="Re-arm", placeholder="exchange:account (live restart, resume)",
                                      layout={"width": "300px", "display": None if live else "none"})
        self.restart_confirm.add_class("wb-restart-confirm")
        b["pause"].on_click(lambda _: self.act("pause"))
        b["resume"].on_click(lambda _: self.act("resume"))
        b["stop"].on_click(lambda _: self.act("stop", reason="stopped from the control panel"))
        b["restart"].on_click(lambda _: self.restart())
        b["resume_run"].on_click(lambda _: self.resume_run())
        b["kill"].on_click(lambda _: self._ask_kill(True))
        self.kill_cancel.on_click(lambda _: self._ask_kill(False))
        self.kill_confirm.on_click(lambda _: self.confirm_kill())
        b["close_all"].on_click(lambda _: self.act("close_all"))
        b["cancel_all"].on_click(lambda _: self.act("cancel_all"))
        b["trip_breaker"].on_click(lambda _: self.act("trip_breaker", reason="manual trip from the control panel"))
        b["reset_breaker"].on_click(lambda _: self.act("reset_breaker", reason="manual reset from the control panel"))
        b["scale_sizing"].on_click(lambda _: self.act("scale_sizing", factor=0.5))
        b["tighten_stops"].on_click(lambda _: self.act("tighten_stops", delta=0.02))
        self._build_override()
        self._build_symbols()
        self._build_params()
        sec = lambda t: W.HTML(f"<b style='display:block;margin-top:6px'>{t}</b>")  # noqa: E731
        self.widget = W.VBox([
            self.title, self.state_html,
            W.HBox([b[k] for k in ("pause", "resume", "stop", "restart", "resume_run", "kill")]),
            self.restart_confirm,
            self.kill_box,
            sec("Emergency Controls"),
            W.HBox([b["close_all"], b["cancel_all"], b["trip_breaker"], b["reset_breaker"]]),
            sec("Risk Adjustments"), W.HBox([b["scale_sizing"], b["tighten_stops"]]),
            sec("Risk Override"), self.override_box, sec("Symbols"), self.symbol_box,
            sec("Strategy Parameters"), self.params_box, self.message,
        ], layout={"border": "1px solid #ddd", "padding": "8px"})
        self.widget.add_class("wb-controls")
        self.ticker = Ticker(self.refresh, refresh, on_error=lambda e: self._show(str(e), "error"))
        self.refresh()
        self.ticker.start()

    # ---- sections -------------------------------------------------------------------------
    def _build_override(self) -> None:
        self.override_limit = W.Dropdown(options=list(OVERRIDABLE), description="Limit", layout={"width": "260px"})
        self.override_limit.add_class("wb-override-limit")
        self.override_value = W.Text(description="Value", placeholder="empty: lift the limit",
                                     layout={"width": "220px"})
        self.override_value.add_class("wb-override-value")
        self.override_unit = W.HTML()
        self.override_reason = W.Text(description="Reason", placeholder="why (required)", layout={"width": "260px"})
        self.override_reason.add_class("wb-override-reason")
        self.override_minutes = W.FloatText(value=60.0, description="Expires in", layout={"width": "170px"})
        self.override_minutes.add_class("wb-override-minutes")
        self.buttons["risk_override"] = button("Apply override", "wb-btn-override")
        self.buttons["risk_override"].on_click(lambda _: self.apply_override())
        self.override_limit.observe(lambda _: self._override_unit(), names="value")
        self._override_unit()
        self.override_box = W.HBox([self.override_limit, self.override_value, self.override_unit,
                                    self.override_reason, self.override_minutes, W.HTML("min"),
                                    self.buttons["risk_override"]], layout={"flex_flow": "row wrap"})

    def _override_unit(self) -> None:
        self.override_unit.value = "%" if self.override_limit.value in PERCENT_LIMITS else ""

    def _build_symbols(self) -> None:
        symbols = list(self.config.symbols) if self.config is not None else []
        self.symbol = W.Dropdown(options=symbols, description="Symbol", layout={"width": "260px"})
        self.symbol.add_class("wb-symbol")
        self.buttons["enable_symbol"] = button("Enable", "wb-btn-enable-symbol")
        self.buttons["disable_symbol"] = button("Disable", "wb-btn-disable-symbol")
        self.buttons["enable_symbol"].on_click(lambda _: self.act("enable_symbol", symbol=self.symbol.value))
        self.buttons["disable_symbol"].on_click(lambda _: self.act("disable_symbol", symbol=self.symbol.value))
        self.symbol_box = W.HBox([self.symbol, self.buttons["enable_symbol"], self.buttons["disable_symbol"]])

    def _build_params(self) -> None:
        self.param_widgets: dict[str, W.ValueWidget] = {}
        if self.config is not None:
            current = dict(self.session.params) if self.session is not None else dict(self.config.params)
            for p in registry.get(self.config.strategy).params:
                w = F.param_widget(p)
                if p.name in current:
                    w.value = current[p.name]
                w.add_class(f"wb-param-{p.name}")
                self.param_widgets[p.name] = w
        self.buttons["set_params"] = button("Apply parameters", "wb-btn-set-params")
        self.buttons["set_params"].on_click(lambda _: self.apply_params())
        self.params_box = W.VBox([*self.param_widgets.values(), self.buttons["set_params"]])

    # ---- actions ----------------------------------------------------------------------------
    def act(self, name: str, **args: Any) -> str | int | None:
        """Apply control ``name`` through the handle: a local session applies it now (returns its
        message); a remote one gets a store command (returns its id; the answer shows when the runner
        has handled it)."""
        try:
            if self.handle.local:
                msg = self.handle.act(name, **args)
                self._show(f"{name}: {msg}", "ok")
                self.refresh()
                return msg
            cmd = self.handle.send(name, **args)  # type: ignore[attr-defined]
            self.pending[cmd] = name
            self._show(f"{name} sent; waiting for the runner…", "info")
            return cmd
        except Exception as e:  # shown, never raised into the widget loop
            log.info("control %s failed: %s", name, e)
            self._show(f"{name} failed: {e}", "error")
            return None

    def apply_override(self) -> Any:
        """Risk override from the form: limit, value (empty lifts it), reason, expiry in minutes."""
        limit = self.override_limit.value
        try:
            value = F.parse_number(self.override_value.value, percent=limit in PERCENT_LIMITS,
                                   integer=limit == "max_orders_per_minute")
        except F.ParseError as e:
            self._show(f"override value: {e}", "error")
            return None
        reason = self.override_reason.value.strip()
        if not reason:
            self._show("risk override: give a reason (it is recorded with the override)", "error")
            return None
        minutes = self.override_minutes.value
        if not minutes or minutes <= 0:
            self._show("risk override: expiry must be a positive number of minutes", "error")
            return None
        return self.act("risk_override", changes={limit: value}, reason=reason, expires_minutes=float(minutes))

    def apply_params(self) -> Any:
        """Send the edited strategy parameters (the engine validates them)."""
        return self.act("set_params", params={k: w.value for k, w in self.param_widgets.items()})

    def _ask_kill(self, show: bool) -> None:
        self.kill_box.layout.display = None if show else "none"

    def confirm_kill(self) -> Any:
        self._ask_kill(False)
        return self.act("kill", reason="killed from the control panel")

    def restart(self) -> Any:
        """A new run of the same config and kind (:meth:`SessionHandle.restart`): started here for a local
        session, else requested from the host. A live session is re-armed with the typed exchange:account."""
        try:
            new = self.handle.restart(arming=self._arming())
            if new.local:
                self.restarted = self._keep_local(new)
            else:
                self.restarted = new.session_id
            self._show(f"restarted as {new.session_id}" + ("" if new.local else " (requested from workbench host)"),
                       "ok")
            if self.on_restart is not None:
                self.on_restart(new.session_id, self.restarted)
            return self.restarted
        except Exception as e:
            self._show(f"restart failed: {e}", "error")
            return None

    def resume_run(self) -> SessionHandle | None:
        """Carry the orphaned run on from its last checkpoint (:meth:`SessionHandle.resume_run`): in this
        kernel for a local session, else requested back from the host; the panel then acts on the resumed
        run (returned handle). A live session is re-armed with the typed exchange:account."""
        try:
            new = self.handle.resume_run(arming=self._arming())
        except Exception as e:
            self._show(f"resume run failed: {e}", "error")
            return None
        self.handle = new
        if new.local:
            self.session = self._keep_local(new)
        self._show(f"run of {new.session_id} resumed from its last checkpoint"
                   + (" in this kernel" if new.local else " (requested from workbench host)"), "ok")
        self.refresh()
        if self.on_resume is not None:
            self.on_resume(new)
        return new

    def _arming(self) -> dict[str, Any] | None:
        """A live session's arming from the typed exchange:account (None for paper)."""
        if self.config is None or self.config.kind.value != "live":
            return None
        confirmation = self.restart_confirm.value.strip()
        return {"allow_live": bool(confirmation), "confirmation": confirmation}

    @staticmethod
    def _keep_local(handle: SessionHandle) -> Any:
        """Register a run started in this kernel where the other views find it; returns its Session."""
        from workbench.ui.launch import LOCAL_SESSIONS

        session = LOCAL_SESSIONS[handle.session_id] = handle.session  # type: ignore[attr-defined]
        return session

    # ---- refresh --------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the state (and finished commands) and enable the buttons the state allows."""
        state = self.handle.state.value
        self.state = state
        trading = state in RISK_STATE_SHOWN
        risk = str(risk_checkpoint(self.store, self.session_id, self.session).get("state") or "") if trading else ""
        self.state_html.value = f"State: {state_badge(state, risk_state=risk)}"
        ok = self.handle.controls()
        for name, btn in self.buttons.items():
            btn.disabled = name not in ok
        self.buttons["resume_run"].layout.display = None if "resume_run" in ok else "none"
        self.kill_confirm.disabled = "kill" not in ok
        for cmd_id in list(self.pending):
            cmd = self.handle.result(cmd_id)  # type: ignore[attr-defined]
            if cmd is None:
                continue
            name = self.pending.pop(cmd_id)
            self.results.append(cmd)
            self._show(f"{name} {cmd['status']}" + (f": {cmd['result']}" if cmd["result"] else ""),
                       "ok" if cmd["status"] == "applied" else "error")

    def _show(self, text: str, kind: str) -> None:
        self.message.value = message(text, kind)

    def close(self) -> None:
        """Stop refreshing and close the widgets."""
        self.ticker.stop()
        self.widget.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def controls(session_id: str, store: Store | str | None = None, session: Any = None, **kwargs: Any) -> ControlPanel:
    """The control panel of ``session_id`` (displays itself in Jupyter)."""
    return ControlPanel(session_id, store, session, **kwargs)

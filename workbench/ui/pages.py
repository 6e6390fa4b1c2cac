"""The Voilà dashboard pages: each function returns one widget (a :class:`Page`) and displays nothing.

* ``sessions_page(store=None)``: active sessions table, the creation wizard (paper/live requested
  from ``workbench host`` by default) and the controls of the selected session;
* ``session_page(session_id=None, store=None)``: detail view + controls; without ``session_id`` the
  id comes from the URL query (``?id=...``, which Voilà puts in ``$QUERY_STRING``); in a kernel the
  view's data arrives just after the page (:data:`FIRST_READ`);
* ``risk_page(store=None)``, ``history_page(store=None)``;
* ``diagnostics_page(session_id=None, store=None)``: pick a session (the dropdown ``.wb-diag-session``; the
  URL's ``?id=`` first), see its diagnostics (:mod:`workbench.ui.diagnostics` lists its ``.wb-diag-*`` classes).

``page.views`` holds the view objects (for tests). Stable CSS classes for browser tests:

==========================  ==============================================================
``wb-page``                 every page; plus ``wb-page-sessions|session|risk|history``
``wb-header``               the console header atop every page (its HTML classes: see
                            :mod:`workbench.ui.console`); a state badge is ``span.wb-state-badge``
                            with ``wb-state-<state>``, a risk state ``span.wb-risk-state`` with
                            ``wb-risk-<normal|reducing|halted>``
``wb-page-message``         the friendly message of a page that cannot show (no/unknown id)
``wb-sessions-table``       the active sessions table; rows ``wb-session-row`` and
                            ``wb-session-<id>``; cells ``wb-kind``, ``wb-strategy``, ``wb-pnl``,
                            ``wb-exposure``, ``wb-state``, ``wb-uptime``, ``wb-session-id``;
                            row button ``wb-session-open``; ``wb-sessions-empty`` when none
``wb-detail-link``          link to the selected session's detail page (``a.wb-detail-anchor``)
``wb-wizard``               the wizard: ``wb-wizard-next``, ``wb-wizard-back``,
                            ``wb-wizard-create``, ``wb-wizard-status``, ``wb-wizard-summary``, ``wb-wizard-steps``,
                            ``wb-wizard-run-in``, ``wb-wizard-result``, ``wb-create-result`` (its
                            detail link ``a.wb-open-detail``, a backtest's ``div.wb-headline``),
                            ``wb-progress``; each field's input ``wb-field-<key>`` and its
                            error ``wb-error-<key>`` (key with dots as dashes, e.g.
                            ``wb-field-initial_balance``, ``wb-error-risk-stop_loss``,
                            ``wb-field-kind``)
``wb-controls``             control panel: ``wb-state`` (state text), ``wb-control-message``,
                            ``wb-btn-pause``, ``wb-btn-resume``, ``wb-btn-stop``,
                            ``wb-btn-restart`` (a live one re-armed in ``wb-restart-confirm``),
                            ``wb-btn-resume-run`` (shown for an orphaned session only),
                            ``wb-btn-kill`` then ``wb-btn-kill-confirm`` /
                            ``wb-btn-kill-cancel``, ``wb-btn-close-all``, ``wb-btn-cancel-all``,
                            ``wb-btn-trip-breaker``, ``wb-btn-reset-breaker``,
                            ``wb-btn-reduce-size``, ``wb-btn-tighten-stops``, ``wb-override-limit``,
                            ``wb-override-value``, ``wb-override-reason``, ``wb-override-minutes``,
                            ``wb-btn-override``, ``wb-symbol``, ``wb-btn-enable-symbol``,
                            ``wb-btn-disable-symbol``, ``wb-param-<name>``, ``wb-btn-set-params``
``wb-detail``               detail view: ``wb-state``, ``wb-performance``, ``wb-risk-metrics``,
                            ``wb-pnl-limits`` (P&L split, position ages, breakers: see
                            :func:`workbench.ui.positions.limits_html`),
                            ``wb-equity-chart``, ``wb-price-chart`` (its symbol
                            picker ``wb-price-symbol``), ``wb-trades``, ``wb-events``
``wb-risk``                 risk view: ``wb-risk-summary``, ``wb-risk-concentration``,
                            ``wb-risk-correlation``, ``wb-risk-liquidity``, ``wb-risk-volatility``,
                            ``wb-risk-limits``, ``wb-risk-message``
``wb-history``              history view: ``wb-history-table`` (rows ``wb-history-row``),
                            ``wb-history-kind``, ``wb-history-strategy``, ``wb-history-since``,
                            ``wb-history-until``, ``wb-history-compare``, ``wb-compare``,
                            ``wb-template-name``, ``wb-btn-save-template``, ``wb-template``,
                            ``wb-profile``, ``wb-btn-start-template``, ``wb-history-message``
==========================  ==============================================================
"""
from __future__ import annotations

import html
import json
import os
import threading
import warnings
from typing import Any
from urllib.parse import parse_qs

import ipywidgets as W

from workbench.store import Store
from workbench.ui.common import open_store

DETAIL_URL = "session.ipynb?id={id}"  # relative to a Voilà-rendered sessions.ipynb
#: seconds after the session page's cell ends that its detail view first reads the store: Voilà sends a page
#: when its cells have run, so the frame (header, controls, empty charts) goes first and the data follows
FIRST_READ = 0.05


class Page(W.VBox):
    """A dashboard page: the console header (``views['header']``, unless ``store`` is None) above
    ``children``; ``views`` are the view objects on it."""

    def __init__(self, name: str, children: list[W.Widget], views: dict[str, Any] | None = None,
                 store: Store | None = None):
        from workbench.ui.console import ConsoleHeader

        self.views: dict[str, Any] = {}
        if store is not None:
            self.views["header"] = ConsoleHeader(store)
            children = [self.views["header"].widget, *children]
        super().__init__(children, layout={"width": "100%", "max_width": "100%"})
        self.views.update(views or {})
        self.add_class("wb-page")
        self.add_class(f"wb-page-{name}")

    def close_views(self) -> None:
        """Stop every view's refresh task."""
        for v in self.views.values():
            close = getattr(v, "close", None)
            if close is not None:
                close()


def _notice(name: str, text: str, store: Store | None = None) -> Page:
    note = W.HTML(f"<div style='padding:12px;color:#555;font-size:110%'>{text}</div>")
    note.add_class("wb-page-message")
    return Page(name, [note], store=store)


def sessions_page(store: Store | str | None = None, *, run_in: str = "host", refresh: float = 1.0) -> Page:
    """Active sessions + wizard (paper/live requested from the host by default) + selected session's controls."""
    from workbench.ui.sessions import SessionsView
    from workbench.ui.wizard import Wizard

    st = open_store(store)
    view = SessionsView(st, refresh=refresh, detail_url=DETAIL_URL)
    wiz = Wizard(store=st, run_in=run_in)

    def created(launched: Any) -> None:
        view.refresh()
        if launched.where != "backtest":
            view.select(launched.session_id)
    assert wiz.launcher is not None  # a store was given: Create launches
    wiz.launcher.listeners.append(created)
    wiz.launcher.detail_url = DETAIL_URL  # Create ends with a link to the new session's detail page
    # the dashboard's markdown holds the page title; the views bring their section headings
    return Page("sessions", [view.widget, W.HTML("<hr>"), wiz.widget],
                {"sessions": view, "wizard": wiz}, store=st)


def query_id(query: str | None = None) -> str | None:
    """The ``id`` parameter of a URL query string (default: Voilà's ``$QUERY_STRING``; a pre-heated
    kernel, which ran the page's imports before anyone asked for it, waits here for the request)."""
    if query is None and os.environ.get("VOILA_PREHEAT") == "True":
        wait_for_request()
        os.environ["VOILA_PREHEAT"] = "False"  # the request is in the environment now: do not wait again
    q = os.environ.get("QUERY_STRING", "") if query is None else query
    values = parse_qs(q.lstrip("?")).get("id") or []
    value = values[0].strip() if values else ""
    return value or None


def wait_for_request() -> None:
    """Voilà's ``voila.utils.wait_for_request`` without importing Voilà (Jupyter Server, nbformat and jsonschema
    come with it: ~45 MB of a pre-heated kernel): wait for the request this pre-heated kernel is given to
    (Voilà's ``voila/query/<kernel id>`` websocket sends it once) and put its details (``QUERY_STRING``, ...)
    in the environment. Warns and returns when the server cannot be reached, as Voilà's does."""
    env = os.environ
    base = env.get("VOILA_WS_BASE_URL", env.get("VOILA_SERVER_URL", "/"))
    url = (f"{env.get('VOILA_WS_PROTOCOL', 'ws')}://{env.get('VOILA_APP_IP', '127.0.0.1')}:"
           f"{env.get('VOILA_APP_PORT', '8866')}{base}voila/query/{env.get('VOILA_KERNEL_ID')}")
    got: list[str] = []

    def receive() -> None:  # in a thread of its own: the kernel's event loop is busy running this cell
        import asyncio

        import websockets

        async def once() -> None:
            async with websockets.connect(url, open_timeout=5) as ws:
                got.append(str(await ws.recv()))
        try:
            asyncio.run(once())
        except (TimeoutError, OSError) as e:
            warnings.warn(f"no request info from {url}: {e}", stacklevel=2)

    thread = threading.Thread(target=receive, name="wb-wait-for-request")
    thread.start()
    thread.join()
    if got:
        env.update({str(k): str(v) for k, v in json.loads(got[0]).items()})


def session_page(session_id: str | None = None, store: Store | str | None = None, *, refresh: float = 0.5) -> Page:
    """Detail + controls of one session; the id defaults to the URL's ``?id=``."""
    from workbench.store.store import NotFoundError
    from workbench.ui.charts import warm
    from workbench.ui.controls import ControlPanel
    from workbench.ui.detail import DetailView
    from workbench.ui.launch import LOCAL_SESSIONS

    st = open_store(store)  # before the wait: a pre-heated kernel opens the store and loads plotly's
    warm()  # figure and widget machinery before its request comes, not after
    sid = session_id or query_id()
    if not sid:
        return _notice("session", "No session selected. Open this page with <code>?id=&lt;session id&gt;</code>, "
                                  "or pick a session on the <a href='sessions.ipynb'>sessions page</a>.", st)
    try:
        st.get_session(sid)
    except NotFoundError:
        return _notice("session", f"There is no session <code>{html.escape(sid)}</code> in this store. "
                                  "Pick one on the <a href='sessions.ipynb'>sessions page</a>.", st)
    from workbench.engine.handle import handle_for

    handle = handle_for(sid, st, LOCAL_SESSIONS, actor="dashboard")
    local = getattr(handle, "session", None)
    view = DetailView(sid, st, local, refresh=refresh, handle=handle, defer=FIRST_READ)
    panel = ControlPanel(sid, st, local, handle=handle, on_resume=view.follow)
    return Page("session", [view.widget, panel.widget], {"detail": view, "controls": panel}, store=st)


def risk_page(store: Store | str | None = None, **kwargs: Any) -> Page:
    """The risk dashboard of all active sessions."""
    from workbench.ui.risk import RiskView

    view = RiskView(store, **kwargs)
    return Page("risk", [view.widget], {"risk": view}, store=view.store)


def history_page(store: Store | str | None = None, **kwargs: Any) -> Page:
    """The session history browser with compare and templates."""
    from workbench.ui.history import HistoryView

    view = HistoryView(store, **kwargs)
    return Page("history", [view.widget], {"history": view}, store=view.store)


def diagnostics_page(session_id: str | None = None, store: Store | str | None = None) -> Page:
    """The diagnostics of one session, picked from the store's sessions (newest first; the URL's ``?id=``
    or ``session_id`` selected)."""
    from workbench.ui.diagnostics import DiagnosticsView

    st = open_store(store)
    sessions = st.history()
    if sessions.empty:
        return _notice("diagnostics", "No sessions yet: create one on the <a href='sessions.ipynb'>sessions "
                                      "page</a>.", st)
    options = [(f"{r.id} · {r.kind} · {r.strategy} · {r.state} · {str(r.date)[:16]}", r.id)
               for r in sessions.itertuples()]
    sid = session_id or query_id()
    if sid is not None and sid not in set(sessions["id"]):
        return _notice("diagnostics", f"There is no session <code>{html.escape(sid)}</code> in this store. "
                                      "Pick one on the <a href='diagnostics.ipynb'>diagnostics page</a>.", st)
    picker = W.Dropdown(options=options, value=sid or options[0][1], description="Session",
                        layout={"width": "min(640px, 100%)"})
    picker.add_class("wb-diag-session")
    holder = W.VBox()
    page = Page("diagnostics", [picker, holder], {}, store=st)

    def show(session: str) -> None:
        old = page.views.pop("diagnostics", None)
        if old is not None:
            old.close()
        page.views["diagnostics"] = view = DiagnosticsView(session, st, lazy=False)
        holder.children = [view.widget]

    picker.observe(lambda ch: show(ch["new"]), names="value")
    show(picker.value)
    return page

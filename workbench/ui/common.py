"""Pieces shared by the views: the store to read, a throttled refresh task, messages, formatting."""
from __future__ import annotations

import asyncio
import html
import logging
import math
import numbers
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import ipywidgets as W

from workbench.domain import SessionState
from workbench.store import Store
from workbench.store.history import _money as fmt_money  # noqa: F401  (one definition, re-exported)
from workbench.store.history import _percent as fmt_percent  # noqa: F401
from workbench.ui.forms import ERROR_COLOR

log = logging.getLogger(__name__)
OK_COLOR = "#2e7d32"
STATE_COLORS = {"running": "#2e7d32", "paused": "#ef6c00", "stopping": "#ef6c00", "orphaned": "#c62828",
                "failed": "#c62828", "killed": "#c62828", "requested": "#1565c0", "created": "#1565c0",
                "starting": "#1565c0", "completed": "#37474f", "stopped": "#37474f"}
#: the risk engine's trading states (:data:`workbench.execution.codes.TRADING_STATES`) as an operator reads them
RISK_LABELS = {"running": "normal", "reducing": "reducing", "halted": "halted"}
RISK_COLORS = {"normal": "#2e7d32", "reducing": "#ef6c00", "halted": "#c62828"}
#: session states in which the risk engine's trading state is shown (paused/ended sessions do not trade)
RISK_STATE_SHOWN = frozenset({SessionState.RUNNING.value, SessionState.STARTING.value})


def open_store(store: Store | str | None) -> Store:
    """``store`` itself, a Store for a URL, or the default store. A running session's store (a
    :class:`~workbench.engine.writes.PostingStore` around one) gives the Store it wraps: views read it."""
    if isinstance(store, Store):
        return store
    if isinstance(inner := getattr(store, "store", None), Store):
        return inner
    if store is not None and not isinstance(store, str):
        raise TypeError(f"store: expected a Store or a database URL, got {type(store).__name__}")
    return Store(store)


def message(text: str, kind: str = "info") -> str:
    """One line of HTML for a message: kind 'error', 'ok' or 'info'; redacted (an error's text may carry
    a request URL with a key: :func:`workbench.secrets.redact`)."""
    from workbench.secrets import redact

    text = redact(text)
    color = {"error": ERROR_COLOR, "ok": OK_COLOR}.get(kind, "#555")
    icon = {"error": "⚠ ", "ok": "✔ "}.get(kind, "")
    # a block with its own line height: a long message wraps in lines of text, not 28 px widget rows
    return (f"<div style='color:{color};line-height:1.4;margin:2px 0'>{icon}{html.escape(text, quote=False)}</div>"
            if text else "")


def risk_badge(risk_state: str) -> str:
    """The risk engine's trading state in colour: normal / reducing / halted ('' if unknown)."""
    if not risk_state:
        return ""
    label = RISK_LABELS.get(risk_state, risk_state)
    return (f"<span class='wb-risk-state wb-risk-{html.escape(label)}' style='color:{RISK_COLORS.get(label, '#555')};"
            f"font-weight:600'>{html.escape(label)}</span>")


def state_badge(state: str, orphaned: bool = False, risk_state: str = "") -> str:
    """A session's state in colour; while it trades, with its risk state: "running · halted"."""
    label = "orphaned" if orphaned and state != "orphaned" else state
    color = STATE_COLORS.get(label, "#555")
    risk = risk_badge(risk_state) if state in RISK_STATE_SHOWN and not orphaned else ""
    return (f"<span class='wb-state-badge wb-state-{html.escape(label)}' style='color:{color};font-weight:600'>"
            f"{html.escape(label)}</span>" + (f" · {risk}" if risk else "")
            + (" <span title='runner stopped heartbeating'>⚠</span>" if orphaned else ""))


def fmt_duration(d: timedelta | None) -> str:
    """'2h 15m', '45m', '3d 4h'; '—' for None."""
    if d is None or d != d:
        return "—"
    minutes = int(d.total_seconds() // 60)
    days, rem = divmod(minutes, 1440)
    hours, mins = divmod(rem, 60)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {mins}m" if hours else f"{mins}m"


def fmt_plain_money(x: Any) -> str:
    return "n/a" if x is None or not math.isfinite(float(x)) else f"${float(x):,.0f}"


def has_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


class Ticker:
    """Calls ``callback()`` every ``interval`` seconds on the running asyncio loop (the kernel's)
    until :meth:`stop`; never more often, so a view's updates stay under the IOPub rate limit.

    Without a running loop it does nothing until :meth:`start` is called from one. A failing
    callback is logged and reported to ``on_error`` (the view shows it); the ticker keeps going.
    ``count`` and ``busy`` (CPU seconds spent in the callback) are kept for benchmarks.
    """

    def __init__(self, callback: Callable[[], Any], interval: float,
                 on_error: Callable[[Exception], None] | None = None):
        if not interval > 0:
            raise ValueError(f"refresh interval must be positive seconds, got {interval!r}")
        self.callback, self.interval, self.on_error = callback, float(interval), on_error
        self.task: asyncio.Task[None] | None = None
        self.count = 0
        self.busy = 0.0

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self, first: float | None = None) -> bool:
        """Start on the running loop; False if there is none (call ``tick()`` by hand then). The first tick
        runs at once, or ``first`` seconds later (the loop runs other work first: a page's reply)."""
        if self.running:
            return True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        self.task = loop.create_task(self._run(first))
        return True

    def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.task = None

    def tick(self) -> None:
        """Run the callback once now (errors go to ``on_error``)."""
        t0 = time.process_time()
        try:
            self.callback()
        except Exception as e:
            log.exception("view refresh failed")
            if self.on_error is not None:
                self.on_error(e)
        finally:
            self.count += 1
            self.busy += time.process_time() - t0

    async def _run(self, first: float | None = None) -> None:
        if first is not None:
            await asyncio.sleep(first)
        while True:
            self.tick()
            await asyncio.sleep(self.interval)


def lazy_tab(tabs: W.Tab, title: str, css: str, make: Callable[[], W.Widget], what: str) -> W.VBox:
    """Append a tab ``title`` to ``tabs`` whose content ``make()`` builds the first time the tab is selected
    (a detail view stays fast to open); a failure shows in the tab as "``what`` failed: ...". Returns the
    tab's box (class ``css``)."""
    box = W.VBox([W.HTML("<i style='color:#777'>opens with the tab</i>")])
    box.add_class(css)
    titles = list(tabs.titles)
    tabs.children = (*tabs.children, box)
    tabs.titles = (*titles, title)
    index = len(tabs.children) - 1
    built = False

    def build(change: dict[str, Any]) -> None:
        nonlocal built
        if change["new"] != index or built:
            return
        built = True
        try:
            box.children = (make(),)
        except Exception as e:
            box.children = (W.HTML(message(f"{what} failed: {type(e).__name__}: {e}", "error")),)

    tabs.observe(build, names="selected_index")
    return box


def button(description: str, css: str, *, icon: str = "", style: str = "", tooltip: str = "",
           width: str = "") -> W.Button:
    """A button with a stable CSS class for browser tests."""
    b = W.Button(description=description, icon=icon, button_style=style, tooltip=tooltip or description,
                 layout={"width": width} if width else {})
    b.add_class(css)
    return b


def frame_table(rows: Any, columns: list[tuple[str, str, Callable[[Any], str]]], css: str = "",
                empty: str = "none yet") -> str:
    """An HTML table of ``rows`` (a DataFrame or list of dicts): (key, header, formatter) per column."""
    records = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    if not records:
        return f"<i class='{css}' style='color:#777'>{html.escape(empty)}</i>"
    def numeric(key: str) -> bool:  # numbers line up on the right, header included
        present = [v for r in records if (v := r.get(key)) is not None and v == v]
        return bool(present) and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in present)

    aligns = ["right" if numeric(key) else "left" for key, _h, _f in columns]
    head = "".join(f"<th style='text-align:{al};padding:2px 8px;border-bottom:1px solid #ccc'>{html.escape(h)}</th>"
                   for (_, h, _f), al in zip(columns, aligns))
    body = []
    for r in records:
        cells = []
        for (key, _h, fmt), align in zip(columns, aligns):
            v = r.get(key)
            try:
                text = "—" if v is None or v != v else str(fmt(v))  # None / NaN / NaT: a dash, not a hole
            except (TypeError, ValueError):
                text = str(v)
            cells.append(f"<td style='padding:1px 8px;text-align:{align}'>{html.escape(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f"<table class='{css}' style='border-collapse:collapse;font-size:90%'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def fmt_time(v: Any) -> str:
    if v is None or v != v:
        return ""
    return str(v)[:19].replace("T", " ")


def fmt_num(v: Any, spec: str | None = None) -> str:
    """``v`` with ``spec``; by default readable for prices, quantities and volumes alike, never in
    scientific notation below 1e15: 40,080.50 · 12.3457 · 0.02495 · 0.00001234 ('' for None/NaN)."""
    if v is None or v != v:
        return ""
    x = float(v)
    if spec is not None:
        return format(x, spec)
    a = abs(x)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{x:,.2f}"
    if a >= 1:
        return f"{x:,.4f}".rstrip("0").rstrip(".")
    return f"{x:.{max(4, 3 - math.floor(math.log10(a)))}f}".rstrip("0").rstrip(".")
